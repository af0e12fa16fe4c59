package control

import (
	"errors"
	"fmt"
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

func refusalOr(err error, field string) error {
	var rf *calendar.Refusal
	if errors.As(err, &rf) {
		return &RefusalError{rf}
	}
	return invalid("invalid workspace spec", api.FieldError{Field: field, Reason: fmt.Sprint(err)})
}
