package sim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/sim/trace"
)

// Final states of a lease in LeaseResult.State beyond the calendar's own
// (queued, scheduled, running, suspended: a lease still there when the
// run ended, which only a trace whose leases never fit leaves).
const (
	StateDone      = "done"      // ran to its end (its real run time, or its whole hold)
	StateRejected  = "rejected"  // refused by the calendar, or not a valid lease
	StateCancelled = "cancelled" // withdrawn before it started (trace's cancel-after)
)

// LeaseResult is what happened to one lease of a run, for people and
// scripts (vgrid sim --leases, and the leases array of -o json). Times
// are offsets from the trace start; nil means not applicable (a
// best-effort lease has no requested start, a rejected one no start).
type LeaseResult struct {
	ID, Kind, Project string
	Nodes             int
	CPUs              float64 // per node
	Submitted         time.Duration
	RequestedStart    *time.Duration // reservations; deadline leases that name one
	Deadline          *time.Duration
	Duration          time.Duration // requested
	// Start is the first start action (before the guests' boot), End
	// the end of the last run (the end action, or an early finish),
	// before the guests' shutdown (Policy.ShutdownTime).
	Start, End *time.Duration
	// Hosts are the hosts the lease ran on, in the order first used
	// (member order at its start, then resumes elsewhere, migrations).
	Hosts []string
	// State is StateDone, StateRejected, StateCancelled, or the
	// calendar's state of a lease left waiting; Reason says why (a
	// rejection's refusal message from the calendar, the end action's
	// reason).
	State, Reason                              string
	Suspensions, Resumes, Requeues, Migrations int
	// Suspended is the time from each suspend action to the resume that
	// followed it (saving and restoring memory included).
	Suspended time.Duration
	// ImageFrom and ImageTo bound the staging of the lease's image
	// before its first start (from the stage action to the start action
	// that followed it); nil when the calendar staged nothing for it.
	ImageFrom, ImageTo *time.Duration
}

// leaseOut is the engine's bookkeeping for LeaseResult beyond the
// metrics record.
type leaseOut struct {
	state, reason string
	resumes       int
	suspendedAt   time.Time
	inSuspend     bool
	suspended     time.Duration
	stageFrom     time.Time
	stageTo       time.Time
	staging       bool // a stage action came, its start not yet
	staged        bool // stageFrom and stageTo are set
	hosts         []string
	// seen is hosts as a set of the grid's host numbers (hostIndex),
	// once there are many.
	seen []uint64
}

// note records what action a says of the lease; idx numbers the grid's
// hosts.
func (o *leaseOut) note(a calendar.Action, idx map[string]int) {
	switch a.Kind {
	case calendar.ActStage:
		if !o.staged {
			o.stageFrom, o.staging = a.At, true
		}
	case calendar.ActStart:
		if o.staging {
			o.stageTo, o.staging, o.staged = a.At, false, true
		}
		o.addHosts(idx, a.Hosts...)
	case calendar.ActResume:
		o.resumes++
		o.endSuspension(a.At)
		o.addHosts(idx, a.Hosts...)
	case calendar.ActSuspend:
		o.suspendedAt, o.inSuspend = a.At, true
	case calendar.ActRequeue, calendar.ActEnd:
		o.endSuspension(a.At)
	}
}

func (o *leaseOut) endSuspension(t time.Time) {
	if o.inSuspend {
		o.suspended += max(t.Sub(o.suspendedAt), 0)
		o.inSuspend = false
	}
}

func (o *leaseOut) addHosts(idx map[string]int, hs ...string) {
	if o.hosts == nil {
		// Room for the first hosts at once (most leases run once).
		o.hosts = make([]string, 0, min(len(hs), 16))
	}
	for _, h := range hs {
		if n := len(o.hosts); n > 0 && o.hosts[n-1] == h {
			continue // members on one host come together
		}
		if i, ok := idx[h]; ok && o.seen != nil {
			if o.seen[i/64]&(1<<(i%64)) != 0 {
				continue
			}
			o.seen[i/64] |= 1 << (i % 64)
		} else if slices.Contains(o.hosts, h) {
			continue
		}
		o.hosts = append(o.hosts, h)
		if o.seen == nil && len(o.hosts) > 16 {
			// A lease of many members: a set, not a quadratic scan.
			o.seen = make([]uint64, (len(idx)+63)/64)
			for _, x := range o.hosts {
				if i, ok := idx[x]; ok {
					o.seen[i/64] |= 1 << (i % 64)
				}
			}
		}
	}
}

// invalidReason says why the engine did not submit a trace lease.
func invalidReason(tl trace.Lease) string {
	var why []string
	if !validKind(tl.Kind) {
		why = append(why, fmt.Sprintf("kind %q is not immediate, best-effort, reservation or deadline", tl.Kind))
	}
	if tl.Nodes <= 0 {
		why = append(why, fmt.Sprintf("nodes %d: want 1 or more", tl.Nodes))
	}
	if tl.Duration <= 0 {
		why = append(why, fmt.Sprintf("duration %s: want more than 0", tl.Duration))
	}
	return "invalid lease: " + strings.Join(why, "; ")
}

// result is l's LeaseResult at the end of the run.
func (e *engine) result(l *lease) LeaseResult {
	tl, rec, o := l.tr, l.rec, l.out
	r := LeaseResult{ID: tl.ID, Kind: string(tl.Kind), Project: tl.Project, Nodes: tl.Nodes, CPUs: tl.CPUs,
		Submitted: tl.Submit, Duration: tl.Duration, State: o.state, Reason: o.reason, Hosts: o.hosts,
		Suspensions: rec.Suspensions, Resumes: o.resumes, Requeues: rec.Requeues, Migrations: rec.Migrations,
		Suspended: o.suspended}
	ptr := func(d time.Duration) *time.Duration { return &d }
	switch tl.Kind {
	case calendar.Reservation:
		r.RequestedStart = ptr(tl.Start)
	case calendar.Deadline:
		r.Deadline = ptr(tl.Deadline)
		if tl.Start > 0 {
			r.RequestedStart = ptr(tl.Start)
		}
	}
	if l.started {
		r.Start = ptr(rec.Start)
	}
	if l.started && l.done {
		r.End = ptr(rec.End)
	}
	if o.staged {
		r.ImageFrom, r.ImageTo = ptr(offset(o.stageFrom)), ptr(offset(o.stageTo))
	}
	if r.State == "" {
		// Still in the calendar when nothing more was due.
		if v, ok := e.cal.Get(tl.ID); ok {
			r.State, r.Reason = string(v.State), v.Reason
		} else {
			r.State = "unknown"
		}
	}
	return r
}

// LeaseColumns names the fields of a LeaseResult in the order of the CSV
// header and of the JSON object's keys. Every time is written twice: as
// RFC 3339 in virtual time (Epoch plus the offset) and as seconds from
// the trace start (the same name with _s).
var LeaseColumns = []string{"id", "kind", "project", "nodes", "cpus",
	"submitted", "submitted_s", "requested_start", "requested_start_s", "deadline", "deadline_s", "duration_s",
	"start", "start_s", "end", "end_s", "hosts", "state", "reason",
	"suspensions", "resumes", "requeues", "migrations", "suspended_s",
	"image_transfer_start", "image_transfer_start_s", "image_transfer_end", "image_transfer_end_s"}

// cell is one field of a row: a JSON value and its CSV text.
type cell struct {
	json any
	text string
}

func secs(d time.Duration) float64 { return d.Seconds() }

func fmtSecs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// cells returns r's fields in LeaseColumns order.
func (r LeaseResult) cells() []cell {
	out := make([]cell, 0, len(LeaseColumns))
	str := func(s string) { out = append(out, cell{s, s}) }
	num := func(n int) { out = append(out, cell{n, strconv.Itoa(n)}) }
	when := func(d *time.Duration) {
		if d == nil {
			out = append(out, cell{nil, ""}, cell{nil, ""})
			return
		}
		t := at(*d).Format(time.RFC3339Nano)
		out = append(out, cell{t, t}, cell{secs(*d), fmtSecs(*d)})
	}
	str(r.ID)
	str(r.Kind)
	str(r.Project)
	num(r.Nodes)
	out = append(out, cell{r.CPUs, strconv.FormatFloat(r.CPUs, 'f', -1, 64)})
	when(&r.Submitted)
	when(r.RequestedStart)
	when(r.Deadline)
	out = append(out, cell{secs(r.Duration), fmtSecs(r.Duration)})
	when(r.Start)
	when(r.End)
	hosts := r.Hosts
	if hosts == nil {
		hosts = []string{} // [] in JSON, never null
	}
	out = append(out, cell{hosts, strings.Join(hosts, " ")})
	str(r.State)
	str(r.Reason)
	num(r.Suspensions)
	num(r.Resumes)
	num(r.Requeues)
	num(r.Migrations)
	out = append(out, cell{secs(r.Suspended), fmtSecs(r.Suspended)})
	when(r.ImageFrom)
	when(r.ImageTo)
	return out
}

// MarshalJSON writes the lease as one object whose keys are
// LeaseColumns, in that order (null for what does not apply).
func (r LeaseResult) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, c := range r.cells() {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(LeaseColumns[i])
		v, err := json.Marshal(c.json)
		if err != nil {
			return nil, fmt.Errorf("lease %s: %s: %w", r.ID, LeaseColumns[i], err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// WriteLeasesCSV writes a header of LeaseColumns and a row per lease
// (hosts separated by spaces, empty cells for what does not apply).
func WriteLeasesCSV(w io.Writer, leases []LeaseResult) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(LeaseColumns); err != nil {
		return err
	}
	row := make([]string, len(LeaseColumns))
	for _, r := range leases {
		for i, c := range r.cells() {
			row[i] = c.text
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteLeasesJSON writes the leases as a JSON array of LeaseResult
// objects, one per line.
func WriteLeasesJSON(w io.Writer, leases []LeaseResult) error {
	var b bytes.Buffer
	b.WriteString("[")
	for i, r := range leases {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		v, err := r.MarshalJSON()
		if err != nil {
			return err
		}
		b.Write(v)
	}
	b.WriteString("\n]\n")
	_, err := w.Write(b.Bytes())
	return err
}
