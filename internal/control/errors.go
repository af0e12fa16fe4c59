package control

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
)

// Kind classifies an Error for the API layer.
type Kind int

// Error kinds.
const (
	KindInvalid  Kind = iota + 1 // the request is malformed (400)
	KindNotFound                 // no such object in the caller's project (404)
	KindConflict                 // the object's state does not allow it now (409)
	KindGone                     // an agent reports on a workspace no longer on its host (410)
	KindLimit                    // the project is at an object limit (409)
)

// Error is a refusal of a request, for its caller.
type Error struct {
	Kind   Kind
	Msg    string
	Fields []api.FieldError
}

func (e *Error) Error() string { return e.Msg }

func invalid(msg string, fields ...api.FieldError) error {
	return &Error{Kind: KindInvalid, Msg: msg, Fields: fields}
}

func notFound(what string) error { return &Error{Kind: KindNotFound, Msg: what + " not found"} }

func conflict(msg string) error { return &Error{Kind: KindConflict, Msg: msg} }

func gone(msg string) error { return &Error{Kind: KindGone, Msg: msg} }

// RefusalError is the calendar's refusal of a lease (insufficient capacity,
// quota, deadline): what was short, where, when, and the earliest fit.
type RefusalError struct{ Refusal *calendar.Refusal }

func (e *RefusalError) Error() string { return e.Refusal.Error() }

// Longest is, for a refused lease extension, the longest extension
// possible now.
func (e *RefusalError) Longest() (time.Duration, bool) {
	return e.Refusal.Longest, e.Refusal.Reason == calendar.ReasonExtend
}

// ErrNoReadyHost says no host agent is ready: there is nowhere to run.
var ErrNoReadyHost = errors.New("no ready host: start a host agent (vgrid agent) or wait for one to register")

// errSkip tells mutateWS to write nothing.
var errSkip = errors.New("skip")

// refused is a calendar refusal as project's caller may see it: leases of
// other projects in the way are counted, not named.
func refused(rf *calendar.Refusal, project string) *RefusalError {
	r := *rf
	var hidden []string
	mask := func(ids []string) []string {
		var own []string
		others := 0
		for _, id := range ids {
			if strings.HasPrefix(id, project+"/") {
				own = append(own, id)
				continue
			}
			others++
			hidden = append(hidden, id)
		}
		switch others {
		case 0:
		case 1:
			own = append(own, "1 lease of another project")
		default:
			own = append(own, fmt.Sprintf("%d leases of other projects", others))
		}
		return own
	}
	r.Blocking = mask(rf.Blocking)
	r.Unsuspendable = mask(rf.Unsuspendable)
	r.TooFresh = mask(rf.TooFresh)
	r.Deadlines = mask(rf.Deadlines)
	// Longest IDs first, so that one ID that begins another is not half
	// replaced.
	sort.Slice(hidden, func(i, j int) bool { return len(hidden[i]) > len(hidden[j]) })
	for _, id := range hidden {
		r.Detail = strings.ReplaceAll(r.Detail, id, "a lease of another project")
	}
	return &RefusalError{&r}
}

// MaskReason hides the lease named in a calendar reason ("preempted by
// p/x") when it is not project's: a caller learns only about its own
// project's objects.
func MaskReason(reason, project string) string {
	if by, ok := strings.CutPrefix(reason, "preempted by "); ok && !strings.HasPrefix(by, project+"/") {
		return "preempted by a lease of another project"
	}
	return reason
}
