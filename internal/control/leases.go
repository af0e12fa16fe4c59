package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Page is one page of a listing: the items after a key, and the token of
// the next page ("" after the last).
type Page struct {
	After string // continue token of the previous page ("" for the first)
	Limit int
}

// page reads one page of keys under prefix: limit after the continue token
// (a key without the prefix); it returns the next token.
func (ctl *Controller) page(ctx context.Context, prefix string, p Page) ([]store.KV, string, error) {
	if strings.ContainsRune(p.After, 0) || len(p.After) > 512 {
		return nil, "", invalid("continue: not a token this server gave")
	}
	after := ""
	if p.After != "" {
		after = prefix + p.After
	}
	kvs, more, err := ctl.store.ListPage(ctx, prefix, after, p.Limit)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more && len(kvs) > 0 {
		next = strings.TrimPrefix(kvs[len(kvs)-1].Key, prefix)
	}
	return kvs, next, nil
}

// Leases returns one page of a project's stored leases.
func (ctl *Controller) Leases(ctx context.Context, project string, p Page) ([]model.LeaseRecord, string, error) {
	kvs, next, err := ctl.page(ctx, "leases/"+project+"/", p)
	if err != nil {
		return nil, "", err
	}
	out := make([]model.LeaseRecord, 0, len(kvs))
	for _, kv := range kvs {
		var r model.LeaseRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, "", fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, next, nil
}

// Lease finds a lease of project by its workspace's name (the workspace's
// current lease) or by lease ID.
func (ctl *Controller) Lease(ctx context.Context, project, name string) (model.LeaseRecord, error) {
	ids := []string{name, project + "/" + name}
	if ws, err := ctl.getWS(ctx, project, name); err == nil {
		ids = append([]string{leaseID(ws)}, ids...)
	}
	for _, id := range ids {
		if r, err := ctl.leaseRecord(ctx, project, id); err == nil {
			return r, nil
		} else if !isNotFound(err) {
			return r, err
		}
	}
	return model.LeaseRecord{}, notFound(fmt.Sprintf("lease %q", name))
}

// IsNotFound reports whether err says the object asked for does not exist.
func IsNotFound(err error) bool { return isNotFound(err) }

func isNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindNotFound
}

// CancelLease cancels a lease: its workspace is stopped (a waiting one
// never starts) and its slots are given back.
func (ctl *Controller) CancelLease(ctx context.Context, project, name string) (model.LeaseRecord, error) {
	r, err := ctl.Lease(ctx, project, name)
	if err != nil {
		return r, err
	}
	if r.State.Over() {
		return r, conflict(fmt.Sprintf("lease %s is %s already", r.ID, r.State))
	}
	wsProject, wsName, _ := refOfLease(r.ID)
	if ws, err := ctl.getWS(ctx, wsProject, wsName); err == nil && leaseID(ws) == r.ID {
		if _, err := ctl.StopWorkspace(ctx, wsProject, wsName, "lease cancelled"); err != nil {
			return r, err
		}
	} else {
		ctl.mu.Lock()
		c, err := ctl.calendarLocked(ctx)
		if err == nil {
			// Cancel carries the calendar to now first, even when it then
			// refuses: what that did is stored either way.
			acts, cerr := c.Cancel(r.ID, ctl.now())
			if err = ctl.commitLocked(ctx, acts, nil); err == nil {
				err = cerr
			}
		}
		ctl.mu.Unlock()
		if err != nil {
			if IsNotLeader(err) {
				return r, err // another replica can answer
			}
			return r, conflict(err.Error())
		}
	}
	return ctl.leaseRecord(ctx, project, r.ID)
}

// Gantt draws the calendar over [from, to) as text, width cells wide.
// Unless all is set, other projects' leases than project are drawn as '*'.
func (ctl *Controller) Gantt(ctx context.Context, from, to time.Time, width int, project string, all bool) (string, error) {
	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx)
	var rows []calendar.Row
	if err == nil {
		rows = c.GanttData(from, to)
	}
	ctl.mu.Unlock()
	if err != nil {
		return "", err
	}
	if !all {
		rows = calendar.Mask(rows, project)
	}
	return calendar.RenderGantt(rows, from, to, width), nil
}

// CalendarSnapshot is the calendar's whole durable state as it is now in
// memory (restored from the store first if need be).
func (ctl *Controller) CalendarSnapshot(ctx context.Context) (calendar.Snapshot, error) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return calendar.Snapshot{}, err
	}
	return c.Snapshot(), nil
}

// ExtendLease lengthens (by > 0) or shortens (by < 0) a lease's run, or
// moves its end to until. It is granted when the calendar can hold the
// longer window on the same hosts without breaking any admitted lease;
// otherwise the *RefusalError names the lease in the way and the longest
// extension possible now. Shortening gives capacity back to the queue.
func (ctl *Controller) ExtendLease(ctx context.Context, project, name string, by time.Duration, until time.Time) (model.LeaseRecord, error) {
	r, err := ctl.Lease(ctx, project, name)
	if err != nil {
		return r, err
	}
	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		ctl.mu.Unlock()
		return r, err
	}
	var acts []calendar.Action
	if until.IsZero() {
		acts, err = c.Extend(r.ID, by, ctl.now())
	} else {
		acts, err = c.ExtendTo(r.ID, until, ctl.now())
	}
	if err != nil {
		// A refusal or a bad request changes nothing in the calendar, but
		// Extend first carried it to now: store what that did.
		if cerr := ctl.commitLocked(ctx, acts, nil); cerr != nil {
			ctl.log.Warn("calendar: store decisions", "err", cerr)
		}
		ctl.mu.Unlock()
		var rf *calendar.Refusal
		switch {
		case errors.As(err, &rf):
			return r, refused(rf, project)
		case errors.Is(err, calendar.ErrFinished):
			return r, conflict(err.Error())
		case errors.Is(err, calendar.ErrNotFound):
			return r, notFound(fmt.Sprintf("lease %q", name))
		}
		return r, invalid(err.Error(), api.FieldError{Field: extendField(until), Reason: err.Error()})
	}
	var end time.Time
	if v, ok := c.Get(r.ID); ok {
		end = v.End
	}
	err = ctl.commitLocked(ctx, acts, nil)
	ctl.mu.Unlock()
	if err != nil {
		return r, err
	}
	ctl.wake()
	// The workspace shows the new end (the calendar is the authority).
	wsProject, wsName, _ := refOfLease(r.ID)
	if ws, err := ctl.mutateWS(ctx, wsProject, wsName, func(ws *model.Workspace) error {
		if leaseID(*ws) != r.ID || end.IsZero() || ws.Status.ExpiresAt.IsZero() || ws.Status.ExpiresAt.Equal(end) {
			return errSkip
		}
		ws.Status.ExpiresAt = end
		return nil
	}); err == nil {
		what := fmt.Sprintf("lease extended by %s", by)
		if by < 0 {
			what = fmt.Sprintf("lease shortened by %s", -by)
		}
		if !until.IsZero() {
			what = "lease end moved to " + until.UTC().Format(time.RFC3339)
		}
		ctl.event(ctx, ws, "lease", what)
	}
	return ctl.leaseRecord(ctx, project, r.ID)
}

func extendField(until time.Time) string {
	if until.IsZero() {
		return "by"
	}
	return "until"
}
