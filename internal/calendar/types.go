package calendar

import (
	"time"

	"vgrid/internal/model"
)

// MaxDuration bounds a lease's run, so that no time the calendar computes
// leaves the range model.LeaseTimeOK allows by much (nanoseconds since
// 1970 end in 2262).
const MaxDuration = 50 * 366 * 24 * time.Hour

// Kind says how a lease wants its time: the model's one vocabulary.
type Kind = model.LeaseKind

// Lease kinds.
const (
	// Immediate leases start now or are refused.
	Immediate = model.LeaseImmediate
	// BestEffort leases wait in the queue until capacity allows; they may be
	// preempted by reservations and deadline leases.
	BestEffort = model.LeaseBestEffort
	// Reservation leases (advance reservations) run from Start for Duration;
	// once admitted the window is guaranteed.
	Reservation = model.LeaseReservation
	// Deadline leases must end by Deadline; they are given the earliest
	// start that meets it, or refused.
	Deadline = model.LeaseDeadline
)

// Preempt says how a best-effort lease may give way to a reservation or a
// deadline lease. Other kinds are never preempted.
type Preempt string

// Preemption modes.
const (
	// PreemptSuspend (the default) saves the lease's memory to disk and
	// resumes it later, on the same or another host. When Policy.Suspend is
	// false the lease is requeued instead.
	PreemptSuspend Preempt = ""
	// PreemptRequeue stops the lease and puts it back in the queue: it
	// restarts from scratch, losing its progress.
	PreemptRequeue Preempt = "requeue"
	// PreemptNever makes a best-effort lease keep its slots once started.
	PreemptNever Preempt = "never"
)

// Request is one workspace of a lease: what it needs and the host labels
// it must find (e.g. gpu=true); its Workspace name is the caller's.
type Request = model.LeaseMember

// Image is what a lease boots; its size and the host's StageRate give the
// time to stage it before the start.
type Image struct {
	Name string
	Size model.ByteSize
}

// Lease is a request for time on the grid. All its members get slots at the
// same time (possibly on different hosts) or none does.
type Lease struct {
	ID      string
	Project string
	Kind    Kind
	// Members are the workspaces, one entry each.
	Members []Request
	// Start is when a Reservation begins (the workspaces run from Start).
	Start time.Time
	// Duration is how long the workspaces run.
	Duration time.Duration
	// Deadline is when a Deadline lease must have ended.
	Deadline time.Time
	// Preempt applies to best-effort leases.
	Preempt Preempt
	// Submitted orders the queue; zero means the time of Submit.
	Submitted time.Time
	Image     Image
}

// Host is a physical host as the calendar sees it. The rates model the time
// to suspend (memory to disk), resume and stage an image; zero means
// instantaneous. BootTime is how long a guest takes from its start (the
// process) to ready (its agent answers), as measured on the host; zero
// means not modelled. SetHostTimes changes the measured values of a live
// host.
type Host struct {
	Name        string
	Capacity    model.Resources
	Labels      map[string]string
	SuspendRate int64 // bytes/s written when suspending
	ResumeRate  int64 // bytes/s read when resuming
	StageRate   int64 // bytes/s of image staging (and of moving a suspended image)
	// Images are the images the host has in its cache: a fresh start
	// there stages nothing.
	Images []string
	// BootTime is counted in whole seconds, rounded up, at most
	// MaxBootTime.
	BootTime time.Duration
	// Cordoned hosts keep their holds but are given no new ones
	// (SetCordon).
	Cordoned bool
	// MigrateRate is the bytes/s of live migration from or to the host,
	// as measured; 0 means unknown, counted as DefaultMigrateRate. A
	// migration takes MigrateSetup plus the memory moved over the slower
	// of the two hosts' rates (SetHostMigrateRate changes it).
	MigrateRate int64
	// Storage says the host serves network volumes (its agent runs a
	// storage daemon). When any live host does, PlaceVolume puts volumes
	// only on such hosts; when none does, on any host with disk.
	Storage bool

	// volumes are the network volumes on the host's disk (PlaceVolume,
	// AddVolume); the calendar keeps them, the caller cannot set them.
	volumes []Volume
}

// DefaultMigrateRate is the live migration rate of a host that has not
// measured its own: 100 MiB/s, below what QEMU 7.2 reached under TCG
// with its default bandwidth cap of 128 MiB/s (150 MB of dirty guest
// memory, 214.7 MB sent in 1.53 s, about 134 MiB/s; see the measured
// figures in the project's feasibility notes), since a busy guest sends
// its dirtied pages again.
const DefaultMigrateRate = 100 * int64(model.MiB)

// MigrateSetup is the fixed cost of a live migration on top of moving the
// memory: starting the destination's QEMU, the handshake, the last
// stop-and-copy round.
const MigrateSetup = time.Second

// MaxBootTime bounds Host.BootTime: a longer measurement is an error, not
// a reason to hold every fresh start's slots that much longer.
const MaxBootTime = time.Hour

// Exclusion says which suspensions and resumptions may overlap
// (Policy.Exclusion).
type Exclusion string

// Exclusions.
const (
	ExclusionLocal  Exclusion = "local"
	ExclusionGlobal Exclusion = "global"
)

// Backfill selects how the best-effort queue may be overtaken.
type Backfill string

// Backfill policies.
const (
	// BackfillAggressive (EASY, the default): the first lease that cannot
	// start gets a reservation at its earliest start; later leases may start
	// now if they do not delay it.
	BackfillAggressive Backfill = "aggressive"
	// BackfillConservative: every waiting lease gets a reservation in queue
	// order; a later lease may start now only if it delays none of them.
	BackfillConservative Backfill = "conservative"
	// BackfillNone: strict queue order; the first lease that cannot start
	// holds back all that follow it.
	BackfillNone Backfill = "none"
)

// Placement selects the host order among hosts that fit.
type Placement string

// Placement policies.
const (
	FirstFit Placement = "first-fit" // host name order (the default)
	Pack     Placement = "pack"      // most allocated host first
	Spread   Placement = "spread"    // least allocated host first
)

// FairShare orders the best-effort queue by project: lowest decayed usage
// divided by weight first, then submit time.
type FairShare struct {
	// Weights per project; a project not listed weighs 1.
	Weights map[string]float64
	// HalfLife is how fast past usage (core-seconds) is forgotten; zero
	// means never.
	HalfLife time.Duration
	// Basis is what counts as usage: BasisReserved (the default) counts
	// the cores a project's running leases hold; BasisUsed counts only the
	// CPU time its workspaces were measured to use, which the caller adds
	// with AddUsage.
	Basis Basis
}

// Basis says what fair share counts.
type Basis string

// Fair-share bases.
const (
	BasisReserved Basis = "reserved" // held cores × time (the default, also "")
	BasisUsed     Basis = "used"     // measured CPU time, fed by AddUsage
)

// Quota caps what a project may hold. A zero field is no limit.
type Quota struct {
	MilliCPU   int64          // cores held at once, in thousandths
	Memory     model.ByteSize // memory held at once
	Workspaces int            // workspaces held at once
	CoreHours  float64        // total core-hours admitted (running or done)
}

// Policy is the calendar's configuration.
type Policy struct {
	Backfill Backfill
	// Depth caps how many waiting leases get a reservation under
	// conservative backfilling (0: all of them); those further back may
	// only start if they delay none. Aggressive backfilling has depth 1.
	Depth     int
	Placement Placement
	// Suspend lets preemption suspend leases; when false they are requeued.
	Suspend bool
	// SerialOnly, with Suspend, suspends only leases of one member;
	// larger ones are requeued (a guest alone is simple to save and
	// restore; the members of a virtual cluster, which talk to each other,
	// may not all take it well).
	SerialOnly bool
	// Exclusion says which memory images are saved or restored at the same
	// time: ExclusionLocal (the default) one at a time on each host, the
	// hosts in parallel (local disks); ExclusionGlobal one at a time for
	// all of a lease's hosts (one shared file system), so that suspending
	// or resuming a lease takes the sum of its hosts' times.
	Exclusion Exclusion
	// Gaps lets a best-effort lease that may be suspended start in a gap
	// shorter than its run (gaps.go): it runs until the room ends, is
	// suspended in time for what needs the room, and resumes later. It
	// needs Suspend; DefaultPolicy turns it on.
	Gaps bool
	// GapMinRun is the least run a gap must give (0: DefaultGapMinRun).
	GapMinRun time.Duration
	// MinRun is the least a running lease runs, from its start or
	// resume, before it may be displaced (suspended, requeued or migrated)
	// for another lease: a lease preempted sooner would have paid its
	// start or resume for little run. 0: no minimum.
	MinRun time.Duration
	// ResumeInPlace keeps a suspended lease on the hosts that hold its
	// saved memory (and its disks) until it resumes there: for a caller
	// that cannot move them.
	ResumeInPlace bool
	// FairShare, when set, orders the queue by project usage; nil is FIFO.
	FairShare *FairShare
	Quotas    map[string]Quota
	// Overcommit lets the slot table promise more than the hosts have: a
	// host's capacity of each resource counts as its real capacity times
	// the ratio. The zero value is no overcommit.
	Overcommit Overcommit
	// Link, when its bandwidth is set, sends the leases' images over a
	// shared link of that bandwidth (link.go).
	Link Link
	// Migrate lets an admission that would displace a running best-effort
	// lease live-migrate it to another host instead (ActMigrate), where
	// one has room for the rest of its hold and the migration can be done
	// before the slots are needed; the lease is suspended (or requeued)
	// only where that is impossible.
	Migrate bool
	// ShutdownTime is how long a lease's guests take to shut down once
	// their run ends (shutdown.go): the hold keeps the host's slots that
	// long after the run, so nothing else is placed there meanwhile. The
	// end action still comes at the run's end. A suspended, requeued or
	// migrated guest does not shut down (its slots go when its memory is
	// saved, at once, or when the move is over). 0 (the default): not
	// modelled. At most MaxBootTime.
	ShutdownTime time.Duration
}

// Overcommit holds the ratio of promised to real capacity per resource; a
// ratio must be 1 or more, and 0 means 1 (none). With CPU 2, a host with 2
// cores takes four 1-core workspaces at once: they share the cores and run
// slower when all are busy.
//
// Memory overcommit is dangerous with QEMU guests: a guest's RAM is its
// process's memory, which the guest fills (page cache) and rarely gives
// back, so guests that together use more than the host has make the host
// swap or its OOM killer kill a guest. Keep Memory at 1 unless the guests'
// working sets are known to be small. Disk overcommit counts on thin
// (copy-on-write) disks not filling up; bandwidth overcommit on guests not
// all sending at once.
type Overcommit struct {
	CPU       float64
	Memory    float64
	Disk      float64
	Bandwidth float64
}

// Capacity is what the calendar lets a host of real capacity r hold: each
// resource times its ratio.
func (o Overcommit) Capacity(r model.Resources) model.Resources {
	rs := o.ratios()
	return model.Resources{MilliCPU: overcommit(r.MilliCPU, rs[dCPU]), Memory: model.ByteSize(overcommit(int64(r.Memory), rs[dMem])),
		Disk: model.ByteSize(overcommit(int64(r.Disk), rs[dDisk])), Bandwidth: model.ByteSize(overcommit(int64(r.Bandwidth), rs[dBW]))}
}

// ratios lists the ratio of each slot-table dimension (1 for none).
func (o Overcommit) ratios() [nd]float64 {
	r := [nd]float64{o.CPU, o.Memory, o.Disk, o.Bandwidth, 1}
	for d := range r {
		if r[d] == 0 {
			r[d] = 1
		}
	}
	return r
}

// DefaultPolicy is aggressive backfilling, first fit, suspension allowed,
// best effort in gaps, FIFO queue, no quotas.
func DefaultPolicy() Policy {
	return Policy{Backfill: BackfillAggressive, Placement: FirstFit, Suspend: true, Gaps: true}
}

// State is where a lease is in its life: the model's one vocabulary.
type State = model.LeaseState

// Lease states.
const (
	StateQueued    = model.LeaseQueued    // best effort, waiting (never ran, or requeued)
	StateScheduled = model.LeaseScheduled // has slots that begin later (or is staging)
	StateRunning   = model.LeaseRunning   // its workspaces run (or boot, resume, or suspend)
	StateSuspended = model.LeaseSuspended // saved to disk, waiting to resume
	StateDone      = model.LeaseDone
	StateCancelled = model.LeaseCancelled
	StateRefused   = model.LeaseRefused
	StateFailed    = model.LeaseFailed // a host it needed went away
)

// ActionKind is what the server or simulator must do.
type ActionKind string

// Actions, in the order they sort at one instant.
const (
	ActEnd     ActionKind = "end"     // stop the lease's workspaces: its time is up (or it was cancelled)
	ActRequeue ActionKind = "requeue" // stop the workspaces; the lease waits again from scratch
	ActSuspend ActionKind = "suspend" // save the workspaces' memory to disk and stop them
	ActStage   ActionKind = "stage"   // copy the lease's image to Hosts
	ActMigrate ActionKind = "migrate" // live-migrate member Member from host From to host To, then EndMove
	ActResume  ActionKind = "resume"  // restore the saved workspaces on Hosts
	ActStart   ActionKind = "start"   // boot the workspaces on Hosts (the boot time before their run)
)

// Action is one thing to carry out at At.
type Action struct {
	At    time.Time
	Kind  ActionKind
	Lease string
	// Hosts has one entry per member (member i runs on Hosts[i]), except for
	// stage, which lists each host once.
	Hosts []string
	// Reason says why, for end, requeue, suspend and migrate (e.g.
	// "preempted by ar1", "making room for ar1").
	Reason string
	// Member, From and To say, for migrate, which member moves from which
	// host to which; Duration is the time the calendar allows for it (it
	// must be done by At+Duration, when its slots on From are promised to
	// another lease). The caller reports the outcome with EndMove.
	Member   int
	From, To string
	Duration time.Duration
}

// Victim is a best-effort lease that an admission displaces.
type Victim struct {
	Lease string
	Kind  ActionKind // ActSuspend, ActRequeue, or ActMigrate (Policy.Migrate)
	At    time.Time  // when the suspension (the requeue, the first migration) begins
}

// Admission is the answer to an accepted Submit.
type Admission struct {
	Lease string
	State State // StateQueued (best effort) or StateScheduled
	// Start and End bound the run of a scheduled lease (its guests are
	// ready at Start: a fresh start's start action comes its boot time
	// before); Hosts is its placement (member i on Hosts[i]).
	Start, End time.Time
	Hosts      []string
	Victims    []Victim
	// Moved lists the admitted deadline leases that were moved to make
	// room (shift.go), each still ending by its deadline.
	Moved []Moved
	// Resumes lists the running deadline leases suspended to make room
	// (in Victims) and whose resume was booked (booked.go): Start and End
	// bound the rest of the run, FromStart and FromEnd the run before.
	Resumes []Moved
}

// LeaseView is a lease's state as the calendar knows it.
type LeaseView struct {
	ID      string
	Project string
	Kind    Kind
	State   State
	// Start and End bound the current (or next) run; for a waiting lease
	// with a backfill plan they are the plan (Planned is true), which is not
	// a promise.
	Start, End time.Time
	Hosts      []string
	// Members are the workspaces the lease runs, in member order (member
	// i on Hosts[i]).
	Members []string
	Planned bool
	// Remaining is the run time still owed.
	Remaining   time.Duration
	Suspensions int
	Requeues    int
	// Reason says why the lease was refused, failed, or is held.
	Reason string
	// ShutdownTo is when the hold ends after the run, when it goes on
	// past End for the guests' shutdown (Policy.ShutdownTime): the slots
	// are held until then. Zero otherwise. ShuttingDown says the run is
	// over (its end action came, or it finished) and the guests are
	// shutting down.
	ShutdownTo   time.Time
	ShuttingDown bool
	// Moving maps the members being moved (BeginMove, or a migration the
	// calendar decided) to the host they move to; nil when none is. A
	// moving member holds slots on both hosts until EndMove.
	Moving map[int]string
}
