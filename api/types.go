package api

import (
	_ "embed"
	"net/netip"
	"time"

	"vgrid/internal/model"
)

// Prefix is where every API route lives.
const Prefix = "/api/v1"

// OpenAPI is the OpenAPI 3 document served at /api/v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Error is the body of every non-2xx answer.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong. Code is stable for programs; Message is
// for people; Fields names each bad field of a request.
type ErrorBody struct {
	Code    string       `json:"code"` // invalid, unauthorized, not_found, conflict, insufficient_capacity, internal
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	// Shortfalls and FreesAt come with insufficient_capacity.
	Shortfalls []Shortfall `json:"shortfalls,omitempty"`
	FreesAt    *time.Time  `json:"frees_at,omitempty"`
	// Blocking names the leases in the way; Longest, for a refused lease
	// extension, is the longest extension possible now.
	Blocking []string        `json:"blocking,omitempty"`
	Longest  *model.Duration `json:"longest,omitempty"`
}

// FieldError names one bad field of a request and why.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Shortfall is one resource that was short when placing a workspace.
type Shortfall struct {
	Resource  string `json:"resource"`
	Requested int64  `json:"requested"`
	Free      int64  `json:"free"`
	Host      string `json:"host"`
}

// Error codes.
const (
	CodeInvalid      = "invalid"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeCapacity     = "insufficient_capacity"
	CodeLimit        = "limit_exceeded" // a project's object limit
	CodeRateLimited  = "rate_limited"   // 429: too many requests from one token; see Retry-After
	CodeInternal     = "internal"
	// CodeNotLeader (503): the replica that answered cannot reach a
	// leading replica now (none elected yet, or it just lost its
	// election); another replica, or the same one a moment later, can.
	CodeNotLeader = "not_leader"
	// CodeLeaderLost (502): the leading replica went away while it
	// handled a forwarded write, or lost its leadership after a write
	// request had changed the store: it may or may not have been done.
	CodeLeaderLost = "leader_lost"
)

// HeaderIdempotencyKey names a create (POST /workspaces): sent again with
// the same key, the create answers the workspace it made the first time
// instead of a refusal, so that a client may repeat a create whose answer
// it lost. Printable ASCII, at most 128 bytes.
const HeaderIdempotencyKey = "Idempotency-Key"

// WorkspaceList is the answer of GET /workspaces: one page. Continue,
// when set, is passed back as ?continue= for the next page.
type WorkspaceList struct {
	Workspaces []model.Workspace `json:"workspaces"`
	Continue   string            `json:"continue,omitempty"`
}

// Page sizes of the list calls: ?limit= is at most MaxPage, and
// DefaultPage when absent.
const (
	DefaultPage = 500
	MaxPage     = 1000
)

// EventList is the answer of GET /workspaces/{name}/events.
type EventList struct {
	Events []model.Event `json:"events"`
}

// NodeList is the answer of GET /nodes.
type NodeList struct {
	Nodes []NodeInfo `json:"nodes"`
}

// NodeInfo is a node with what is committed on it.
type NodeInfo struct {
	model.Node
	Ready      bool            `json:"ready"`
	Allocated  model.Resources `json:"allocated"`
	Free       model.Resources `json:"free"`
	Workspaces int             `json:"workspaces"`
}

// NodeDrained is the answer of POST /nodes/{node}/drain: what was done with
// each workspace on the host, and what could not be moved.
type NodeDrained struct {
	Node  string       `json:"node"`
	Moves []DrainEntry `json:"moves"`
}

// DrainEntry is one workspace of a drained host.
type DrainEntry struct {
	Project   string `json:"project"`
	Workspace string `json:"workspace"`
	// Action: migrating (live, to another host), suspended (to resume
	// elsewhere), moved (its files, while stopped), left (not moved;
	// Reason says why).
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// ImageList is the answer of GET /images.
type ImageList struct {
	Images []model.Image `json:"images"`
}

// NetworksPost creates an overlay network in the caller's project.
// Subnet is an IPv4 private prefix from /16 to /29 (default
// DefaultNetworkSubnet: networks are isolated from each other, so every
// network may use the same one); NAT gives members outbound access through
// their host.
type NetworksPost struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet,omitempty"`
	NAT    bool   `json:"nat,omitempty"`
}

// DefaultNetworkSubnet is a network's subnet when none is given.
const DefaultNetworkSubnet = "10.0.0.0/24"

// ClusterList is the answer of GET /clusters.
type ClusterList struct {
	Clusters []model.ClusterStatus `json:"clusters"`
}

// ClusterScale sets the member count of a cluster's roles (role name →
// count): POST /clusters/{name}/scale.
type ClusterScale struct {
	Counts map[string]int `json:"counts"`
}

// NetworkList is the answer of GET /networks.
type NetworkList struct {
	Networks []model.Network `json:"networks"`
}

// ProjectsPost creates a project and a first user token for it.
type ProjectsPost struct {
	Name string `json:"name"`
}

// TokensPost creates a token. Role is "user" (default), "admin" or "join"
// (a token hosts use to register their agent: each host name once).
// TTL is the token's lifetime: for a join token 24h when absent, at most
// 720h (a join token always expires); for user and admin tokens none when
// absent (they do not expire). MaxHosts, for a join token, bounds how many
// hosts it registers (0: no bound but its TTL).
type TokensPost struct {
	Project  string         `json:"project"`
	Role     string         `json:"role,omitempty"`
	TTL      model.Duration `json:"ttl,omitempty"`
	MaxHosts int            `json:"max_hosts,omitempty"`
}

// TokenCreated carries a new secret token; it is shown once. ID names it
// in token lists and revocations.
type TokenCreated struct {
	Project   string    `json:"project"`
	Role      string    `json:"role"`
	Token     string    `json:"token"`
	ID        string    `json:"id,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// TokenInfo is what GET /tokens shows of a token: never its secret nor its
// hash. ExpiresAt zero is never; Hosts are the host names a join token
// registered; Current marks the caller's own token.
type TokenInfo struct {
	ID        string    `json:"id"`
	Project   string    `json:"project"`
	Role      string    `json:"role"`
	Node      string    `json:"node,omitempty"`
	Hosts     []string  `json:"hosts,omitempty"`
	MaxHosts  int       `json:"max_hosts,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Expired   bool      `json:"expired,omitempty"`
	Current   bool      `json:"current,omitempty"`
}

// TokenList is the answer of GET /tokens.
type TokenList struct {
	Tokens []TokenInfo `json:"tokens"`
}

// Whoami is the answer of GET /whoami: the caller's token. ExpiresAt zero
// is never.
type Whoami struct {
	Project   string    `json:"project"`
	Role      string    `json:"role"`
	Node      string    `json:"node"`
	TokenID   string    `json:"token_id"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// NodeToken is a node's fresh credential: the answer of POST
// /nodes/{node}/token (rotation), where PreviousExpiresAt is when the
// token that asked stops working.
type NodeToken struct {
	Node              string    `json:"node"`
	Token             string    `json:"token"`
	ID                string    `json:"id"`
	IssuedAt          time.Time `json:"issued_at"`
	ExpiresAt         time.Time `json:"expires_at"`
	PreviousExpiresAt time.Time `json:"previous_expires_at,omitzero"`
}

// NodeRevoked is the answer of POST /nodes/{node}/revoke.
type NodeRevoked struct {
	Node          string `json:"node"`
	TokensRevoked int    `json:"tokens_revoked"`
	// CertificatesRevoked is how many of the host's client certificates
	// stopped being accepted.
	CertificatesRevoked int `json:"certificates_revoked"`
}

// NodesPost registers a host (with a join token) or refreshes it. CSR is
// required when registering: a PEM certificate request (CN = the host's
// name; key ECDSA P-256 or RSA of 2048 bits or more) that the control
// plane's CA signs into the host's client certificate. A heartbeat sends
// none.
type NodesPost struct {
	Node model.Node `json:"node"`
	CSR  string     `json:"csr,omitempty"`
}

// NodeRegistered carries the node's own credentials: a node token, which
// its agent rotates (POST /nodes/{node}/token), and a client certificate
// (PEM, signed by the control plane's CA), which it renews (POST
// /nodes/{node}/certificate), each once half of its lifetime has passed.
// Every request of a node needs both.
type NodeRegistered struct {
	Node                 model.Node `json:"node"`
	Token                string     `json:"token"`
	ID                   string     `json:"id,omitempty"`
	IssuedAt             time.Time  `json:"issued_at,omitzero"`
	ExpiresAt            time.Time  `json:"expires_at,omitzero"`
	Certificate          string     `json:"certificate,omitempty"`
	CertificateExpiresAt time.Time  `json:"certificate_expires_at,omitzero"`
}

// NodeCertificatePost asks for a new client certificate (POST
// /nodes/{node}/certificate): CSR as in NodesPost.
type NodeCertificatePost struct {
	CSR string `json:"csr"`
}

// NodeCertificate is the answer of POST /nodes/{node}/certificate: the
// host's new client certificate (PEM). PreviousExpiresAt is when the
// certificate that asked stops being accepted (a grace period, so that
// requests in flight with it finish).
type NodeCertificate struct {
	Node                 string    `json:"node"`
	Certificate          string    `json:"certificate"`
	CertificateExpiresAt time.Time `json:"certificate_expires_at"`
	Serial               string    `json:"serial"`
	PreviousExpiresAt    time.Time `json:"previous_expires_at,omitzero"`
}

// Assignments is what a node's agent must run: every workspace placed on it.
type Assignments struct {
	Revision   int64             `json:"revision"` // pass back as ?after= to wait for changes
	Workspaces []model.Workspace `json:"workspaces"`
	Images     []model.Image     `json:"images"` // the images those workspaces use
	// Outgoing are workspaces moving off this host: their files stay,
	// served to the host each is moving to, until that host has them.
	Outgoing []Outgoing `json:"outgoing,omitempty"`
	// Networks are the overlay networks the host's workspaces are on
	// (their NICs name them by VNI), with where their other members run.
	Networks []NetworkAssignment `json:"networks,omitempty"`
	// Execs are commands waiting for the host's agent to run them in its
	// guests (see ExecRequest).
	Execs []ExecRequest `json:"execs,omitempty"`
	// Stage lists images to fetch now for leases due on this host (see
	// StageRequest); their descriptions are in Images.
	Stage []StageRequest `json:"stage,omitempty"`
	// Incoming are running workspaces migrating live to this host
	// (Status.Migration.To): the agent prepares each to take its guest
	// and reports where it listens (MigrationReport).
	Incoming []model.Workspace `json:"incoming,omitempty"`
	// Saves are the host's workspaces' disks to save as images, pending
	// or under way (see SaveRequest).
	Saves []model.Save `json:"saves,omitempty"`
	// Volumes are the network volumes this host stores and serves (see
	// VolumeServe); VolumeEndpoints the volumes its workspaces attach,
	// with where they are served.
	Volumes         []VolumeServe    `json:"volumes,omitempty"`
	VolumeEndpoints []VolumeEndpoint `json:"volume_endpoints,omitempty"`
}

// MigrationReport is what an agent says of a live migration
// (POST /nodes/{node}/migrations/{project}/{name}): the destination
// that it is ready (Endpoint) or could not prepare (Failed); the source
// how it goes (Progress), that it is done (Done, with the measures), or
// that it failed (Failed: the guest runs on at the source).
type MigrationReport struct {
	ID string `json:"id"`
	// Since identifies the migration (Status.Migration.Since).
	Since       time.Time                `json:"since"`
	Endpoint    *model.MigrationEndpoint `json:"endpoint,omitempty"`
	Progress    *model.MigrationProgress `json:"progress,omitempty"`
	Done        bool                     `json:"done,omitempty"`
	Failed      string                   `json:"failed,omitempty"`
	Total       model.Duration           `json:"total,omitempty"`
	Downtime    model.Duration           `json:"downtime,omitempty"`
	MemoryBytes int64                    `json:"memory_bytes,omitempty"`
	DiskBytes   int64                    `json:"disk_bytes,omitempty"`
}

// MigrateRequest is the body of POST /workspaces/{name}/migrate: To is
// the destination host (empty: the calendar chooses); Cancel stops the
// migration under way instead; Bandwidth caps the stream.
type MigrateRequest struct {
	To     string `json:"to,omitempty"`
	Cancel bool   `json:"cancel,omitempty"`
	// Bandwidth caps the migration's stream (0: none), so that it leaves
	// the hosts' network to others.
	Bandwidth model.BitRate `json:"bandwidth,omitempty"`
	// Mode is how memory is copied: "live" (pre-copied while the guest
	// runs; the shortest pause), "paused" (the guest paused for the whole
	// copy), or empty for the host's default (live under KVM, paused
	// under TCG: see docs/decisions.md).
	Mode string `json:"mode,omitempty"`
}

// ResizeRequest is the body of POST /workspaces/{name}/resize: the
// parts of the quantum to change (absent: unchanged). AllowMigrate lets
// vgrid move the guest live to a host with room when its own host
// cannot hold the new quantum for the rest of the lease.
type ResizeRequest struct {
	VCPUs        *int            `json:"vcpus,omitempty"`
	CPU          *float64        `json:"cpu,omitempty"`
	Memory       *model.ByteSize `json:"memory,omitempty"`
	Disk         *model.ByteSize `json:"disk,omitempty"`
	DiskIOPS     *int64          `json:"disk_iops,omitempty"`
	DiskBPS      *model.ByteSize `json:"disk_bps,omitempty"`
	Bandwidth    *model.BitRate  `json:"bandwidth,omitempty"`
	AllowMigrate bool            `json:"allow_migrate,omitempty"`
}

// NetworkAssignment is one overlay network as a host needs it: its VXLAN
// identifier, and the other hosts that have members on it (Peers, their
// underlay addresses) with each member's MAC there (Remotes), from which
// the host's agent writes the VXLAN forwarding entries.
type NetworkAssignment struct {
	Project string       `json:"project"`
	Name    string       `json:"name"`
	VNI     uint32       `json:"vni"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	NAT     bool         `json:"nat,omitempty"`
	// Peers are the underlay addresses of the other hosts with members on
	// the network (sorted).
	Peers []netip.Addr `json:"peers,omitempty"`
	// Remotes are the members on other hosts: MAC and host address.
	Remotes []RemoteMember `json:"remotes,omitempty"`
}

// RemoteMember is a member of a network on another host.
type RemoteMember struct {
	MAC  string     `json:"mac"`
	Peer netip.Addr `json:"peer"`
}

// Outgoing is a workspace whose files a host serves to another.
type Outgoing struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	Name    string `json:"name"`
	To      string `json:"to"`
	Memory  bool   `json:"memory,omitempty"`
}

// AgentReport is what an agent observed of one workspace on its host.
type AgentReport struct {
	ID         string            `json:"id"`
	Generation int64             `json:"generation"`
	State      model.State       `json:"state"`
	Reason     string            `json:"reason,omitempty"`
	PID        int               `json:"pid,omitempty"`
	Accel      string            `json:"accel,omitempty"`
	Cgroup     map[string]string `json:"cgroup,omitempty"`
	StartedAt  time.Time         `json:"started_at,omitempty"`
	Guest      *model.GuestInfo  `json:"guest,omitempty"`
	// Only the steps the agent saw; the server keeps the others.
	AgentReceived  time.Time `json:"agent_received,omitempty"`
	ProcessStarted time.Time `json:"process_started,omitempty"`
	GuestReady     time.Time `json:"guest_ready,omitempty"`
	// Suspend and resume measurements (see model.Timings).
	Suspended    time.Time      `json:"suspended,omitempty"`
	SuspendTook  model.Duration `json:"suspend_took,omitempty"`
	SuspendBytes int64          `json:"suspend_bytes,omitempty"`
	Resumed      time.Time      `json:"resumed,omitempty"`
	ResumeTook   model.Duration `json:"resume_took,omitempty"`
	// CPUSeconds is the CPU time the workspace's current QEMU process has
	// used (its cgroup's counter): it only grows during a run and starts
	// again from 0 with each new process (start or resume; tell them apart
	// by PID and StartedAt). A Stopped or Suspended report carries the
	// final value of the process that ended. Omitted when unknown.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// MoveBytes and MoveDone are the progress of copying the workspace's
	// files from the host it moves from; Moved says they are all here
	// (checked), so the source may drop its copy.
	// Applied is the quantum the host enforces on the running guest (after
	// a start or an in-place resize).
	Applied   *model.Quantum `json:"applied,omitempty"`
	MoveBytes int64          `json:"move_bytes,omitempty"`
	MoveDone  int64          `json:"move_done,omitempty"`
	Moved     bool           `json:"moved,omitempty"`
}

// Lease is one lease of the control plane's calendar.
type Lease struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	Kind    string `json:"kind"`  // immediate, best-effort, reservation, deadline
	State   string `json:"state"` // queued, scheduled, running, suspended, done, cancelled, refused, failed
	// Start and End bound the current or next run; Planned says they are
	// a backfill plan for a waiting lease, not a promise.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	Hosts []string  `json:"hosts"`
	// Members are the lease's workspaces (member i on Hosts[i]).
	Members     []string       `json:"members,omitempty"`
	Planned     bool           `json:"planned,omitempty"`
	Remaining   model.Duration `json:"remaining"`
	Suspensions int            `json:"suspensions,omitempty"`
	Requeues    int            `json:"requeues,omitempty"`
	Reason      string         `json:"reason,omitempty"`
	// What the lease's slots held so far, and what its workspaces used
	// (CPU time from their cgroups, as their hosts reported it).
	ReservedCoreHours float64 `json:"reserved_core_hours"`
	ReservedGiBHours  float64 `json:"reserved_gib_hours"`
	UsedCPUSeconds    float64 `json:"used_cpu_seconds"`
	UsedCoreHours     float64 `json:"used_core_hours"`
}

// ProjectUsage sums a project's leases: what they reserved and what they
// used, and the fair-share usage the calendar orders its queue by.
type ProjectUsage struct {
	Project            string  `json:"project"`
	Leases             int     `json:"leases"`
	ReservedCoreHours  float64 `json:"reserved_core_hours"`
	ReservedGiBHours   float64 `json:"reserved_gib_hours"`
	UsedCPUSeconds     float64 `json:"used_cpu_seconds"`
	UsedCoreHours      float64 `json:"used_core_hours"`
	FairShareCoreHours float64 `json:"fair_share_core_hours"`
}

// UsageList is the answer to GET /usage.
type UsageList struct {
	Since    *time.Time     `json:"since,omitempty"`
	Projects []ProjectUsage `json:"projects"`
}

// LeaseExtend asks for a longer (or, with a negative By, shorter) lease:
// By a duration, or Until a new end. Exactly one is set.
type LeaseExtend struct {
	By    model.Duration `json:"by,omitempty"`
	Until time.Time      `json:"until,omitzero"`
}

// LeaseList is the answer to GET /leases: one page (see WorkspaceList).
type LeaseList struct {
	Leases   []Lease `json:"leases"`
	Continue string  `json:"continue,omitempty"`
}
