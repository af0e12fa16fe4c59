package calendar

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"vgrid/internal/model"
)

// Errors for bad calls. Refusals of well-formed leases are *Refusal.
var (
	ErrInvalid  = errors.New("invalid")
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
	ErrFinished = errors.New("already finished")
	// ErrUnknownHost is a host named in a call (BeginMove's destination)
	// that the calendar does not have, or no longer has; it wraps
	// ErrNotFound.
	ErrUnknownHost = fmt.Errorf("unknown host: %w", ErrNotFound)
)

// Reason classifies a refusal.
type Reason string

// Refusal reasons.
const (
	// ReasonCapacity: not enough room in the window.
	ReasonCapacity Reason = "capacity"
	// ReasonTooLarge: no set of hosts could hold the lease even when empty.
	ReasonTooLarge Reason = "too-large"
	// ReasonConstraint: no host has the labels a member asks for.
	ReasonConstraint Reason = "constraint"
	// ReasonQuota: the project's quota would be exceeded.
	ReasonQuota Reason = "quota"
	// ReasonDeadline: the lease cannot end by its deadline.
	ReasonDeadline Reason = "deadline"
	// ReasonTooSoon: a reservation starts before its image could be staged.
	ReasonTooSoon Reason = "too-soon"
	// ReasonImageCache: a host's image cache (Link.Cache) cannot take the
	// lease's image beside those admitted leases wait for.
	ReasonImageCache Reason = "image-cache"
	// ReasonExtend: a lease's run cannot be made longer (Extend): a host
	// it holds, or its project's quota, has no room after its end. Host
	// is empty when the quota is short (Detail says which).
	ReasonExtend Reason = "extend"
	// ReasonMove: a member cannot move to the host asked for (BeginMove):
	// no room there for the rest of the hold, labels, cordon, or quota.
	ReasonMove Reason = "move"
	// ReasonResize: a member cannot grow (Resize) on its host for the
	// rest of its hold, or no other host could hold it (ResizeTarget), or
	// its project's quota is short.
	ReasonResize Reason = "resize"
)

// Refusal says why a lease was not admitted: which resource, on which host
// and in which window, which leases stand in the way, and the earliest time
// at which it would fit.
type Refusal struct {
	Lease  string
	Reason Reason
	// Resource is the short dimension: cpu, memory, disk, bandwidth,
	// workspaces, or core-hours (quota).
	Resource string
	// Requested and Free are per member, in millicores, bytes or counts
	// (core-hours for the core-hour quota: Requested is the lease's cost,
	// Free what the quota has left).
	Requested, Free float64
	// Host is the host that came closest (empty for quotas).
	Host string
	// Members and Fit count the lease's members and how many would fit.
	Members, Fit int
	// From and To bound the window that could not be guaranteed.
	From, To time.Time
	// Blocking names the leases holding the closest host in the window.
	Blocking []string
	// Volumes are the volumes on Host that hold its disk (Resource disk).
	Volumes []string
	// Unsuspendable names preemptible leases that could not be suspended
	// in time to make room.
	Unsuspendable []string
	// TooFresh names preemptible leases that would not have run
	// Policy.MinRun (given in MinRun) by the time room was needed.
	TooFresh []string
	MinRun   time.Duration
	// Deadlines names the deadline leases in the way that could not be
	// moved, suspended or booked again so that every deadline holds.
	Deadlines []string
	// EarliestFit is the earliest start at which the lease would fit as
	// things stand (zero: never, or not known).
	EarliestFit time.Time
	// Detail is extra explanation (labels asked for, deadline, staging,
	// the quota an extension would exceed).
	Detail string
	// Capacity is Host's capacity of Resource as the slot table counts it
	// (its real capacity times Overcommit), and Overcommit the policy's
	// ratio for Resource (0 or 1: none); set when Host is.
	Capacity, Overcommit float64
	// Longest is, for an extension (ReasonExtend), the longest extension
	// possible now, in whole seconds; From and To are the lease's current
	// end and the end asked for.
	Longest time.Duration
	// Member is the member a move or resize is of (ReasonMove,
	// ReasonResize); for them Requested and Free are the member's size of
	// Resource asked for and the most it can have on Host in [From, To),
	// the rest of its hold, and EarliestFit (a move) is when Host has room
	// for it until the end of the hold.
	Member int
	// InTheWay is, for a resize, the lease whose hold of Host leaves too
	// little room first (a reservation, if one does), InTheWayKind its
	// kind and InTheWayFrom when its hold of Host begins.
	InTheWay     string
	InTheWayKind Kind
	InTheWayFrom time.Time
	// MaxNow is, for a resize (ReasonResize), the largest size the member
	// could have from now to the end of its hold on its host, within its
	// project's quotas (at least its present size).
	MaxNow model.Resources
}

func (r *Refusal) Error() string {
	var b strings.Builder
	switch r.Reason {
	case ReasonExtend:
		return r.extendError()
	case ReasonMove, ReasonResize:
		return r.memberError()
	}
	fmt.Fprintf(&b, "lease %s refused: ", r.Lease)
	switch r.Reason {
	case ReasonConstraint:
		fmt.Fprintf(&b, "no host has labels %s", r.Detail)
		return b.String()
	case ReasonQuota:
		fmt.Fprintf(&b, "project quota: %s", r.Detail)
		return b.String()
	case ReasonImageCache:
		fmt.Fprintf(&b, "image cache: %s", r.Detail)
		return b.String()
	case ReasonTooSoon:
		fmt.Fprintf(&b, "starts too soon: %s", r.Detail)
	case ReasonDeadline:
		fmt.Fprintf(&b, "cannot end by %s: %s", fmtT(r.To), r.Detail)
		return b.String()
	case ReasonTooLarge:
		b.WriteString("too large: ")
	default:
		b.WriteString("no room: ")
	}
	if r.Reason == ReasonTooLarge && r.Members > 1 {
		fmt.Fprintf(&b, "%d of %d members fit even on idle hosts; %s requested %s in all, the eligible hosts have %s",
			r.Fit, r.Members, r.Resource, amount(r.Resource, r.Requested), amount(r.Resource, r.Free))
		return b.String()
	}
	if r.Resource != "" && r.Reason != ReasonTooSoon && r.Reason != ReasonDeadline {
		if r.Members > 1 {
			fmt.Fprintf(&b, "%d of %d members fit", r.Fit, r.Members)
			if !r.From.IsZero() {
				fmt.Fprintf(&b, " in [%s, %s)", fmtT(r.From), fmtT(r.To))
			}
			fmt.Fprintf(&b, "; %s per member %s, ", r.Resource, amount(r.Resource, r.Requested))
		} else {
			fmt.Fprintf(&b, "%s requested %s, ", r.Resource, amount(r.Resource, r.Requested))
		}
		if r.Reason == ReasonTooLarge {
			fmt.Fprintf(&b, "the largest host (%s) has %s", r.Host, amount(r.Resource, r.Free))
			if r.Overcommit > 1 {
				fmt.Fprintf(&b, " (%s real, %s overcommit %gx)", amount(r.Resource, r.Free/r.Overcommit), r.Resource, r.Overcommit)
			}
		} else {
			fmt.Fprintf(&b, "at most %s free", amount(r.Resource, r.Free))
			if r.Host != "" {
				fmt.Fprintf(&b, " on host %s", r.Host)
			}
		}
		if r.Members <= 1 && !r.From.IsZero() {
			fmt.Fprintf(&b, " in [%s, %s)", fmtT(r.From), fmtT(r.To))
		}
		if len(r.Blocking) > 0 {
			fmt.Fprintf(&b, " (held by %s)", strings.Join(r.Blocking, ", "))
		}
		if len(r.Volumes) > 0 {
			fmt.Fprintf(&b, " (volumes %s hold disk there)", strings.Join(r.Volumes, ", "))
		}
		if r.Reason != ReasonTooLarge {
			b.WriteString(r.overcommitNote())
		}
	}
	if len(r.Unsuspendable) > 0 {
		fmt.Fprintf(&b, "; too late to suspend %s", strings.Join(r.Unsuspendable, ", "))
	}
	if len(r.Deadlines) > 0 {
		fmt.Fprintf(&b, "; the deadline leases in the way (%s) cannot make room and still end by their deadlines", strings.Join(r.Deadlines, ", "))
	}
	if len(r.TooFresh) > 0 {
		fmt.Fprintf(&b, "; not preempted before they have run %s: %s", r.MinRun, strings.Join(r.TooFresh, ", "))
	}
	switch {
	case r.Reason == ReasonTooLarge && len(r.Volumes) > 0:
		b.WriteString("; no host set is large enough even with no lease (volumes stay until deleted)")
	case r.Reason == ReasonTooLarge:
		b.WriteString("; no host set is large enough even when empty")
	case !r.EarliestFit.IsZero():
		fmt.Fprintf(&b, "; earliest fit at %s", fmtT(r.EarliestFit))
	case r.Reason == ReasonCapacity:
		b.WriteString("; no earliest fit known")
	}
	return b.String()
}

// overcommitNote says how much an overcommitted host has promised, so that
// a refusal on a host with 2 cores that names 4 explains itself.
func (r *Refusal) overcommitNote() string {
	if r.Overcommit <= 1 || r.Host == "" {
		return ""
	}
	return fmt.Sprintf("; %s allots %s of %s (%s real, %s overcommit %gx)", r.Host,
		amount(r.Resource, r.Capacity-r.Free), amount(r.Resource, r.Capacity),
		amount(r.Resource, r.Capacity/r.Overcommit), r.Resource, r.Overcommit)
}

func (r *Refusal) extendError() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lease %s: extension to %s refused: ", r.Lease, fmtT(r.To))
	switch {
	case r.Host != "":
		fmt.Fprintf(&b, "%s requested %s, at most %s free on host %s in [%s, %s)", r.Resource,
			amount(r.Resource, r.Requested), amount(r.Resource, r.Free), r.Host, fmtT(r.From), fmtT(r.To))
		if len(r.Blocking) > 0 {
			fmt.Fprintf(&b, " (held by %s)", strings.Join(r.Blocking, ", "))
		}
		b.WriteString(r.overcommitNote())
	default:
		fmt.Fprintf(&b, "project quota: %s", r.Detail)
	}
	fmt.Fprintf(&b, "; longest extension possible now: %v", r.Longest)
	return b.String()
}

func fmtT(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// amount prints an amount of a dimension for people.
func amount(resource string, v float64) string {
	switch resource {
	case "cpu":
		return fmt.Sprintf("%.2f cores", v/1000)
	case "workspaces":
		return fmt.Sprintf("%.0f", v)
	case "core-hours":
		return fmt.Sprintf("%.2f core-hours", v)
	case "bandwidth":
		return model.ByteSize(int64(v)).String() + "/s"
	}
	return model.ByteSize(int64(v)).String()
}
