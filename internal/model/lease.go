package model

import "time"

// The times a lease may name: outside them the calendar's arithmetic (in
// nanoseconds since 1970, which ends in 2262) would be at risk, and no one
// books that far.
var (
	MinLeaseTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxLeaseTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// LeaseTimeOK reports whether t is a time a lease may name.
func LeaseTimeOK(t time.Time) bool {
	return !t.Before(MinLeaseTime) && t.Before(MaxLeaseTime)
}

// LeaseKind says how a lease wants its time. The spec, the calendar, the
// control plane and the simulator all use this one type.
type LeaseKind string

// Lease kinds.
const (
	LeaseImmediate   LeaseKind = "immediate"   // start now or refuse (the default)
	LeaseBestEffort  LeaseKind = "best-effort" // queue until capacity allows; preemptible by default
	LeaseReservation LeaseKind = "reservation" // a guaranteed window from Start for the duration
	LeaseDeadline    LeaseKind = "deadline"    // the earliest start that ends by Deadline, or refuse
)

// LeaseState is where a lease is in its life.
type LeaseState string

// Lease states.
const (
	LeaseQueued    LeaseState = "queued"    // best effort, waiting (never ran, or requeued)
	LeaseScheduled LeaseState = "scheduled" // has slots that begin later (or is staging)
	LeaseRunning   LeaseState = "running"   // its workspaces run (or resume, or suspend)
	LeaseSuspended LeaseState = "suspended" // saved to disk, waiting to resume
	LeaseDone      LeaseState = "done"
	LeaseCancelled LeaseState = "cancelled"
	LeaseRefused   LeaseState = "refused"
	LeaseFailed    LeaseState = "failed" // a host it needed went away
)

// Over reports whether a lease in this state holds and will hold nothing.
func (s LeaseState) Over() bool {
	switch s {
	case LeaseDone, LeaseCancelled, LeaseRefused, LeaseFailed:
		return true
	}
	return false
}

// LeaseMember is one workspace of a lease: what it needs and the host
// labels it must find.
type LeaseMember struct {
	// Workspace names the member's workspace (in the lease's project); the
	// calendar itself does not use it.
	Workspace string            `json:"workspace,omitempty"`
	Resources Resources         `json:"resources"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Spread asks for the member to be on another host than the lease's
	// other members of the same resources, labels and Spread (a role's
	// anti-affinity), where the hosts allow; else they share hosts.
	Spread bool `json:"spread,omitempty"`
}

// LeaseHold is a lease's current hold of slots: [From, To) on Hosts
// (member i on Hosts[i]); its run is [Start, RunEnd) after Pre of overhead
// (staging, then Boot of booting, for a fresh start; resuming for a
// resume); a hold whose Fate is "suspend" is suspending from RunEnd to To,
// one whose Fate is "" shutting down (the calendar's Policy.ShutdownTime).
// The flags say which of its steps were already carried out.
type LeaseHold struct {
	Hosts  []string  `json:"hosts"`
	From   time.Time `json:"from"`
	Start  time.Time `json:"start"`
	RunEnd time.Time `json:"run_end"`
	To     time.Time `json:"to"`
	Pre    Duration  `json:"pre,omitempty"`
	Resume bool      `json:"resume,omitempty"`
	// Boot is the part of Pre in which the guests boot: a fresh start's
	// start action comes at Start-Boot, so that they are ready at Start.
	// Zero for a resume, and in records written before boot was modelled.
	Boot Duration `json:"boot,omitempty"`
	// Fate is how the hold ends: "" (the lease ends), "suspend" or "requeue".
	Fate        string `json:"fate,omitempty"`
	Cause       string `json:"cause,omitempty"`
	Staged      bool   `json:"staged,omitempty"`
	Started     bool   `json:"started,omitempty"`
	SuspendSent bool   `json:"suspend_sent,omitempty"`
	// Stopped says the run is over (its end action was sent, or the
	// guests stopped by themselves) and the guests are shutting down
	// until To (a hold whose Fate is "" and To after RunEnd).
	Stopped bool `json:"stopped,omitempty"`
	// Holding says the run is counted in its project's fair-share usage.
	Holding bool `json:"holding,omitempty"`
	// Moves are the members moving to another host: they hold slots on
	// both hosts until the move ends.
	Moves []LeaseMove `json:"moves,omitempty"`
}

// LeaseMove is a member of a held lease moving to another host (a live
// migration): it holds slots on To from Start to the end of the hold, and
// on its own host (Hosts[Member]) until the move ends, or, for a move the
// calendar decided to make room for another lease, until SourceUntil,
// when those slots are promised to that lease.
type LeaseMove struct {
	Member int    `json:"member"`
	To     string `json:"to"`
	// Resources is the member's size on To (a resize with migration);
	// nil: unchanged.
	Resources *Resources `json:"resources,omitempty"`
	Start     time.Time  `json:"start"`
	// SourceUntil, Cause, Duration and Sent are set for a move the
	// calendar decided: when its source slots are given up, the lease
	// they are promised to, the migration time it allows, and whether the
	// migrate action was given out.
	SourceUntil time.Time `json:"source_until,omitzero"`
	Cause       string    `json:"cause,omitempty"`
	Duration    Duration  `json:"duration,omitempty"`
	Sent        bool      `json:"sent,omitempty"`
}

// LeaseSegment is one stretch of a hold on one host, for charts:
// [From, To) held, [OverheadFrom, RunFrom) staging and booting, or
// resuming, [RunFrom, RunTo) running, [RunTo, To) suspending or shutting
// down (the guests stop at RunTo; the slots are held until To).
type LeaseSegment struct {
	Host         string    `json:"host"`
	From         time.Time `json:"from"`
	OverheadFrom time.Time `json:"overhead_from"`
	RunFrom      time.Time `json:"run_from"`
	RunTo        time.Time `json:"run_to"`
	To           time.Time `json:"to"`
	// Continued says the segment continues the hold of the one before it
	// (a member moved, or was resized, in the middle of the hold).
	Continued bool `json:"continued,omitempty"`
}

// LeaseRecord is what the lease calendar needs to restore a lease exactly
// as it was: the request, and where the calendar has got with it. The
// control plane stores it (inside Lease) before it acts on it.
type LeaseRecord struct {
	ID      string        `json:"id"`
	Project string        `json:"project"`
	Kind    LeaseKind     `json:"kind"`
	Members []LeaseMember `json:"members"`
	// Start is the reservation's requested start; Deadline the deadline
	// lease's; Duration the run length asked for (extensions included).
	Start    time.Time `json:"start,omitzero"`
	Deadline time.Time `json:"deadline,omitzero"`
	Duration Duration  `json:"duration"`
	// Preempt is "" (suspend), "requeue" or "never" (best effort only).
	Preempt    string   `json:"preempt,omitempty"`
	Image      string   `json:"image,omitempty"`
	ImageBytes ByteSize `json:"image_bytes,omitempty"`
	// Submitted orders the queue; Arrival is when it was submitted.
	Submitted time.Time  `json:"submitted"`
	Arrival   time.Time  `json:"arrival"`
	State     LeaseState `json:"state"`
	// Remaining is the run time still owed when the current hold's run
	// begins (or when it is next started).
	Remaining Duration   `json:"remaining"`
	Hold      *LeaseHold `json:"hold,omitempty"`
	// Next is a deadline lease's booked resume, after the suspension its
	// hold ends in (Resume set; RunEnd equals To).
	Next *LeaseHold `json:"next,omitempty"`
	// Transfers name the image transfers on the shared link that bring
	// its image (the simulator's link model; the calendar's snapshot
	// holds the transfers themselves).
	Transfers []TransferRef `json:"transfers,omitempty"`
	// Queued says it waits in the queue.
	Queued bool `json:"queued,omitempty"`
	// SavedOn is where a suspended lease's memory is (member i's on
	// SavedOn[i]).
	SavedOn     []string `json:"saved_on,omitempty"`
	Suspensions int      `json:"suspensions,omitempty"`
	Requeues    int      `json:"requeues,omitempty"`
	// ChargedCoreSeconds is what the lease counts against its project's
	// core-hour quota.
	ChargedCoreSeconds float64 `json:"charged_core_seconds,omitempty"`
	// ResizedCoreSeconds corrects what the lease's present size says it
	// used for the time it ran at another size (after a resize).
	ResizedCoreSeconds float64        `json:"resized_core_seconds,omitempty"`
	Reason             string         `json:"reason,omitempty"`
	Segments           []LeaseSegment `json:"segments,omitempty"`
}

// ProjectUsage is a project's fair-share and quota state in the calendar.
type ProjectUsage struct {
	Project string `json:"project"`
	// DecayedCoreSeconds is the fair-share usage as of At.
	DecayedCoreSeconds float64   `json:"decayed_core_seconds"`
	At                 time.Time `json:"at"`
	// ChargedCoreSeconds is what admitted leases count against the
	// project's core-hour quota.
	ChargedCoreSeconds float64 `json:"charged_core_seconds"`
}

// LeaseUsage is what a lease's workspaces used, as their hosts measured it:
// the CPU time of each QEMU process run (a start, a resume) from its
// cgroup. Stored apart from the workspace, so that a usage report wakes no
// one.
type LeaseUsage struct {
	Lease   string     `json:"lease"`
	Project string     `json:"project"`
	Runs    []RunUsage `json:"runs,omitempty"`
}

// RunUsage is one process run's CPU time.
type RunUsage struct {
	Workspace  string    `json:"workspace"`
	Started    time.Time `json:"started"`
	CPUSeconds float64   `json:"cpu_seconds"`
}

// CPUSeconds is the lease's total CPU time.
func (u LeaseUsage) CPUSeconds() float64 {
	var s float64
	for _, r := range u.Runs {
		s += r.CPUSeconds
	}
	return s
}

// Reserved is what a lease's slots held up to now: core-seconds and
// byte-seconds of memory, summed over its holds.
func (r LeaseRecord) Reserved(now time.Time) (coreSeconds, memByteSeconds float64) {
	var milli, mem float64
	for _, m := range r.Members {
		milli += float64(m.Resources.MilliCPU)
		mem += float64(m.Resources.Memory)
	}
	seen := map[[2]int64]bool{}
	for _, s := range r.Segments {
		k := [2]int64{s.From.UnixNano(), s.To.UnixNano()}
		if seen[k] {
			continue // another host of the same hold
		}
		seen[k] = true
		to := s.To
		if now.Before(to) {
			to = now
		}
		if d := to.Sub(s.From).Seconds(); d > 0 {
			coreSeconds += milli / 1000 * d
			memByteSeconds += mem * d
		}
	}
	return coreSeconds, memByteSeconds
}

// ImageTransfer is an image sent from the repository to hosts over a
// shared link over [From, To).
type ImageTransfer struct {
	Image string    `json:"image"`
	Size  ByteSize  `json:"size"`
	Hosts []string  `json:"hosts"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Used is the latest time a lease needed it (the host caches drop the
	// least recently used images first).
	Used time.Time `json:"used"`
}

// TransferRef names an image transfer on the shared link: one at a time
// goes over it, so its image and times tell it apart.
type TransferRef struct {
	Image string    `json:"image"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
}
