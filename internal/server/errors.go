package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// Sentinel errors of the API layer.
var (
	errUnauthorized = errors.New("missing or unknown bearer token")
	errForbidden    = errors.New("this token may not do that")
	errNotFound     = errors.New("not found")
)

// httpError carries a status and code chosen by a handler.
type httpError struct {
	status int
	code   string
	msg    string
	fields []api.FieldError
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string, fields ...api.FieldError) error {
	return &httpError{http.StatusBadRequest, api.CodeInvalid, msg, fields}
}

func notFound(what string) error {
	return &httpError{http.StatusNotFound, api.CodeNotFound, what + " not found", nil}
}

func conflict(msg string) error {
	return &httpError{http.StatusConflict, api.CodeConflict, msg, nil}
}

// writeError maps any error to a status and the api.Error shape, in one place.
func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	if clientGone(err) {
		// Nobody is there to read an answer, and it is no fault of ours.
		log.Debug("client went away", "err", err)
		return
	}
	body := api.ErrorBody{Message: err.Error()}
	status := http.StatusInternalServerError
	var he *httpError
	var fe *spec.FieldErrors
	var ce *control.Error
	var rf *control.RefusalError
	switch {
	case errors.As(err, &rf):
		status, body.Code = http.StatusConflict, api.CodeCapacity
		r := rf.Refusal
		if r.Resource != "" && r.Resource != "core-hours" {
			body.Shortfalls = []api.Shortfall{{Resource: r.Resource, Requested: int64(r.Requested), Free: int64(r.Free), Host: r.Host}}
		}
		if !r.EarliestFit.IsZero() {
			t := r.EarliestFit
			body.FreesAt = &t
		}
		body.Blocking = r.Blocking
		if l, ok := rf.Longest(); ok {
			d := model.Duration(l)
			body.Longest = &d
		}
	case errors.As(err, &he):
		status, body.Code, body.Fields = he.status, he.code, he.fields
	case errors.As(err, &fe):
		status, body.Code = http.StatusBadRequest, api.CodeInvalid
		for _, f := range fe.Fields() {
			body.Fields = append(body.Fields, api.FieldError{Field: f.Field, Reason: f.Reason})
		}
	case errors.As(err, &ce):
		body.Fields = ce.Fields
		switch ce.Kind {
		case control.KindInvalid:
			status, body.Code = http.StatusBadRequest, api.CodeInvalid
		case control.KindNotFound:
			status, body.Code = http.StatusNotFound, api.CodeNotFound
		case control.KindGone:
			status, body.Code = http.StatusGone, api.CodeNotFound
		case control.KindLimit:
			status, body.Code = http.StatusConflict, api.CodeLimit
		default:
			status, body.Code = http.StatusConflict, api.CodeConflict
		}
	case errors.Is(err, store.ErrNotLeader):
		status, body.Code = http.StatusServiceUnavailable, api.CodeNotLeader
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, control.ErrNoReadyHost):
		status, body.Code = http.StatusServiceUnavailable, api.CodeCapacity
	case errors.Is(err, errUnauthorized):
		status, body.Code = http.StatusUnauthorized, api.CodeUnauthorized
	case errors.Is(err, errForbidden):
		status, body.Code = http.StatusForbidden, api.CodeForbidden
	case errors.Is(err, errNotFound), errors.Is(err, store.ErrNotFound):
		status, body.Code = http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		status, body.Code = http.StatusConflict, api.CodeConflict
	default:
		body.Code = api.CodeInternal
		log.Error("internal error", "err", err)
	}
	writeJSON(w, status, api.Error{Error: body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// clientGone says whether err is the request's end rather than a failure:
// its context was canceled because the client disconnected (or the
// server is shutting down). A connection reset is not taken for one: it
// may be the store's connection, and that is a failure.
func clientGone(err error) bool {
	return errors.Is(err, context.Canceled)
}
