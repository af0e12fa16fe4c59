package api

import (
	"time"

	"vgrid/internal/model"
)

// GridsPost is the body of POST /grids (create a virtual grid) and of
// POST /plan (evaluate one without booking anything).
type GridsPost struct {
	// Spec is the grid file as the user wrote it (YAML or JSON; see
	// internal/gridspec), with its ${param} references.
	Spec string `json:"spec"`
	// Values are parameter values (a values file), Set NAME=VALUE pairs
	// applied over them (--set); both override the file's params.
	Values map[string]string `json:"values,omitempty"`
	Set    []string          `json:"set,omitempty"`
	// Plan (POST /grids only) carries out this plan, made by POST /plan,
	// or refuses when the calendar changed since.
	Plan string `json:"plan,omitempty"`
}

// Plan is a dry run of a grid against the live calendar: when it could
// start, where each part would go, what it would push aside, or what is
// short. Nothing is booked; ID names it for POST /grids.
type Plan struct {
	ID      string `json:"id"`
	Grid    string `json:"grid"`
	Project string `json:"project"`
	// CalendarRevision is the calendar's revision the plan was made at:
	// applying the plan requires the same.
	CalendarRevision int64     `json:"calendar_revision"`
	MadeAt           time.Time `json:"made_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	// Fits is false when the grid can never fit (Shortfall says why).
	Fits bool `json:"fits"`
	// Requested is the earliest start asked for (now, or the grid
	// lease's start); Start is the earliest window's start found from
	// there, End its end. Delay is Start-Requested.
	Requested time.Time     `json:"requested"`
	Start     time.Time     `json:"start,omitzero"`
	End       time.Time     `json:"end,omitzero"`
	Delay     time.Duration `json:"delay_ns"`
	// Tries is how many candidate windows the search looked at.
	Tries    int           `json:"tries"`
	Parts    []PlanPart    `json:"parts,omitempty"`
	Networks []PlanNetwork `json:"networks,omitempty"`
	Volumes  []PlanVolume  `json:"volumes,omitempty"`
	// Effects are the existing leases the grid would suspend, migrate,
	// requeue or delay.
	Effects   []PlanEffect   `json:"effects,omitempty"`
	Shortfall *PlanShortfall `json:"shortfall,omitempty"`
	// Gantt is the calendar around the window with the grid's bars
	// (Planned) overlaid; other projects' leases are masked for
	// non-admins.
	Gantt *Calendar `json:"gantt,omitempty"`
}

// PlanPart is one cluster or single workspace of a grid, with its lease.
type PlanPart struct {
	Name string `json:"name"`
	// Kind is "cluster" or "workspace".
	Kind string `json:"kind"`
	// Lease is the lease the part gets; LeaseKind its kind (reservation
	// for parts that share the grid's window, immediate when the window
	// is now).
	Lease     string          `json:"lease"`
	LeaseKind model.LeaseKind `json:"lease_kind"`
	Start     time.Time       `json:"start"`
	End       time.Time       `json:"end"`
	Members   []PlanMember    `json:"members"`
}

// PlanMember is one workspace of a part and where it would run.
type PlanMember struct {
	Name      string          `json:"name"`
	Host      string          `json:"host"`
	Image     string          `json:"image"`
	Resources model.Resources `json:"resources"`
	// Stage is set when the image must be copied to the host first;
	// StageAt is when the copy begins.
	Stage    bool      `json:"stage,omitempty"`
	StageAt  time.Time `json:"stage_at,omitzero"`
	Networks []string  `json:"networks,omitempty"`
	Volumes  []string  `json:"volumes,omitempty"`
}

// PlanNetwork is a network the grid makes (or uses, Exists).
type PlanNetwork struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet,omitempty"`
	Exists bool   `json:"exists,omitempty"`
}

// PlanVolume is a volume the grid makes (or uses, Exists) and its
// storage host.
type PlanVolume struct {
	Name   string         `json:"name"`
	Size   model.ByteSize `json:"size"`
	Node   string         `json:"node"`
	Exists bool           `json:"exists,omitempty"`
}

// PlanEffect is what the grid would do to an existing lease.
type PlanEffect struct {
	Lease   string `json:"lease"`
	Project string `json:"project,omitempty"`
	// Action is suspend, migrate, requeue or delay.
	Action string    `json:"action"`
	At     time.Time `json:"at,omitzero"`
	// By is how much later the lease starts or ends (delay).
	By time.Duration `json:"by_ns,omitempty"`
}

// PlanShortfall says what is short when a grid can never fit.
type PlanShortfall struct {
	Part      string  `json:"part"`
	Resource  string  `json:"resource,omitempty"`
	Requested float64 `json:"requested,omitempty"`
	Free      float64 `json:"free,omitempty"`
	Host      string  `json:"host,omitempty"`
	Message   string  `json:"message"`
}

// Calendar is GET /calendar?format=json: one row per host with its
// bars over [From, To).
type Calendar struct {
	From     time.Time   `json:"from"`
	To       time.Time   `json:"to"`
	Revision int64       `json:"revision"`
	Rows     []GanttRow  `json:"rows"`
	Volumes  []GanttVol  `json:"volumes,omitempty"`
	Now      time.Time   `json:"now"`
	Hosts    []GanttHost `json:"hosts,omitempty"`
}

// GanttHost is a row's host capacity.
type GanttHost struct {
	Name     string          `json:"name"`
	Capacity model.Resources `json:"capacity"`
	Removed  bool            `json:"removed,omitempty"`
}

// GanttRow is one host of the calendar.
type GanttRow struct {
	Host    string     `json:"host"`
	Removed bool       `json:"removed,omitempty"`
	Bars    []GanttBar `json:"bars"`
}

// GanttVol is a volume held on a host's disk.
type GanttVol struct {
	Host    string         `json:"host"`
	Name    string         `json:"name"`
	Project string         `json:"project,omitempty"`
	Size    model.ByteSize `json:"size"`
}

// GanttBar is one lease's hold on one host. A masked bar (another
// project's, for a non-admin) has Lease "*" and no project. From..To is
// the hold; RunFrom..RunTo the run (the rest is boot, resume or suspend
// overhead); StageFrom, when set, is when its image starts being copied
// to the host (the host stays free for others meanwhile).
type GanttBar struct {
	Lease     string            `json:"lease"`
	Project   string            `json:"project,omitempty"`
	Kind      model.LeaseKind   `json:"kind,omitempty"`
	State     model.LeaseState  `json:"state,omitempty"`
	Resources model.Resources   `json:"resources"`
	From      time.Time         `json:"from"`
	RunFrom   time.Time         `json:"run_from"`
	RunTo     time.Time         `json:"run_to"`
	To        time.Time         `json:"to"`
	StageFrom time.Time         `json:"stage_from,omitzero"`
	Suspended bool              `json:"suspended,omitempty"`
	Migrating bool              `json:"migrating,omitempty"`
	Planned   bool              `json:"planned,omitempty"`
	Masked    bool              `json:"masked,omitempty"`
	Members   []string          `json:"members,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"`
}

// Grid is a virtual grid as stored: its spec with the values it was
// made with, and its parts.
type Grid struct {
	Project string         `json:"project"`
	Name    string         `json:"name"`
	Spec    model.GridSpec `json:"spec"`
	// Values are the parameter values it was made with.
	Values    map[string]string `json:"values,omitempty"`
	Plan      string            `json:"plan,omitempty"`
	Start     time.Time         `json:"start,omitzero"`
	End       time.Time         `json:"end,omitzero"`
	CreatedAt time.Time         `json:"created_at"`
	// Clusters, Workspaces, Networks and Volumes name its parts; State
	// sums its workspaces' states (e.g. "3 running, 1 scheduled").
	Clusters   []string `json:"clusters,omitempty"`
	Workspaces []string `json:"workspaces,omitempty"`
	Networks   []string `json:"networks,omitempty"`
	Volumes    []string `json:"volumes,omitempty"`
	State      string   `json:"state,omitempty"`
}

// GridList is the answer to GET /grids.
type GridList struct {
	Grids []Grid `json:"grids"`
}

// Event is one server-sent event of GET /events: a kind of object
// changed (workspaces, leases, clusters, nodes, networks, volumes,
// images, grids) at a store revision.
type Event struct {
	Kind     string `json:"kind"`
	Name     string `json:"name,omitempty"`
	Revision int64  `json:"revision"`
}
