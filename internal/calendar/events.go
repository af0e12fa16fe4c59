package calendar

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// evKind is an internal event; the order is the order at one instant:
// slots are given back before they are taken.
type evKind uint8

const (
	evEnd  evKind = iota
	evStop        // a run ends: its guests shut down until the hold's end (evEnd)
	evRequeue
	evSuspend
	evRelease  // a suspension finished: the slots are free
	evHandover // a migration's source slots go to the lease they were promised to
	evArrive   // a best-effort lease may start
	evHold     // a hold's slots begin, before any of its other events
	evStage
	evMigrate // a migration the calendar decided begins
	evResume
	evStart
)

type event struct {
	at   int64
	kind evKind
	seq  uint64
	l    *lease
	gen  uint64
}

type evHeap []event

func (h evHeap) less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	// By lease, not by insertion, so that a restored calendar does the
	// same things in the same order as the one it was saved from.
	if a.l.ID != b.l.ID {
		return a.l.ID < b.l.ID
	}
	return a.seq < b.seq
}

func (h *evHeap) push(e event) {
	*h = append(*h, e)
	q := *h
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *evHeap) pop() event {
	q := *h
	e := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = event{}
	q = q[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return e
}

func (c *Calendar) push(at int64, k evKind, l *lease) {
	c.seq++
	c.events.push(event{at: at, kind: k, seq: c.seq, l: l, gen: l.gen})
}

// peek returns the next live event, dropping stale ones.
func (c *Calendar) peek() (event, bool) {
	for len(c.events) > 0 {
		e := c.events[0]
		if e.kind == evArrive || e.gen == e.l.gen {
			return e, true
		}
		c.events.pop()
	}
	return event{}, false
}

// schedule (re)plans the events of l's current hold; earlier plans go stale.
func (c *Calendar) schedule(l *lease) {
	c.mark(l)
	l.gen++
	// A hold cut before its run began has no run left: nothing starts.
	run := l.runTo > l.T
	var begins [2]int64 // when its stage, start or resume come (0: none)
	if !l.resume {
		// Staging [T-pre, T-boot), booting [T-boot, T): the guests are
		// ready when the run starts. (Staging ahead, the stage comes
		// before the hold's slots begin, at T-boot.)
		if l.pre > l.boot && !l.staged && run {
			c.push(l.T-l.pre, evStage, l)
			begins[0] = l.T - l.pre
		}
		if !l.started && run {
			c.push(l.T-l.boot, evStart, l)
			begins[1] = l.T - l.boot
		}
	} else if !l.started && run {
		c.push(l.T-l.pre, evResume, l)
		begins[0] = l.T - l.pre
	}
	if l.holdFrom > c.now && l.holdFrom < l.to && l.holdFrom != begins[0] && l.holdFrom != begins[1] {
		// Slots that begin when nothing else happens to it (an image
		// that came over the link before its guests boot): the hosts'
		// free capacity now changes then.
		c.push(l.holdFrom, evHold, l)
	}
	for _, mv := range l.moves {
		if mv.auto {
			if !mv.sent {
				c.push(mv.start, evMigrate, l)
			}
			c.push(mv.srcTo, evHandover, l)
		}
	}
	switch l.fate {
	case fateSuspend:
		if !l.suspendSent {
			c.push(l.runTo, evSuspend, l)
		}
		c.push(l.to, evRelease, l)
	case fateRequeue:
		c.push(l.to, evRequeue, l)
	default:
		if l.to > l.runTo && !l.stopped {
			// The guests are stopped at the run's end and shut down
			// until the hold's end (shutdown.go).
			c.push(l.runTo, evStop, l)
		}
		c.push(l.to, evEnd, l)
	}
}

// Advance carries the calendar to now and returns everything due at or
// before now, in time order. Calls must come with non-decreasing now (an
// earlier now is taken as the clock).
func (c *Calendar) Advance(now time.Time) []Action {
	c.advance(c.clamp(now))
	return c.take()
}

func (c *Calendar) advance(t int64) {
	for {
		if e, ok := c.peek(); ok && e.at <= t {
			at := max(e.at, c.now)
			c.now = at
			for {
				e, ok := c.peek()
				if !ok || max(e.at, c.now) != at {
					break
				}
				c.events.pop()
				c.handle(e, at)
			}
			if c.needPass {
				c.pass(at)
			}
			continue
		}
		c.now = max(c.now, t)
		if c.needPass {
			c.pass(c.now)
			continue
		}
		return
	}
}

func (c *Calendar) take() []Action {
	out := c.actions
	c.actions = nil
	return out
}

func (c *Calendar) emit(at int64, k ActionKind, l *lease, reason string) {
	a := Action{At: tm(at), Kind: k, Lease: l.ID, Reason: reason}
	if k == ActStage {
		a.Hosts = distinct(l.hosts)
	} else {
		a.Hosts = names(l.hosts)
	}
	c.actions = append(c.actions, a)
}

func distinct(hs []*host) []string {
	seen := map[*host]bool{}
	var out []string
	for _, h := range hs {
		if !seen[h] {
			seen[h] = true
			out = append(out, h.Name)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Calendar) handle(e event, at int64) {
	l := e.l
	if e.kind != evArrive && e.kind != evHold {
		c.mark(l)
	}
	// (The hold's hosts, before the event may forget them; into a
	// scratch buffer, handle does not recurse.)
	touched := c.touchBuf[:0]
	for _, a := range l.allocs {
		touched = append(touched, a.h)
	}
	defer func() { c.touchBuf = touched[:0] }()
	switch e.kind {
	case evArrive:
		c.needPass = true
		return
	case evHold:
		// The touches below bring the hosts' free capacity to now.
	case evStage:
		l.staged = true
		if at >= l.holdFrom {
			// Staging within the hold counts as running for fair
			// share; staging ahead of it holds nothing yet.
			c.begin(l, at)
		}
		c.emit(at, ActStage, l, "")
	case evStart:
		l.started = true
		c.begin(l, at)
		l.st = StateRunning
		c.emit(at, ActStart, l, "")
	case evResume:
		l.started = true
		c.begin(l, at)
		l.st = StateRunning
		c.emit(at, ActResume, l, "")
	case evSuspend:
		l.suspendSent = true
		c.emit(at, ActSuspend, l, l.cause)
	case evMigrate:
		c.emitMigrations(l, at)
	case evHandover:
		// The touches below refresh the source's free-now entry.
	case evRelease:
		c.endHold(l, at)
		l.remaining -= l.runTo - l.T
		l.savedOn = l.hosts
		l.preVer = 0
		l.suspensions++
		l.st = StateSuspended
		l.reason = l.cause
		nx := l.next
		l.next = nil // not dropped with the hold
		c.unhold(l)
		if nx != nil {
			// A deadline lease resumes where its resume was booked.
			l.next = nx
			c.takeBooked(l)
		} else {
			c.enqueue(l)
		}
	case evRequeue:
		c.requeue(l, at)
	case evStop:
		l.stopped = true
		c.emit(at, ActEnd, l, l.cause)
	case evEnd:
		if !l.stopped {
			c.emit(at, ActEnd, l, l.cause)
		}
		c.endHold(l, at)
		l.remaining = 0
		if l.st != StateCancelled {
			l.st = StateDone
		}
		c.unholdKeep(l)
	}
	for _, h := range touched {
		c.touch(h)
		if e.kind == evRelease || e.kind == evRequeue || e.kind == evEnd || e.kind == evHandover {
			c.released(h)
		}
	}
	if e.kind == evRelease || e.kind == evRequeue || e.kind == evEnd || e.kind == evHandover {
		c.needPass = true
	}
}

// requeue stops l's hold at at, for l.cause, and puts l back in the
// queue: it starts again from scratch.
func (c *Calendar) requeue(l *lease, at int64) {
	c.emit(at, ActRequeue, l, l.cause)
	c.endHold(l, at)
	if l.started {
		l.requeues++
	}
	l.remaining = l.run
	l.usedAdj = 0
	l.savedOn = nil
	l.preVer = 0
	l.st = StateQueued
	l.reason = l.cause
	c.unhold(l)
	c.enqueue(l)
}

// unholdKeep ends a hold but keeps the placement for views.
func (c *Calendar) unholdKeep(l *lease) {
	hosts := l.hosts
	c.unhold(l)
	l.hosts = hosts
}

// begin counts l in its project's running cores (fair share usage).
func (c *Calendar) begin(l *lease, t int64) {
	if l.holding {
		return
	}
	p := c.project(l.Project)
	c.accrue(p, t)
	p.runMilli += l.total[dCPU]
	l.holding = true
}

func (c *Calendar) endHold(l *lease, t int64) {
	if !l.holding {
		return
	}
	p := c.project(l.Project)
	c.accrue(p, t)
	p.runMilli -= l.total[dCPU]
	l.holding = false
}

// accrue brings a project's decayed usage up to t.
func (c *Calendar) accrue(p *project, t int64) {
	if t <= p.at {
		return
	}
	c.markProject(p)
	p.usage = c.usageAt(p, t)
	p.at = t
}

// usageAt is a project's decayed usage at t (not before its last
// accrual), computed without changing it: reading the fair share in a
// pass leaves the project's record as it was, so only what changes what
// it runs (or is charged) is written.
func (c *Calendar) usageAt(p *project, t int64) float64 {
	if t <= p.at {
		return p.usage
	}
	dt := float64(t-p.at) / 1e9
	cores := float64(p.runMilli) / 1000
	if c.pol.FairShare != nil && c.pol.FairShare.Basis == BasisUsed {
		cores = 0 // usage comes from AddUsage
	}
	hl := 0.0
	if c.pol.FairShare != nil {
		hl = c.pol.FairShare.HalfLife.Seconds()
	}
	if hl <= 0 {
		return p.usage + cores*dt
	}
	f := math.Exp2(-dt / hl)
	return p.usage*f + cores*hl/math.Ln2*(1-f)
}

// Finish records that a lease ended before its time (its workspaces
// stopped by themselves): its slots are freed from now, or under
// Policy.ShutdownTime once the guests have shut down (the lease is done
// then; no end action comes). It advances the calendar to now and
// returns what is due, including starts the freed slots allow. A lease
// whose run is over and that is shutting down is an error wrapping
// ErrInvalid, as is one that is not running.
func (c *Calendar) Finish(id string, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l := c.leases[id]
	switch {
	case l == nil:
		return c.take(), fmt.Errorf("finish lease %s: %w", id, ErrNotFound)
	case !l.held || !l.started:
		return c.take(), fmt.Errorf("finish lease %s: it is %s, not running: %w", id, l.st, ErrInvalid)
	case l.stopped:
		return c.take(), fmt.Errorf("finish lease %s: its run ended at %s: it is shutting down, not running: %w", id, fmtT(tm(l.runTo)), ErrInvalid)
	}
	c.mark(l)
	c.refund(l, t)
	if c.shutdown() > 0 {
		// The guests shut down from now; the hold ends after that
		// (evEnd), with no end action: they stopped by themselves.
		c.stopNow(l, t, "")
		c.advance(t)
		return c.take(), nil
	}
	c.cut(l, t)
	c.endHold(l, t)
	l.remaining = 0
	l.st = StateDone
	c.unholdKeep(l)
	c.advance(t)
	return c.take(), nil
}

// Cancel withdraws a lease: a waiting one leaves the queue, one with slots
// gives them back (and is ended if it began). A started one's guests shut
// down from now under Policy.ShutdownTime: its slots are given back after
// that, and one already shutting down is an error wrapping ErrFinished.
// It advances the calendar to now and returns what is due.
func (c *Calendar) Cancel(id string, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	l := c.leases[id]
	switch {
	case l == nil:
		return c.take(), fmt.Errorf("cancel lease %s: %w", id, ErrNotFound)
	case l.st == StateDone || l.st == StateCancelled || l.st == StateRefused || l.st == StateFailed:
		return c.take(), fmt.Errorf("cancel lease %s: it is %s: %w", id, l.st, ErrFinished)
	case l.shuttingDown():
		return c.take(), fmt.Errorf("cancel lease %s: its run ended at %s and it is shutting down: %w", id, fmtT(tm(l.runTo)), ErrFinished)
	}
	c.mark(l)
	c.refund(l, t)
	if l.queued {
		c.dequeue(l)
	}
	if l.held && l.started && c.shutdown() > 0 {
		// Its guests are stopped now and shut down: the hold ends
		// after that (evEnd), the lease cancelled.
		c.stopNow(l, t, "cancelled")
		c.emit(t, ActEnd, l, "cancelled")
	} else if l.held {
		begun := l.staged || l.started || l.holdFrom < t
		c.cut(l, t)
		if begun {
			c.emit(t, ActEnd, l, "cancelled")
		}
		c.endHold(l, t)
		c.unholdKeep(l)
	}
	l.planned = false
	l.st = StateCancelled
	c.needPass = true
	c.advance(t)
	return c.take(), nil
}

// AddUsage adds CPU time a project's workspaces were measured to use
// (core-seconds) to its fair-share usage at now; it counts only under
// FairShare.Basis BasisUsed (and is ignored otherwise). The queue is
// looked at again.
func (c *Calendar) AddUsage(project string, coreSeconds float64, now time.Time) {
	if c.pol.FairShare == nil || c.pol.FairShare.Basis != BasisUsed || !(coreSeconds > 0) || math.IsInf(coreSeconds, 0) {
		return
	}
	t := c.clamp(now)
	p := c.project(project)
	c.accrue(p, t)
	if p.at < t {
		p.at = t
	}
	p.usage += coreSeconds
	c.markProject(p)
	if c.queued > 0 {
		c.needPass = true
	}
}

// FairShareUsage is a project's decayed fair-share usage (core-seconds) as
// of now, counting the leases it runs until now; it changes nothing.
func (c *Calendar) FairShareUsage(project string, now time.Time) float64 {
	p := c.projects[project]
	if p == nil {
		return 0
	}
	return c.usageAt(p, tick(now))
}
