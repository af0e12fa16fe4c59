package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sim/metrics"
	"vgrid/internal/sim/trace"
)

// Config is the modelled grid and the calendar's policy.
type Config struct {
	Hosts      int
	HostCPUs   float64
	HostMemory model.ByteSize
	HostDisk   model.ByteSize // 0: 1 TiB, more than trace VMs ask for
	Policy     calendar.Policy
	// SuspendRate, ResumeRate and StageRate are bytes/s per host (memory
	// to disk, disk to memory, image transfer); 0 is instantaneous.
	SuspendRate, ResumeRate, StageRate int64
	// MigrateRate is the bytes/s of live migration per host, which the
	// calendar plans migrations with (Policy.Migrate); 0 is the
	// calendar's default, calendar.DefaultMigrateRate.
	MigrateRate int64
	// BootTime is how long a host takes to boot a lease's guests before
	// its run begins (Host.BootTime); 0 is instantaneous.
	BootTime time.Duration
	// Inject, when set, is called once when virtual time reaches InjectAt
	// (an offset from the trace start), with the calendar as it is then
	// (to read, not to change): the leases it returns are submitted at
	// that instant, after the trace's submissions of the same instant
	// (see grid.go).
	Inject   func(c *calendar.Calendar, now time.Time) ([]Injected, error)
	InjectAt time.Duration
	// Context, when set, stops the run once it is done (a signal, a
	// timeout): Run returns an *Interrupted wrapping its error. The loop
	// looks at its Done channel at every step (a receive that does not
	// block, no lock), so a stop is seen after the step under way.
	Context context.Context
	// Progress, when set, is called every progressEvery steps of the
	// loop with how far the run is; it must be quick (the caller
	// throttles by wall time) and must not keep the calendar.
	Progress func(Progress)

	// keep keeps finished leases in the calendar (tests: forgetting them
	// must change nothing).
	keep bool
}

// Progress is how far a run has come.
type Progress struct {
	// Submitted counts the trace's leases submitted so far, of Total.
	Submitted, Total int
	// Now is the virtual time reached (Epoch + offset).
	Now time.Time
}

// Interrupted is the error of a run stopped by Config.Context: where it
// was then. It wraps the context's error (errors.Is(err,
// context.Canceled) holds).
type Interrupted struct {
	At               time.Time // virtual time reached
	Submitted, Total int       // trace leases submitted so far, of all
	Err              error     // the context's error
}

func (e *Interrupted) Error() string {
	return fmt.Sprintf("sim: interrupted at virtual time %s (+%s) after %d of %d leases: %v",
		e.At.Format(time.RFC3339), offset(e.At), e.Submitted, e.Total, e.Err)
}

func (e *Interrupted) Unwrap() error { return e.Err }

// progressEvery is how often the loop calls Config.Progress, in steps
// (each a distinct virtual instant; a step is microseconds to
// milliseconds of the calendar's work).
const progressEvery = 256

// Injected is a lease added during a run: the calendar lease as it is
// submitted (its members may differ), and its record's description.
type Injected struct {
	Lease calendar.Lease
	// Project and CPUs (per member, for the record) describe it.
	Project string
	CPUs    float64
}

// DefaultConfig is the grid of Haizea's SDSC Blue Horizon experiments:
// 144 hosts of 1 CPU and 1 GiB, suspension allowed, aggressive backfilling.
func DefaultConfig() Config {
	return Config{Hosts: 144, HostCPUs: 1, HostMemory: model.GiB, Policy: calendar.DefaultPolicy()}
}

// Result is what a run produced.
type Result struct {
	Records  []metrics.Record
	Summary  metrics.Summary
	Capacity float64 // cores
	Gantt    string  // the calendar's text Gantt of the first day (for small grids)
	// Events counts the calendar actions carried out, by kind.
	Events map[calendar.ActionKind]int
	// Leases is what happened to each lease, in trace order (then the
	// injected ones): see LeaseResult.
	Leases []LeaseResult
}

// Epoch is virtual time zero; trace offsets are added to it.
var Epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

var epoch = Epoch

func at(d time.Duration) time.Time     { return epoch.Add(d) }
func offset(t time.Time) time.Duration { return t.Sub(epoch) }
func hostName(i int) string            { return fmt.Sprintf("h%03d", i+1) }

// validKind reports whether the calendar knows the trace lease's kind.
func validKind(k model.LeaseKind) bool {
	switch k {
	case model.LeaseBestEffort, model.LeaseReservation, model.LeaseImmediate, model.LeaseDeadline:
		return true
	}
	return false
}

// lease is the engine's bookkeeping for one trace lease.
type lease struct {
	tr      trace.Lease
	rec     *metrics.Record
	work    time.Duration // real run time still to do
	open    []openSeg     // segments running now, in member order
	runFrom time.Time     // when the current run began (start or resume)
	gen     int           // invalidates scheduled early ends
	started bool
	done    bool
	out     leaseOut // what LeaseResult reports beyond rec
}

// openSeg is a run of n consecutive members running on host since
// start (a lease of many members has one per host, not one per member).
type openSeg struct {
	host  string
	start time.Time
	n     int
}

// Run replays leases (sorted by Submit) on the grid of cfg.
func Run(leases []trace.Lease, cfg Config) (Result, error) {
	if cfg.Hosts <= 0 || cfg.HostCPUs <= 0 || cfg.HostMemory <= 0 {
		return Result{}, errors.New("sim: hosts, host CPUs and host memory must be positive")
	}
	hosts := make([]calendar.Host, cfg.Hosts)
	disk := cfg.HostDisk
	if disk == 0 {
		// "Unlimited" for trace VMs, yet small enough that the calendar's
		// sum of free capacity over a million hosts cannot overflow (1<<60
		// did with 8 or 72 hosts: no lease ever started).
		disk = model.TiB
	}
	for i := range hosts {
		hosts[i] = calendar.Host{Name: hostName(i),
			Capacity:    model.Resources{MilliCPU: int64(cfg.HostCPUs*1000 + 0.5), Memory: cfg.HostMemory, Disk: disk},
			SuspendRate: cfg.SuspendRate, ResumeRate: cfg.ResumeRate, StageRate: cfg.StageRate, MigrateRate: cfg.MigrateRate,
			BootTime: cfg.BootTime,
			Storage:  true} // a simulated grid's volumes go on the hosts' disks
	}
	cal, err := calendar.New(hosts, cfg.Policy)
	if err != nil {
		return Result{}, err
	}
	e := &engine{cal: cal, byID: map[string]*lease{}, events: map[calendar.ActionKind]int{}, inject: cfg.Inject, injectAt: cfg.InjectAt,
		ctx: cfg.Context, progress: cfg.Progress, shutdown: cfg.Policy.ShutdownTime,
		// The Gantt chart of a small grid reads every lease; an injection
		// hook reads the calendar as it is. Otherwise the calendar
		// forgets each lease once it is over (its result is the
		// engine's), which bounds the memory of a long trace.
		forget: cfg.Hosts > 16 && cfg.Inject == nil && !cfg.keep}
	if cfg.Inject == nil {
		// Nobody asks the calendar what changed (an injection hook reads
		// it as it is).
		cal.Untracked()
	}
	e.hostIdx = make(map[string]int, len(hosts))
	for i, h := range hosts {
		e.hostIdx[h.Name] = i
	}
	res := Result{Capacity: float64(cfg.Hosts) * cfg.HostCPUs, Events: e.events}
	e.all = make([]*lease, 0, len(leases))
	for _, tl := range leases {
		if _, dup := e.byID[tl.ID]; dup {
			return res, fmt.Errorf("sim: lease %s appears twice", tl.ID)
		}
		real := tl.RealDuration
		if real <= 0 || real > tl.Duration {
			real = tl.Duration
		}
		l := &lease{tr: tl, work: real, rec: &metrics.Record{ID: tl.ID, Kind: tl.Kind, Project: tl.Project,
			Submit: tl.Submit, Nodes: tl.Nodes, CPUs: tl.CPUs, Requested: tl.Duration, Real: real}}
		e.byID[tl.ID] = l
		e.all = append(e.all, l)
	}
	if err := e.loop(); err != nil {
		return res, err
	}
	res.Records = make([]metrics.Record, 0, len(e.all)+len(e.extra))
	res.Leases = make([]LeaseResult, 0, len(e.all)+len(e.extra))
	for _, l := range append(e.all, e.extra...) {
		res.Records = append(res.Records, *l.rec)
		res.Leases = append(res.Leases, e.result(l))
	}
	res.Summary = metrics.Summarize(res.Records, res.Capacity)
	if cfg.Hosts <= 16 {
		res.Gantt = cal.Gantt(epoch, epoch.Add(24*time.Hour), 96)
	}
	return res, nil
}

type engine struct {
	cal   *calendar.Calendar
	all   []*lease
	extra []*lease // injected (Config.Inject)
	// inject is Config.Inject until it is called.
	inject   func(c *calendar.Calendar, now time.Time) ([]Injected, error)
	injectAt time.Duration
	byID     map[string]*lease
	timers   timerHeap // early ends and withdrawals
	events   map[calendar.ActionKind]int
	members  []calendar.Request // submit's buffer
	hostIdx  map[string]int     // the grid's hosts by name: their numbers
	forget   bool               // Calendar.Forget each lease once it is over
	late     []string           // leases over whose hold ends after a shutdown
	ctx      context.Context
	progress func(Progress)
	// shutdown is the calendar's Policy.ShutdownTime: a lease's guests
	// hold their slots that long after its run ends.
	shutdown time.Duration
}

// timer is a scheduled early end or withdrawal of a lease, or the end of
// a live migration of one of its members.
type timer struct {
	at     time.Time
	lease  *lease
	gen    int
	cancel bool // withdraw if not started (else: the lease's real work is done)
	// migrate: member's migration to host to, begun at since, is done.
	migrate bool
	member  int
	to      string
	since   time.Time
}

// timerHeap is a min-heap of timers by time (its own push and pop, not
// container/heap's: those box every timer they move in an interface).
type timerHeap []timer

func (h *timerHeap) push(t timer) {
	*h = append(*h, t)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q[i].at.Before(q[p].at) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *timerHeap) pop() timer {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = timer{}
	q = q[:n]
	for i := 0; ; {
		m, l, r := i, 2*i+1, 2*i+2
		if l < n && q[l].at.Before(q[m].at) {
			m = l
		}
		if r < n && q[r].at.Before(q[m].at) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

func (e *engine) loop() error {
	next := 0
	var done <-chan struct{}
	if e.ctx != nil {
		done = e.ctx.Done() // nil for a context that never ends
	}
	for step := 1; ; step++ {
		if done != nil {
			select {
			case <-done:
				return &Interrupted{At: e.reached(), Submitted: next, Total: len(e.all), Err: e.ctx.Err()}
			default:
			}
		}
		if e.progress != nil && step%progressEvery == 0 {
			e.progress(Progress{Submitted: next, Total: len(e.all), Now: e.reached()})
		}
		// The next instant anything happens.
		var t time.Time
		have := false
		consider := func(c time.Time) {
			if !have || c.Before(t) {
				t, have = c, true
			}
		}
		if next < len(e.all) {
			consider(at(e.all[next].tr.Submit))
		}
		if ct, ok := e.cal.NextEvent(); ok {
			consider(ct)
		}
		if len(e.timers) > 0 {
			consider(e.timers[0].at)
		}
		if e.inject != nil {
			consider(at(e.injectAt))
		}
		if !have {
			return nil
		}
		if now := e.cal.Now(); t.Before(now) {
			t = now // the calendar's clock never goes back
		}
		// Early ends first: they free capacity for what starts at t.
		for len(e.timers) > 0 && !e.timers[0].at.After(t) {
			tm := e.timers.pop()
			if err := e.fire(tm, t); err != nil {
				return err
			}
		}
		for next < len(e.all) && !at(e.all[next].tr.Submit).After(t) {
			e.submit(e.all[next], t)
			next++
		}
		if e.inject != nil && !at(e.injectAt).After(t) {
			if err := e.injectNow(t); err != nil {
				return err
			}
		}
		for _, a := range e.cal.Advance(t) {
			e.apply(a)
		}
		e.forgetLate()
	}
}

// forgetLate forgets the leases that were over while their guests still
// shut down (Policy.ShutdownTime), once the calendar has let them go.
func (e *engine) forgetLate() {
	if len(e.late) == 0 {
		return
	}
	keep := e.late[:0]
	for _, id := range e.late {
		if err := e.cal.Forget(id); errors.Is(err, calendar.ErrInvalid) {
			keep = append(keep, id)
		}
	}
	e.late = keep
}

// reached is the virtual time the run has reached: the calendar's
// clock, Epoch before its first step.
func (e *engine) reached() time.Time {
	if n := e.cal.Now(); n.After(epoch) {
		return n
	}
	return epoch
}

func (e *engine) submit(l *lease, now time.Time) {
	tl := l.tr
	kind, ok := tl.Kind, validKind(tl.Kind)
	if !ok || tl.Nodes <= 0 || tl.Duration <= 0 {
		l.rec.Rejected = true
		l.out.state, l.out.reason = StateRejected, invalidReason(tl)
		return
	}
	req := calendar.Request{Resources: model.Resources{
		MilliCPU: int64(tl.CPUs*1000 + 0.5),
		Memory:   model.ByteSize(tl.MemoryMiB) * model.MiB,
		Disk:     model.ByteSize(tl.DiskMiB) * model.MiB,
	}}
	// The calendar copies the members (and does not change them): one
	// buffer serves every submit, rewritten only where it differs.
	if len(e.members) > 0 && e.members[0].Resources != req.Resources {
		e.members = e.members[:0]
	}
	for len(e.members) < tl.Nodes {
		e.members = append(e.members, req)
	}
	members := e.members[:tl.Nodes]
	cl := calendar.Lease{ID: tl.ID, Project: tl.Project, Kind: kind, Members: members,
		Duration: tl.Duration, Submitted: at(tl.Submit),
		Image: calendar.Image{Name: tl.Image, Size: model.ByteSize(tl.ImageSizeMiB) * model.MiB}}
	switch kind {
	case calendar.Reservation:
		cl.Start = at(tl.Start)
	case calendar.Deadline:
		cl.Deadline = at(tl.Deadline)
		if tl.Start > 0 {
			cl.Start = at(tl.Start)
		}
	case calendar.BestEffort:
		if !tl.Preemptible {
			cl.Preempt = calendar.PreemptNever
		}
	}
	e.submitCal(l, cl, now)
}

// submitCal submits l as the calendar lease cl.
func (e *engine) submitCal(l *lease, cl calendar.Lease, now time.Time) {
	kind, tl := cl.Kind, l.tr
	if _, err := e.cal.Submit(cl, now); err != nil {
		l.rec.Rejected = true
		l.out.state, l.out.reason = StateRejected, err.Error()
		return
	}
	if kind == calendar.Reservation {
		l.rec.Accepted = true
	}
	if tl.CancelAfter > 0 {
		e.timers.push(timer{at: now.Add(tl.CancelAfter), lease: l, gen: l.gen, cancel: true})
	}
}

// fire handles a timer: the lease's real work is done, or a request that
// never started is withdrawn.
func (e *engine) fire(tm timer, now time.Time) error {
	l := tm.lease
	if tm.migrate {
		return e.moved(tm, now)
	}
	if tm.gen != l.gen || l.done {
		return nil
	}
	if tm.cancel {
		if l.started {
			return nil
		}
		if _, err := e.cal.Cancel(l.tr.ID, now); err != nil && !errors.Is(err, calendar.ErrFinished) {
			return fmt.Errorf("withdraw %s: %w", l.tr.ID, err)
		}
		l.done = true
		l.out.state = StateCancelled
		l.out.reason = fmt.Sprintf("withdrawn: not started %s after its submission", l.tr.CancelAfter)
		e.over(l)
		return nil
	}
	acts, err := e.cal.Finish(l.tr.ID, now)
	for _, a := range acts {
		e.apply(a)
	}
	if err != nil && !errors.Is(err, calendar.ErrFinished) {
		if v, ok := e.cal.Get(l.tr.ID); ok && errors.Is(err, calendar.ErrInvalid) && tm.gen != l.gen && v.State != calendar.StateRunning {
			// The calendar suspended or requeued it at this very
			// instant (its actions above): it goes on from there.
			return nil
		}
		return fmt.Errorf("finish %s: %w", l.tr.ID, err)
	}
	// The calendar may not echo an end for a lease finished early.
	if !l.done {
		e.close(l, now.Add(e.shutdown))
		l.rec.End = offset(now)
		l.done = true
	}
	l.out.seen = nil
	if l.out.state == "" {
		l.out.state = StateDone
	}
	e.over(l)
	return nil
}

// over is called once l is done: the calendar may forget it, and its
// open segments (none now) their room.
func (e *engine) over(l *lease) {
	l.open = nil
	if e.forget {
		// Only a lease the calendar has finished is forgotten: one whose
		// guests still shut down is forgotten once the calendar lets it
		// go (forgetLate).
		if err := e.cal.Forget(l.tr.ID); errors.Is(err, calendar.ErrInvalid) {
			e.late = append(e.late, l.tr.ID) // its guests shut down: later
		}
	}
}

func (e *engine) apply(a calendar.Action) {
	e.events[a.Kind]++
	l := e.byID[a.Lease]
	if l == nil || l.done {
		return
	}
	l.out.note(a, e.hostIdx)
	switch a.Kind {
	case calendar.ActStart, calendar.ActResume:
		if !l.started {
			l.started = true
			l.rec.Start = offset(a.At)
		}
		l.runFrom = a.At
		runs := 0
		for i, h := range a.Hosts {
			if i == 0 || h != a.Hosts[i-1] {
				runs++
			}
		}
		l.open = slices.Grow(l.open, runs)
		for _, h := range a.Hosts {
			if n := len(l.open); n > 0 && l.open[n-1].host == h && l.open[n-1].start.Equal(a.At) {
				l.open[n-1].n++ // members on one host come together
				continue
			}
			l.open = append(l.open, openSeg{host: h, start: a.At, n: 1})
		}
		l.gen++
		// The calendar reserves the requested time; the lease may need less.
		if rem := e.remaining(l); l.work < rem {
			e.timers.push(timer{at: a.At.Add(l.work), lease: l, gen: l.gen})
		}
	case calendar.ActSuspend:
		ran := e.close(l, a.At)
		l.work -= ran
		l.rec.Preemptions++
		l.rec.Suspensions++
		l.gen++
	case calendar.ActMigrate:
		// The guest moves while it runs: done after the time the calendar
		// modelled (its memory over the hosts' migration rate).
		e.timers.push(timer{at: a.At.Add(a.Duration), lease: l, migrate: true, member: a.Member, to: a.To, since: a.At})
	case calendar.ActRequeue:
		e.close(l, a.At)
		l.work = l.rec.Real // starts again from scratch
		l.rec.Preemptions++
		l.rec.Requeues++
		l.gen++
	case calendar.ActEnd:
		// The run ends here (rec.End); the slots stay held while the
		// guests shut down, which utilization counts (as it counts their
		// boot, from the start action).
		e.close(l, a.At.Add(e.shutdown))
		l.rec.End = offset(a.At)
		l.done = true
		l.gen++
		l.out.state, l.out.reason = StateDone, a.Reason
		l.out.seen = nil
		e.over(l)
	}
}

// remaining is the run time the calendar still grants the lease.
func (e *engine) remaining(l *lease) time.Duration {
	if r, ok := e.cal.Remaining(l.tr.ID); ok && r > 0 {
		return r
	}
	return l.tr.Duration
}

// close ends the lease's open segments at t and returns how long its run
// lasted.
func (e *engine) close(l *lease, t time.Time) time.Duration {
	if l.rec.Segments == nil && len(l.open) > 0 {
		// Most leases run once: their segments fit exactly.
		l.rec.Segments = make([]metrics.Segment, 0, len(l.open))
	}
	for _, s := range l.open {
		seg := metrics.Segment{Host: s.host, Start: offset(s.start), End: offset(t)}
		if s.n > 1 {
			seg.VMs = s.n
		}
		l.rec.Segments = append(l.rec.Segments, seg)
	}
	ran := time.Duration(0)
	if len(l.open) > 0 {
		ran = max(t.Sub(l.runFrom), 0)
	}
	l.open = l.open[:0]
	return ran
}

// moved ends a live migration at now: the member runs on its new host
// from now (its segment there begins), if the lease still runs.
func (e *engine) moved(tm timer, now time.Time) error {
	l := tm.lease
	acts, err := e.cal.EndMove(l.tr.ID, tm.member, true, now)
	switch {
	case errors.Is(err, calendar.ErrInvalid) || errors.Is(err, calendar.ErrNotFound):
		// The lease ended (or was displaced) meanwhile: nothing moved.
	case err != nil:
		return fmt.Errorf("end migration of %s member %d: %w", l.tr.ID, tm.member, err)
	default:
		l.rec.Migrations++
		l.rec.MigrationTime += now.Sub(tm.since)
		l.out.addHosts(e.hostIdx, tm.to)
		if k := l.memberRun(tm.member); !l.done && k >= 0 {
			s := l.open[k]
			l.rec.Segments = append(l.rec.Segments, metrics.Segment{Host: s.host, Start: offset(s.start), End: offset(now)})
			l.open[k] = openSeg{host: tm.to, start: now, n: 1}
		}
	}
	for _, a := range acts {
		e.apply(a)
	}
	return nil
}

// memberRun splits l's open runs so that member is a run of its own, and
// returns its index (-1: it has no open segment).
func (l *lease) memberRun(member int) int {
	first := 0
	for k, r := range l.open {
		if member >= first+r.n {
			first += r.n
			continue
		}
		if member < 0 {
			return -1
		}
		off := member - first
		parts := make([]openSeg, 0, 3)
		if off > 0 {
			parts = append(parts, openSeg{host: r.host, start: r.start, n: off})
		}
		parts = append(parts, openSeg{host: r.host, start: r.start, n: 1})
		if rest := r.n - off - 1; rest > 0 {
			parts = append(parts, openSeg{host: r.host, start: r.start, n: rest})
		}
		l.open = slices.Replace(l.open, k, k+1, parts...)
		if off > 0 {
			return k + 1
		}
		return k
	}
	return -1
}

// injectNow calls the injection hook once and submits what it returns.
func (e *engine) injectNow(now time.Time) error {
	f := e.inject
	e.inject = nil
	ins, err := f(e.cal, now)
	if err != nil {
		return err
	}
	for _, in := range ins {
		cl := in.Lease
		if _, dup := e.byID[cl.ID]; dup {
			return fmt.Errorf("sim: injected lease %s is already in the trace", cl.ID)
		}
		tl := trace.Lease{ID: cl.ID, Submit: offset(now), Kind: cl.Kind, Duration: cl.Duration, Nodes: len(cl.Members), CPUs: in.CPUs, Project: in.Project}
		if cl.Kind == calendar.Reservation {
			tl.Start = offset(cl.Start)
		}
		l := &lease{tr: tl, work: cl.Duration, rec: &metrics.Record{ID: cl.ID, Kind: cl.Kind, Project: in.Project,
			Submit: tl.Submit, Nodes: tl.Nodes, CPUs: in.CPUs, Requested: cl.Duration, Real: cl.Duration}}
		e.byID[cl.ID] = l
		e.extra = append(e.extra, l)
		cl.Submitted = now
		e.submitCal(l, cl, now)
	}
	return nil
}
