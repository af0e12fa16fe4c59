package fault

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// report collects what a check found and what it compared.
type report struct {
	fails []string
	known []string // findings the run was told to tolerate (VGRID_FAULT_ALLOW)
	n     map[string]int
}

func newReport() *report { return &report{n: map[string]int{}} }

func (r *report) failf(format string, args ...any) {
	r.fails = append(r.fails, fmt.Sprintf(format, args...))
}

// allowed names the known findings that VGRID_FAULT_ALLOW (a comma
// separated list) turns from failures into log lines.
var allowed = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(os.Getenv("VGRID_FAULT_ALLOW"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}()

// knownf is failf for a finding with a name that may be allowed.
func (r *report) knownf(name, format string, args ...any) {
	msg := fmt.Sprintf(format, args...) + " [" + name + "]"
	if allowed[name] {
		r.known = append(r.known, msg)
		return
	}
	r.fails = append(r.fails, msg)
}

// storeCheck is what checkStore needs besides the store.
type storeCheck struct {
	kill     int
	killedAt time.Time
	prev     *storeState // the store after the previous kill (nil for the first)
	ops      []*opRec    // the requests since the previous kill
	halfLife time.Duration
	tr       *tracker
}

// checkStore checks the store a killed server left.
func checkStore(st *storeState, c storeCheck) *report {
	r := newReport()
	checkObjects(st, c, r)
	checkConsistency(st, c.tr, r)
	checkUsage(st, c.halfLife, r)
	checkCapacity(st, r)
	checkKinds(st, c.tr, r)
	if c.prev != nil {
		checkUnchanged(c.prev, st, c.ops, r)
	}
	if !st.clock.IsZero() && st.clock.After(c.killedAt) {
		r.failf("the calendar's clock %s is after the kill at %s", fmtT(st.clock), fmtT(c.killedAt))
	}
	return r
}

// (a) Every acknowledged create left its workspace and lease; no refused
// one left anything; a create without an answer is decided now, once (the
// server is dead: nothing can still happen to it), and so is a delete
// without an answer. The last acknowledged stop, cancel, start or delete
// of a workspace is in effect.
func checkObjects(st *storeState, c storeCheck, r *report) {
	tr := c.tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, key := range tr.order {
		w := tr.ws[key]
		ws, present := st.ws[key]
		switch w.exists {
		case existUnknown:
			if present {
				w.exists = existYes
				r.n["unknown creates found"]++
			} else {
				w.exists = existNo
				r.n["unknown creates absent"]++
			}
		case existYes:
			r.n["acked workspaces present"]++
			if !present {
				r.failf("(a) workspace %s was acknowledged (%s) but is not in the store; last request on it: %s", key, w.create, w.last)
				continue
			}
		case existNo:
			r.n["refused workspaces absent"]++
			if present {
				r.failf("(a) workspace %s exists, but its create was refused (%s)", key, w.create)
				continue
			}
		case existMaybe:
			switch {
			case !present || ws.Desired == model.DesiredDeleted:
				w.exists = existGone
			default:
				w.exists = existYes
			}
			r.n["unknown deletes decided"]++
		}
		if w.exists == existGone {
			r.n["deleted workspaces gone"]++
			if present && ws.Desired != model.DesiredDeleted {
				r.failf("(a) workspace %s is desired %s after its acknowledged delete (%s)", key, ws.Desired, w.last)
			}
			if w.last != nil && w.last.kind == "delete" && w.last.out == acked {
				for id, rec := range st.leases {
					// A guest still up keeps its lease's room until its
					// host tears it down.
					if wsOfLease(id) == key && !rec.State.Over() &&
						!(present && id == ws.Status.Lease && guestUp(ws)) {
						r.failf("(a) lease %s is %s after the acknowledged delete of its workspace (%s)", id, rec.State, w.last)
					}
				}
			}
			continue
		}
		if w.exists == existNo {
			for id := range st.leases {
				if wsOfLease(id) == key {
					r.failf("(a) lease %s exists, but the create of %s was refused or failed (%s)", id, key, w.create)
				}
			}
			continue
		}
		if _, ok := st.leases[key]; !ok {
			r.failf("(a) workspace %s exists but its first lease %s is not stored", key, key)
		}
		// Acknowledged extensions stay: each of its leases runs for the
		// spec's duration plus them.
		if !w.extUnknown && w.dur > 0 {
			for id, rec := range st.leases {
				if wsOfLease(id) != key {
					continue
				}
				if want := w.dur + w.extended[id]; rec.Duration.D() != want {
					r.failf("(a) lease %s runs for %s, but its spec asked %s and acknowledged extensions %s", id, rec.Duration, w.dur, w.extended[id])
				}
				r.n["lease durations"]++
			}
		}
		// The last request on it, if acknowledged, is in effect.
		o := w.last
		if o == nil || o.out != acked {
			continue
		}
		cur := ws.Status.Lease
		rec, ok := st.leases[cur]
		switch o.kind {
		case "create", "start":
			if o.lease != "" && cur != o.lease {
				r.failf("(a) workspace %s: lease %s, but the acknowledged %s gave it lease %s", key, cur, o, o.lease)
			}
		case "stop", "cancel":
			if ws.Desired != model.DesiredStopped {
				r.failf("(a) workspace %s is desired %s after the acknowledged %s", key, ws.Desired, o)
			}
			// Its lease ends when its guest is gone: it may run on (or be
			// suspended or requeued by the calendar) while the guest stops.
			if ok && !rec.State.Over() && !guestUp(ws) {
				r.failf("(a) lease %s is %s after the acknowledged %s (workspace %s, %q, on %q, generation %d)",
					cur, rec.State, o, ws.Status.State, ws.Status.Reason, ws.Status.Node, ws.Status.Generation)
			}
		}
		r.n["acked changes in effect"]++
	}
	for key, ws := range st.ws {
		if tr.ws[key] == nil {
			r.failf("(a) workspace %s is in the store but was never created by the load", key)
		}
		if _, ok := st.leases[ws.Status.Lease]; !ok {
			r.failf("(a) workspace %s names lease %q, which is not stored", key, ws.Status.Lease)
		}
	}
}

// pendingRelease lists the workspaces whose stop is stored but whose
// current lease the calendar still counts as live: the stop was written
// and the server died before the calendar was told (stopWS writes the
// workspace, then releases the lease in a second transaction).
func pendingRelease(st *storeState) map[string]string {
	out := map[string]string{}
	for key, ws := range st.ws {
		rec, ok := st.leases[ws.Status.Lease]
		if !ok || rec.State.Over() || ws.Desired != model.DesiredStopped && ws.Desired != model.DesiredDeleted ||
			strings.HasPrefix(ws.Status.Reason, "requeued") || guestUp(ws) {
			continue
		}
		out[key] = fmt.Sprintf("workspace %s desired %s (%s, %q) while its lease %s is %s", key, ws.Desired, ws.Status.State, ws.Status.Reason, rec.ID, rec.State)
	}
	return out
}

// The calendar's decisions are stored with their effects on the workspaces
// in one transaction: a workspace and its current lease agree.
func checkConsistency(st *storeState, tr *tracker, r *report) {
	pend := pendingRelease(st)
	for _, key := range sortedKeys(pend) {
		last := "none"
		tr.mu.Lock()
		if w := tr.ws[key]; w != nil && w.last != nil {
			last = w.last.String()
		}
		tr.mu.Unlock()
		r.knownf("stop-release", "(consistency) %s: the stop or delete is stored but the calendar still holds the lease's slots "+
			"(the server died between writing the workspace and releasing its lease); last request on it: %s", pend[key], last)
	}
	for key, ws := range st.ws {
		rec, ok := st.leases[ws.Status.Lease]
		if !ok || pend[key] != "" {
			continue // reported above: the lease lives on without its workspace
		}
		r.n["workspace/lease pairs"]++
		switch {
		case rec.State.Over() && ws.Desired == model.DesiredRunning:
			// Found here once: a Failed report ended the lease but left the
			// workspace wanted running, and the agent started it again.
			r.failf("(consistency) workspace %s is desired running (%s) but its lease %s is %s", key, ws.Status.State, rec.ID, rec.State)
		case rec.State == model.LeaseSuspended && ws.Desired != model.DesiredSuspended &&
			!(guestUp(ws) && (ws.Desired == model.DesiredStopped || ws.Desired == model.DesiredDeleted)):
			// (A workspace stopped while its guest was up, whose lease the
			// calendar then preempted, is draining: its lease is withdrawn
			// when the agent reports the guest gone. Found once, seed
			// 245861590.)
			r.failf("(consistency) lease %s is suspended but workspace %s is desired %s", rec.ID, key, ws.Desired)
		case rec.State == model.LeaseRunning && rec.Hold != nil && ws.Desired == model.DesiredRunning &&
			(len(rec.Hold.Hosts) == 0 || ws.Status.Node != rec.Hold.Hosts[0]):
			r.failf("(consistency) lease %s runs on %v but workspace %s is on %q", rec.ID, rec.Hold.Hosts, key, ws.Status.Node)
		}
	}
}

// (c) Fair-share usage is the lease history: a project's decayed usage at
// its time At is what its leases' holds [stage or start, end) accrue,
// decayed with the policy's half-life; its charged core-seconds are the
// sum of its leases'.
func checkUsage(st *storeState, halfLife time.Duration, r *report) {
	byProject := map[string][]model.LeaseRecord{}
	for _, rec := range st.leases {
		byProject[rec.Project] = append(byProject[rec.Project], rec)
	}
	names := map[string]bool{}
	for p := range byProject {
		names[p] = true
	}
	for p := range st.usage {
		names[p] = true
	}
	for p := range names {
		u := st.usage[p]
		var charged float64
		for _, rec := range byProject[p] {
			charged += rec.ChargedCoreSeconds
		}
		if !near(u.ChargedCoreSeconds, charged) {
			r.failf("(c) project %s: charged %.6f core-seconds, its leases' charges sum to %.6f", p, u.ChargedCoreSeconds, charged)
		}
		want := 0.0
		if !u.At.IsZero() {
			want = decayedUsage(byProject[p], u.At, halfLife)
		}
		if !near(u.DecayedCoreSeconds, want) {
			r.failf("(c) project %s: fair-share usage %.6f core-seconds at %s, its leases' runs give %.6f", p, u.DecayedCoreSeconds, fmtT(u.At), want)
		}
		r.n["projects' usage"]++
	}
}

// decayedUsage integrates the cores each hold used over [OverheadFrom, To)
// up to at, each instant weighted by 2^-(at-t)/halfLife.
func decayedUsage(recs []model.LeaseRecord, at time.Time, halfLife time.Duration) float64 {
	hl := halfLife.Seconds()
	sum := 0.0
	for _, rec := range recs {
		var milli int64
		for _, m := range rec.Members {
			milli += m.Resources.MilliCPU
		}
		cores := float64(milli) / 1000
		for _, s := range heldSpans(rec.Segments) {
			b, e := s.OverheadFrom, s.To
			if e.After(at) {
				e = at
			}
			if !e.After(b) {
				continue
			}
			if hl <= 0 {
				sum += cores * e.Sub(b).Seconds()
				continue
			}
			sum += cores * hl / math.Ln2 * (math.Exp2(-at.Sub(e).Seconds()/hl) - math.Exp2(-at.Sub(b).Seconds()/hl))
		}
	}
	return sum
}

// heldSpans are the spans [OverheadFrom, To) in which a lease of one
// member held slots somewhere, its segments' overlaps merged: while it
// moves, it holds slots at both ends but runs, and is charged, once.
func heldSpans(segs []model.LeaseSegment) []model.LeaseSegment {
	segs = slices.Clone(segs)
	sort.Slice(segs, func(i, j int) bool { return segs[i].OverheadFrom.Before(segs[j].OverheadFrom) })
	var out []model.LeaseSegment
	for _, s := range segs {
		if n := len(out); n > 0 && !s.OverheadFrom.After(out[n-1].To) {
			if s.To.After(out[n-1].To) {
				out[n-1].To = s.To
			}
			continue
		}
		out = append(out, model.LeaseSegment{OverheadFrom: s.OverheadFrom, To: s.To})
	}
	return out
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// moved reports whether the last of a lease's segments began with a move:
// the segment before it, on another host, held slots until at least its
// start (a move holds both ends).
func moved(segs []model.LeaseSegment) bool {
	n := len(segs)
	return n >= 2 && segs[n-2].Host != segs[n-1].Host && segs[n-1].Continued && !segs[n-2].To.Before(segs[n-1].From)
}

// split reports whether the last of a lease's segments goes on from the
// one before it on the same host, which ends where it begins: the hold
// changed shape then (a move decided, whose source holds its slots less
// long), so its chart segment was cut there and a new one begun.
func split(segs []model.LeaseSegment) bool {
	n := len(segs)
	return n >= 2 && segs[n-2].Host == segs[n-1].Host && segs[n-1].Continued && segs[n-2].To.Equal(segs[n-1].From)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// (d) At no instant does the calendar book a host beyond its capacity: the
// holds of every lease (past ones are its chart segments, the current one
// its last) summed per host over time stay within the node's capacity.
// The current hold is the last segment.
func checkCapacity(st *storeState, r *report) {
	type step struct {
		t  time.Time
		d  model.Resources
		up bool
		id string
	}
	perHost := map[string][]step{}
	for id, rec := range st.leases {
		if len(rec.Members) != 1 {
			r.failf("(d) lease %s has %d members; the server makes one per workspace", id, len(rec.Members))
			continue
		}
		res := rec.Members[0].Resources
		for _, s := range rec.Segments {
			if !s.To.After(s.From) {
				continue
			}
			perHost[s.Host] = append(perHost[s.Host], step{s.From, res, true, id}, step{s.To, res, false, id})
			r.n["segments"]++
		}
		if h := rec.Hold; h != nil && !rec.State.Over() {
			n := len(rec.Segments)
			if n == 0 {
				r.failf("(d) lease %s holds %v [%s, %s) but has no chart segment", id, h.Hosts, fmtT(h.From), fmtT(h.To))
				continue
			}
			s := rec.Segments[n-1]
			if len(h.Moves) > 0 {
				// Moving: the move's segments come last, the source's
				// before the destination's; the hold is the source's.
				for i := n - 1; i >= 0; i-- {
					if len(h.Hosts) > 0 && rec.Segments[i].Host == h.Hosts[0] {
						s, n = rec.Segments[i], i+1
						break
					}
				}
			}
			from, runFrom := h.From, h.Start
			if moved(rec.Segments[:n]) {
				// It came from another host: its segment here begins
				// with the move, and it ran here from the move's end.
				from, runFrom = s.From, s.RunFrom
				if s.From.Before(h.From) || s.RunFrom.Before(s.From) {
					r.failf("(d) lease %s: moved into a segment %s [%s, %s) run from %s, outside its hold from %s",
						id, s.Host, fmtT(s.From), fmtT(s.To), fmtT(s.RunFrom), fmtT(h.From))
				}
			} else if split(rec.Segments[:n]) {
				// Its hold changed shape here at the segment's start (a
				// migration decided then: the source holds its slots
				// only until the move ends); the segment goes on from
				// the one before it on the same host, and its run from
				// the later of the run's start and the change.
				from, runFrom = s.From, later(h.Start, s.From)
				if s.From.Before(h.From) {
					r.failf("(d) lease %s: its segment on %s goes on from %s, before its hold from %s", id, s.Host, fmtT(s.From), fmtT(h.From))
				}
			}
			if h.Start.After(h.RunEnd) {
				// Displaced before its run began: the hold was cut short
				// (to its requeue) but its run's start was left after it.
				r.knownf("requeue-hold", "(d) lease %s (%s): its hold [%s, %s) says its run begins at %s, after it ends at %s (fate %q, %s); GET /leases shows it so",
					id, rec.State, fmtT(h.From), fmtT(h.To), fmtT(h.Start), fmtT(h.RunEnd), h.Fate, h.Cause)
				runFrom = h.RunEnd // the chart segment is clamped
			}
			to, runTo := h.To, h.RunEnd
			if len(h.Moves) > 0 {
				// The source holds the slots until the move ends.
				to, runTo = s.To, h.RunEnd
				if s.To.Before(runTo) {
					runTo = s.To
				}
			}
			if len(h.Hosts) != 1 || s.Host != h.Hosts[0] || !s.From.Equal(from) || !s.To.Equal(to) || !s.RunFrom.Equal(runFrom) || !s.RunTo.Equal(runTo) {
				r.failf("(d) lease %s: hold on %v [%s, %s) run [%s, %s), but its last segment is on %s [%s, %s) run [%s, %s)",
					id, h.Hosts, fmtT(h.From), fmtT(h.To), fmtT(h.Start), fmtT(h.RunEnd), s.Host, fmtT(s.From), fmtT(s.To), fmtT(s.RunFrom), fmtT(s.RunTo))
			}
		}
	}
	for host, steps := range perHost {
		n, ok := st.nodes[host]
		if !ok {
			r.failf("(d) leases are booked on host %s, which is not a registered node", host)
			continue
		}
		sort.Slice(steps, func(i, j int) bool {
			if !steps[i].t.Equal(steps[j].t) {
				return steps[i].t.Before(steps[j].t)
			}
			return !steps[i].up && steps[j].up // slots are given back before they are taken
		})
		var used model.Resources
		holders := map[string]bool{}
		for _, s := range steps {
			if s.up {
				used = used.Add(s.d)
				holders[s.id] = true
			} else {
				used = used.Sub(s.d)
				delete(holders, s.id)
			}
			if s.up && !n.Capacity.Fits(used) {
				r.failf("(d) host %s is booked beyond its capacity at %s: %d mCPU, %s memory, %s disk of %d mCPU, %s, %s, by %v",
					host, fmtT(s.t), used.MilliCPU, used.Memory.Human(), used.Disk.Human(), n.Capacity.MilliCPU, n.Capacity.Memory.Human(), n.Capacity.Disk.Human(), sorted(holders))
				break
			}
		}
		r.n["hosts"]++
	}
}

// (e) A lease is owed no more run time than it asked, and its hold is in
// order. Reservations run exactly in their window: the stored start is the
// requested one, the hold starts there and the run began there; they are
// never preempted. Also: deadline leases end by their deadline, immediate
// leases hold their slots from their admission, best-effort leases that
// are not preemptible are never suspended or requeued.
func checkKinds(st *storeState, tr *tracker, r *report) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ended := map[string]bool{} // workspaces someone asked to stop, cancel or delete
	for _, o := range tr.ops {
		if o.kind == "stop" || o.kind == "cancel" || o.kind == "delete" {
			ended[o.ws] = true
		}
	}
	for id, rec := range st.leases {
		// A lease that nobody ended ran its whole (extended) duration: the
		// fake guests never stop by themselves.
		if rec.State == model.LeaseDone && rec.Requeues == 0 && !ended[wsOfLease(id)] {
			var ran time.Duration
			for _, s := range rec.Segments {
				ran += max(s.RunTo.Sub(s.RunFrom), 0)
			}
			if ran != rec.Duration.D() {
				var segs []string
				for _, s := range rec.Segments {
					segs = append(segs, fmt.Sprintf("%s [%s, %s) run [%s, %s)", s.Host, fmtT(s.From), fmtT(s.To), fmtT(s.RunFrom), fmtT(s.RunTo)))
				}
				r.failf("(e) lease %s is done after running %s of its %s, and no one stopped it (reason %q, %d suspensions; segments %s)", id, ran, rec.Duration, rec.Reason, rec.Suspensions, strings.Join(segs, ", "))
			}
			r.n["done leases ran their time"]++
		}
		if rec.Remaining < 0 || rec.Remaining > rec.Duration {
			r.failf("(e) lease %s (%s) is owed %s of a %s run", id, rec.State, rec.Remaining, rec.Duration)
		}
		if h := rec.Hold; h != nil && (h.To.Before(h.From) || h.RunEnd.After(h.To)) {
			r.failf("(e) lease %s: hold [%s, %s) with run until %s", id, fmtT(h.From), fmtT(h.To), fmtT(h.RunEnd))
		}
		switch rec.Kind {
		case model.LeaseReservation:
			r.n["reservations"]++
			if w := tr.ws[id]; w != nil && !w.start.IsZero() && !rec.Start.Equal(w.start) {
				r.failf("(e) reservation %s: stored start %s, requested %s", id, fmtT(rec.Start), fmtT(w.start))
			}
			if h := rec.Hold; h != nil && !h.Start.Equal(rec.Start) {
				r.failf("(e) reservation %s: held from %s (run %s), requested start %s", id, fmtT(h.From), fmtT(h.Start), fmtT(rec.Start))
			}
			if len(rec.Segments) > 1 {
				r.failf("(e) reservation %s ran in %d pieces", id, len(rec.Segments))
			}
			if n := len(rec.Segments); n > 0 {
				s := rec.Segments[0]
				if s.RunTo.After(s.RunFrom) && !s.RunFrom.Equal(rec.Start) {
					r.failf("(e) reservation %s started at %s, requested %s", id, fmtT(s.RunFrom), fmtT(rec.Start))
				} else if s.RunTo.After(s.RunFrom) {
					r.n["reservations started on time"]++
				}
			}
			if rec.Suspensions != 0 || rec.Requeues != 0 {
				r.failf("(e) reservation %s was preempted (%d suspensions, %d requeues)", id, rec.Suspensions, rec.Requeues)
			}
		case model.LeaseDeadline:
			for _, s := range rec.Segments {
				if s.RunTo.After(rec.Deadline) {
					r.failf("(e) deadline lease %s runs until %s, past its deadline %s", id, fmtT(s.RunTo), fmtT(rec.Deadline))
				}
			}
			if w := tr.ws[id]; w != nil && !w.deadline.IsZero() && !rec.Deadline.Equal(w.deadline) {
				r.failf("(e) deadline lease %s: stored deadline %s, requested %s", id, fmtT(rec.Deadline), fmtT(w.deadline))
			}
		case model.LeaseImmediate:
			// Its slots begin when it is admitted (its run may begin after
			// staging and booting).
			if len(rec.Segments) > 0 && !rec.Segments[0].From.Equal(rec.Arrival) {
				r.failf("(e) immediate lease %s admitted at %s is held from %s", id, fmtT(rec.Arrival), fmtT(rec.Segments[0].From))
			}
		case model.LeaseBestEffort:
			if rec.Preempt == "never" && (rec.Suspensions != 0 || rec.Requeues != 0) {
				r.failf("(e) non-preemptible lease %s was preempted (%d suspensions, %d requeues)", id, rec.Suspensions, rec.Requeues)
			}
		}
	}
}

// checkUnchanged compares the records of two consecutive kills: a lease
// that nothing can have changed in between (no request on its workspace,
// no event of its own between the two clocks, and, for one that waits for
// capacity, nothing at all) is stored byte for byte as before, though a
// restarted server restored it in between; one stored before is never
// gone.
func checkUnchanged(prev, cur *storeState, ops []*opRec, r *report) {
	touched := map[string]bool{}
	displacing := false
	for _, o := range ops {
		touched[o.ws] = true
		if o.kind == "create" && (o.leaseKind == "reservation" || o.leaseKind == "deadline") {
			displacing = true
		}
	}
	pend := pendingRelease(prev)
	draining := drainingLeases(prev)
	quiet := len(ops) == 0 && len(pend) == 0 && len(draining) == 0
	for _, rec := range prev.leases {
		if eventIn(rec, prev.clock, cur.clock) {
			quiet = false
		}
	}
	if cur.clock.Before(prev.clock) {
		r.failf("(b) the calendar's clock went back from %s to %s", fmtT(prev.clock), fmtT(cur.clock))
	}
	for _, id := range sortedKeys(prev.leaseRaw) {
		rec := prev.leases[id]
		raw, ok := cur.leaseRaw[id]
		if !ok {
			r.failf("(b) lease %s was stored before and is gone", id)
			continue
		}
		ws := wsOfLease(id)
		switch {
		case touched[ws], pend[ws] != "", draining[id]:
			r.n["records skipped (requests)"]++
			continue
		case eventIn(rec, prev.clock, cur.clock):
			r.n["records skipped (own events)"]++
			continue
		case displacing && (rec.Kind == model.LeaseBestEffort || rec.Kind == model.LeaseDeadline) && rec.Hold != nil:
			// Best effort may be displaced; a deadline lease moved (not
			// begun) or suspended with its resume booked (running), its
			// deadline still met (calendar shift.go, booked.go).
			r.n["records skipped (may be displaced)"]++
			continue
		case waiting(rec) && !quiet:
			r.n["records skipped (waiting)"]++
			continue
		}
		r.n["records unchanged"]++
		if !bytes.Equal(prev.leaseRaw[id], raw) {
			r.failf("(b) lease %s changed though nothing could change it (clock %s -> %s): %s", id, fmtT(prev.clock), fmtT(cur.clock), recordDiff(prev.leaseRaw[id], raw))
		}
	}
	for p, u := range prev.usage {
		c, ok := cur.usage[p]
		if !ok {
			r.failf("(c) project %s's usage was stored before and is gone", p)
			continue
		}
		if c.At.Before(u.At) {
			r.failf("(c) project %s's usage went back in time: %s -> %s", p, fmtT(u.At), fmtT(c.At))
		}
		if quiet {
			r.n["usage unchanged"]++
			if !bytes.Equal(prev.usageRaw[p], cur.usageRaw[p]) {
				r.failf("(c) project %s's usage changed though nothing happened: %s -> %s", p, prev.usageRaw[p], cur.usageRaw[p])
			}
		}
	}
}

// apiCheck is what checkAPI needs.
type apiCheck struct {
	st               *storeState // the store the killed server left
	pre              map[string]api.Lease
	preFrom, preTo   time.Time // GET /leases before the kill: sent, answered
	post             map[string]api.Lease
	postFrom, postTo time.Time
	usageFrom        time.Time // when GET /usage was sent
	usageTo          time.Time // when GET /usage answered
	halfLife         time.Duration
	wsPost           map[string]model.Workspace  // GET /workspaces after the restart
	usagePost        map[string]api.ProjectUsage // GET /usage?all after the restart
	tr               *tracker
}

// checkAPI compares what the restarted server answers with what the
// killed one left (and, with it, with what it answered just before the
// kill).
func checkAPI(c apiCheck) *report {
	r := newReport()
	st := c.st
	// (a) through the API.
	c.tr.mu.Lock()
	for _, key := range c.tr.order {
		w := c.tr.ws[key]
		_, present := c.wsPost[key]
		switch {
		case w.exists == existYes && !present:
			r.failf("(a) workspace %s (%s) is not listed after the restart", key, w.create)
		case w.exists == existNo && present:
			r.failf("(a) workspace %s is listed after the restart, but its create was refused or failed (%s)", key, w.create)
		case w.exists == existGone && present && c.wsPost[key].Desired != model.DesiredDeleted:
			r.failf("(a) workspace %s is listed as desired %s after the restart, but it was deleted (%s)", key, c.wsPost[key].Desired, w.last)
		}
	}
	c.tr.mu.Unlock()
	for key, ws := range c.wsPost {
		if _, ok := c.post[ws.Status.Lease]; !ok {
			r.failf("(a) workspace %s names lease %q, which GET /leases does not list", key, ws.Status.Lease)
		}
		r.n["workspaces listed"]++
	}
	// (b) the views.
	pend := pendingRelease(st)
	draining := drainingLeases(st)
	moved := len(pend) > 0 || len(draining) > 0 // something may be released after the restart
	for _, rec := range st.leases {
		// Until the usage was read: an event after the lease listing
		// still moves it.
		if eventIn(rec, st.clock, c.postTo) || c.usageTo.After(c.postTo) && eventIn(rec, st.clock, c.usageTo) {
			moved = true
		}
	}
	// (c) through the API: the fair-share usage is the stored one (unless
	// a lease began or ended since the kill), every stored lease counts.
	leasesOf := map[string]int{}
	for _, rec := range st.leases {
		leasesOf[rec.Project]++
	}
	for p, n := range leasesOf {
		u, ok := c.usagePost[p]
		if !ok {
			r.failf("(c) GET /usage has no project %s, which has %d stored leases", p, n)
			continue
		}
		if u.Leases != n {
			r.failf("(c) GET /usage counts %d leases of project %s, the store has %d", u.Leases, p, n)
		}
		if !moved {
			// The API gives the usage as of its answer: the stored usage
			// carried on by the leases that run, somewhere between the
			// request and the answer.
			r.n["usage = store"]++
			var recs []model.LeaseRecord
			for _, rec := range st.leases {
				if rec.Project == p {
					recs = append(recs, rec)
				}
			}
			lo, hi := decayedUsage(recs, c.usageFrom, c.halfLife)/3600, decayedUsage(recs, c.usageTo, c.halfLife)/3600
			if lo > hi {
				lo, hi = hi, lo
			}
			if got := u.FairShareCoreHours; !(near(got, lo) || near(got, hi) || got > lo && got < hi) {
				r.failf("(c) GET /usage gives project %s %.9f fair-share core-hours after the restart; from the killed server's records %.9f .. %.9f", p, got, lo, hi)
			}
		}
	}
	for id := range c.post {
		if _, ok := st.leases[id]; !ok {
			r.failf("(b) lease %s is listed after the restart but was not in the store the killed server left", id)
		}
	}
	for id := range c.pre {
		if _, ok := st.leases[id]; !ok {
			r.failf("(b) lease %s was listed before the kill but is not in the store the killed server left", id)
		}
	}
	for _, id := range sortedKeys(st.leases) {
		rec := st.leases[id]
		got, ok := c.post[id]
		if !ok {
			r.failf("(b) lease %s is stored but not listed after the restart", id)
			continue
		}
		stable := !eventIn(rec, st.clock, c.postTo) && pend[wsOfLease(id)] == "" && !(waiting(rec) && moved) && !draining[id]
		if !stable {
			r.n["views skipped (due in the downtime)"]++
		} else {
			r.n["views compared with the store"]++
			lo, hi := remainingRange(rec, c.postFrom, c.postTo)
			if d := viewDiff(got, recordView(rec, c.postTo), lo, hi); len(d) > 0 {
				r.failf("(b) lease %s after the restart differs from the record the killed server left: %s", id, strings.Join(d, ", "))
			}
		}
		before, ok := c.pre[id]
		if !ok {
			continue
		}
		lo, hi := remainingRange(rec, c.preFrom, c.preTo)
		if len(viewDiff(before, recordView(rec, c.preTo), lo, hi)) > 0 {
			r.n["views changed before the kill"]++ // a request or event between the GET and the kill
			continue
		}
		if !stable {
			continue
		}
		// The same lease before the kill and after the restart; a running
		// one has run on meanwhile, within its run [Start, RunEnd) (a
		// suspending one no longer runs).
		r.n["views compared before/after"]++
		want := before
		rlo, rhi := before.Remaining.D(), before.Remaining.D()
		if h := rec.Hold; h != nil && h.Started && rec.State == model.LeaseRunning {
			in := func(t time.Time) time.Time { // t within the run
				if t.After(h.RunEnd) {
					t = h.RunEnd
				}
				if t.Before(h.Start) {
					t = h.Start
				}
				return t
			}
			ranMax := in(c.postTo).Sub(in(c.preFrom))
			ranMin := max(in(c.postFrom).Sub(in(c.preTo)), 0)
			rlo = max(before.Remaining.D()-ranMax-time.Second, 0)
			rhi = max(before.Remaining.D()-ranMin+time.Second, 0)
		}
		if d := viewDiff(got, want, rlo, rhi); len(d) > 0 {
			r.failf("(b) lease %s after the restart differs from its view just before the kill: %s", id, strings.Join(d, ", "))
		}
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sorted returns a map's values (string) or keys (bool) in order.
func sorted[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if s, ok := any(v).(string); ok {
			out = append(out, s)
		} else {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// guestUp: the agent reported a guest process up (the control plane's
// rule, internal/control/guard.go).
func guestUp(ws model.Workspace) bool {
	switch ws.Status.State {
	case model.StateStarting, model.StateRunning, model.StateStopping:
		return ws.Status.Node != ""
	}
	return false
}

// drainingLeases are the live leases whose workspace was stopped or
// deleted while its guest was up: the lease ends when the agent reports
// the guest gone, which an agent may do at any moment, so its end is not
// the store's.
func drainingLeases(st *storeState) map[string]bool {
	out := map[string]bool{}
	for _, ws := range st.ws {
		rec, ok := st.leases[ws.Status.Lease]
		if ok && !rec.State.Over() && guestUp(ws) &&
			(ws.Desired == model.DesiredStopped || ws.Desired == model.DesiredDeleted) {
			out[rec.ID] = true
		}
	}
	return out
}
