package calendar

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Calendar is the lease calendar: every host's capacity over time and every
// lease's slots. It is not safe for concurrent use; the caller serialises
// calls (the server holds one lock, the simulator is single-threaded).
type Calendar struct {
	pol Policy
	// xfers are the image transfers booked on the shared link (link.go),
	// by start, past ones included (the images they left in caches).
	xfers []*transfer
	// linkBW is the link's bandwidth (linkBandwidth), bytes/s.
	linkBW int64

	hosts  []*host          // by id, including removed ones
	byName map[string]*host // live hosts
	order  []*host          // live hosts in name order
	free   []vec            // free capacity at the clock, by position in order
	// freeSum is the sum of free; a lease larger than it cannot start now.
	freeSum  vec
	elig     map[string][]*host // live hosts matching a label constraint, in name order
	mask     map[string][]bool  // the same by position
	cordoned int                // live hosts cordoned (SetCordon)
	index    scoreIndex         // hosts by allocation, for pack and spread
	hostVer  uint64             // bumped when hosts come or go, or their times change
	agg      map[string]hostAgg // eligAgg by label key, valid while aggVer is hostVer+1
	aggVer   uint64

	leases   map[string]*lease
	projects map[string]*project
	fifo     project // the one queue when fair share is off
	queued   int

	events evHeap
	seq    uint64
	now    int64 // the clock: the latest time passed to Advance
	// epoch changes whenever committed capacity is released or hosts
	// change: a lease that did not fit at one epoch does not fit at the same
	// epoch later (see pass).
	epoch    uint64
	needPass bool
	// rel logs which host got slots back at which epoch (nil: all hosts
	// changed), so that a lease that did not fit needs looking at again
	// only on those hosts. Epochs up to relMin are no longer logged.
	rel     []release
	relMin  uint64
	actions []Action

	// The tentative plans (backfill reservations) of the last pass, to reuse
	// them while nothing changed.
	lastTents []tentRec
	tentVer   uint64
	passNo    uint64
	commits   uint64 // counts commits: a plan is reused only if none happened since
	// settled is the state the last pass left, when a pass again in the
	// same state would change nothing (see pass).
	settled passState
	// stops are the leases whose holds end in a suspension or a requeue
	// not begun, which may run on if the room comes back (runon.go).
	stops []*lease
	rev   uint64 // see Revision

	// noMemo turns off the pass's shortcuts (for tests: the result must
	// not change).
	noMemo bool

	// dirty and dirtyProj are the leases and projects whose durable
	// state changed since Changes was last called.
	dirty     map[*lease]struct{}
	dirtyProj map[*project]struct{}
	untracked bool // see Untracked
	touchBuf  []*host
	stamp     uint64 // see sharesHost
	// all finds hosts by name, removed ones too, while Restore runs.
	all map[string]*host

	// bulk is the memo of the leases behind the last pass's backfill
	// reservations (pass); freshQ the leases queued (or renewed) since,
	// which the next pass looks at themselves; enqSeq counts both.
	bulk     bulkMemo
	freshQ   []*lease
	freshBuf []*lease
	enqSeq   uint64

	// misses are the fresh starts that failed in the pass under way;
	// gapMiss says the last start in a gap failed for want of room.
	misses  misses
	gapMiss bool
	// linkMiss says the last start failed for the shared link's sake (its
	// image could not arrive while the hosts had room, or a cache was
	// full): not a lack of slots, which the pass's memos speak of.
	linkMiss bool
	// fronts are the pass's first-fit frontiers (frontier.go); hmiss
	// the hosts' misses of pack and spread, by position, which a start
	// in a pass reads and notes (useMisses).
	fronts    frontiers
	hmiss     []hostMisses
	useMisses bool

	// alike and iota are the read-only member arrays and member lists
	// that leases of many alike members share (newLease).
	alike map[alikeKey][]Request
	iota  []int

	candBuf  []cand
	placeBuf []*host   // plan's placements (earliestOn, placeInto)
	hvBuf    []hostVec // commit's members by host
	sweepBuf []sweepHost
	// sweepRec, when recSweep, receives the sweep's totals (sweepfloor.go).
	sweepRec []sweepStep
	recSweep bool
	sweepQ   sweepHeap
	orderBuf []*lease
}

// host is a host's slot table.
type host struct {
	Host
	id     int
	pos    int // index in Calendar.order
	cap    vec
	tl     timeline
	allocs []*alloc // committed holds that have not ended
	down   bool
	mark   int    // scratch for perHost
	seen   uint64 // scratch for sharesHost: Calendar.stamp when seen
}

// alloc is a lease's hold on one host: its members there, from..to.
type alloc struct {
	l        *lease
	h        *host
	v        vec
	from, to int64
	// booked: the slots of the lease's booked resume (booked.go), not of
	// its current hold.
	booked bool
}

// seg is one hold, kept for the Gantt chart: the slots are held over
// [from, to); [ovFrom, runFrom) is staging and booting, or resuming,
// [runFrom, runTo) the run, [runTo, to) suspending or shutting down.
type seg struct {
	h                                *host
	from, ovFrom, runFrom, runTo, to int64
	// cont says the segment continues the hold of the one before it in
	// the lease's list (a move or a resize split it).
	cont bool
}

// fate is how a hold ends.
type fate uint8

const (
	fateEnd fate = iota
	fateSuspend
	fateRequeue
)

// group is a set of identical members.
type group struct {
	v       vec
	labels  map[string]string
	key     string // canonical label constraint
	members []int
	// spread: one member per host where possible (LeaseMember.Spread).
	spread bool
}

type lease struct {
	Lease
	proj      *project
	st        State
	arrival   int64 // when it was submitted (it cannot start before)
	submitted int64 // queue order
	gen       uint64
	groups    []group
	total     vec
	run       int64 // requested run time
	remaining int64 // run time still owed when the current hold's run begins

	// The current hold, when held is true: slots [holdFrom, to), overhead
	// [T-pre, T) (staging then booting, the last boot of it, for a fresh
	// start; resuming for a resume), run [T, runTo), then suspending until
	// to when the fate is fateSuspend, or shutting down until to when it
	// is fateEnd (Policy.ShutdownTime; to == runTo without one).
	// stopped says the end action was sent (or the guests stopped by
	// themselves, Finish): the run is over and the guests shut down.
	held                         bool
	resume                       bool // the hold resumes a suspended run
	holdFrom, T, runTo, to, pre  int64
	boot                         int64
	fate                         fate
	cause                        string
	hosts                        []*host // member -> host
	allocs                       []*alloc
	staged, started, suspendSent bool
	stopped                      bool
	// inStops says it is in Calendar.stops (runon.go); roEpoch, roBy and
	// roVer say why it could not run on when last looked at (runOnBehind).
	inStops bool
	roEpoch uint64
	roBy    *lease
	roVer   uint64
	holding bool // counted in its project's running cores
	// moves are the members moving to another host (migrate.go); the
	// hold's allocs are then the ones desiredAllocs lists.
	moves []*move
	// next is a deadline lease's booked resume, after the suspension its
	// current hold ends in (booked.go).
	next *booked
	// xfers are the link transfers its image comes by (link.go).
	xfers []*transfer

	// Waiting.
	queued bool
	enq    uint64 // when it was queued or renewed (Calendar.enqSeq)
	// The lease did not fit now in pass memoPass, at epoch memoEpoch,
	// behind the first memoK backfill reservations of that pass.
	memoEpoch   uint64
	memoPass    uint64
	memoK       int
	planned     bool // plan holds a tentative backfill reservation
	planT       int64
	planHosts   []*host
	planEpoch   uint64
	planCommits uint64
	sweep       *sweepMemo // what its last plan's sweep saw (sweepfloor.go)
	reason      string
	savedOn     []*host // member -> host its suspended image is on
	suspensions int
	requeues    int
	charged     float64 // core-seconds counted against CoreHours
	// usedAdj corrects, in core-seconds, what refund counts as used for
	// the time the lease ran at another size (Resize).
	usedAdj   float64
	preCache  int64 // preFor, valid while preVer is hostVer+1
	bootCache int64 // the boot part of preCache
	preVer    uint64

	segs []seg
	// sharedMembers: Members is a read-only array other leases share
	// (newLease); it is copied before a member changes.
	sharedMembers bool
}

type project struct {
	name     string
	weight   float64
	usage    float64 // decayed core-seconds as of at
	at       int64
	runMilli int64
	queue    []*lease // waiting, by (submitted, id)
	tot      []vec    // the total of each lease in queue, to rule leases out without reading them
	quota    *Quota
	limit    vec
	qtl      timeline // committed holds, for quotas on cores, memory, workspaces
	charged  float64
}

// New returns a calendar of hosts under policy p.
func New(hosts []Host, p Policy) (*Calendar, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	c := &Calendar{
		pol:      p,
		byName:   map[string]*host{},
		leases:   map[string]*lease{},
		projects: map[string]*project{},
		now:      math.MinInt64,
	}
	c.fifo.weight = 1
	for _, h := range hosts {
		if err := c.addHost(h); err != nil {
			return nil, err
		}
	}
	c.reindex()
	return c, nil
}

func (p Policy) validate() error {
	switch p.Backfill {
	case "", BackfillAggressive, BackfillConservative, BackfillNone:
	default:
		return fmt.Errorf("policy: unknown backfill %q (want none, conservative or aggressive): %w", p.Backfill, ErrInvalid)
	}
	switch p.Exclusion {
	case "", ExclusionLocal, ExclusionGlobal:
	default:
		return fmt.Errorf("policy: unknown suspend/resume exclusion %q (want local or global): %w", p.Exclusion, ErrInvalid)
	}
	if p.Link.Bandwidth < 0 {
		return fmt.Errorf("policy: negative link bandwidth %d: %w", p.Link.Bandwidth, ErrInvalid)
	}
	if p.MinRun < 0 {
		return fmt.Errorf("policy: negative minimum run before preemption %s: %w", p.MinRun, ErrInvalid)
	}
	if p.GapMinRun < 0 {
		return fmt.Errorf("policy: negative gap minimum run %s: %w", p.GapMinRun, ErrInvalid)
	}
	if p.ShutdownTime < 0 || p.ShutdownTime > MaxBootTime {
		return fmt.Errorf("policy: shutdown time %v, want 0 to %v: %w", p.ShutdownTime, MaxBootTime, ErrInvalid)
	}
	if p.Depth < 0 {
		return fmt.Errorf("policy: negative backfill depth %d: %w", p.Depth, ErrInvalid)
	}
	switch p.Placement {
	case "", FirstFit, Pack, Spread:
	default:
		return fmt.Errorf("policy: unknown placement %q (want first-fit, pack or spread): %w", p.Placement, ErrInvalid)
	}
	if p.FairShare != nil {
		if p.FairShare.HalfLife < 0 {
			return fmt.Errorf("policy: negative fair-share half-life: %w", ErrInvalid)
		}
		switch p.FairShare.Basis {
		case "", BasisReserved, BasisUsed:
		default:
			return fmt.Errorf("policy: unknown fair-share basis %q (want reserved or used): %w", p.FairShare.Basis, ErrInvalid)
		}
		for name, w := range p.FairShare.Weights {
			if !(w > 0) || math.IsInf(w, 0) {
				return fmt.Errorf("policy: weight of project %q is %v, want > 0: %w", name, w, ErrInvalid)
			}
		}
	}
	for name, q := range p.Quotas {
		if q.MilliCPU < 0 || q.Memory < 0 || q.Workspaces < 0 || q.CoreHours < 0 {
			return fmt.Errorf("policy: negative quota for project %q: %w", name, ErrInvalid)
		}
	}
	raw := [...]float64{p.Overcommit.CPU, p.Overcommit.Memory, p.Overcommit.Disk, p.Overcommit.Bandwidth}
	for d, r := range raw {
		if r != 0 && !(r >= 1 && r <= MaxOvercommit) {
			return fmt.Errorf("policy: overcommit of %s is %v, want a ratio from 1 (none) to %d: %w", dimNames[d], r, MaxOvercommit, ErrInvalid)
		}
	}
	return nil
}

// MaxOvercommit bounds the overcommit ratios, so that capacities stay far
// from overflowing.
const MaxOvercommit = 1000

// overcommit is a real capacity v as the slot table counts it at ratio r.
func overcommit(v int64, r float64) int64 {
	if r <= 1 {
		return v
	}
	return int64(math.Min(math.Floor(float64(v)*r), float64(unlimited)))
}

func (c *Calendar) addHost(h Host) error {
	switch {
	case h.Name == "":
		return fmt.Errorf("add host: empty name: %w", ErrInvalid)
	case c.byName[h.Name] != nil:
		return fmt.Errorf("add host %s: %w", h.Name, ErrExists)
	case h.Capacity.MilliCPU < 0 || h.Capacity.Memory < 0 || h.Capacity.Disk < 0 || h.Capacity.Bandwidth < 0:
		return fmt.Errorf("add host %s: negative capacity: %w", h.Name, ErrInvalid)
	case h.SuspendRate < 0 || h.ResumeRate < 0 || h.StageRate < 0 || h.MigrateRate < 0:
		return fmt.Errorf("add host %s: negative rate: %w", h.Name, ErrInvalid)
	case h.BootTime < 0 || h.BootTime > MaxBootTime:
		return fmt.Errorf("add host %s: boot time %v, want 0 to %v: %w", h.Name, h.BootTime, MaxBootTime, ErrInvalid)
	}
	h.Labels = cloneLabels(h.Labels)
	hh := &host{Host: h, id: len(c.hosts), cap: vecOf(h.Capacity)}
	for d, r := range c.pol.Overcommit.ratios() {
		hh.cap[d] = overcommit(hh.cap[d], r)
	}
	hh.cap[dWS] = hostWorkspaces
	c.hosts = append(c.hosts, hh)
	c.byName[h.Name] = hh
	return nil
}

// reindex rebuilds the name order and the free-now index after hosts change.
func (c *Calendar) reindex() {
	c.order = c.order[:0]
	for _, h := range c.hosts {
		if !h.down {
			c.order = append(c.order, h)
		}
	}
	sort.Slice(c.order, func(i, j int) bool { return c.order[i].Name < c.order[j].Name })
	c.free = make([]vec, len(c.order))
	c.freeSum = vec{}
	c.index.reset(len(c.order))
	for i, h := range c.order {
		h.pos = i
		c.free[i] = h.cap.sub(h.tl.at(c.now))
		c.freeSum = c.freeSum.add(c.free[i])
		c.index.insert(i, scoreOf(h.cap.sub(c.free[i]), h.cap))
	}
	c.elig = map[string][]*host{}
	c.mask = map[string][]bool{}
	c.countCordoned()
	c.linkBW = c.linkBandwidth()
	c.hostVer++
	c.released(nil)
	c.needPass = true
}

// release is one entry of the release log.
type release struct {
	epoch uint64
	h     *host
}

// released records that h (nil: any host) got capacity back.
func (c *Calendar) released(h *host) {
	c.epoch++
	c.rel = append(c.rel, release{c.epoch, h})
	if len(c.rel) > 4096 {
		n := len(c.rel) / 2
		c.relMin = c.rel[n-1].epoch
		c.rel = append(c.rel[:0], c.rel[n:]...)
	}
}

// mayFit says whether l, which did not fit now in the last pass, might fit
// now: some host got capacity back since, either released (the log) or
// freed of a backfill reservation that stood before l in the last pass and
// does not now (lastTents[same:memoK]); memoEpoch and memoK are l's memo.
func (c *Calendar) mayFit(l *lease, t int64, same int, memoEpoch uint64, memoK int) bool {
	if memoEpoch <= c.relMin || memoK > len(c.lastTents) {
		return true
	}
	if len(l.groups) > 1 {
		// Mixed members are placed greedily, group by group, on hosts
		// ranked as they are now: slots taken elsewhere, or a hold
		// beginning, can change the order and let a placement that
		// failed succeed, with nothing released.
		return true
	}
	single := len(l.Members) == 1 && l.savedOn == nil
	var end int64
	if single {
		end = t + c.preFor(l) + c.span(l.remaining)
		if c.mayUseGaps(l) {
			// A start in a gap needs room only for the least run
			// (startInGap).
			end = min(end, t+c.preFor(l)+c.gapMinRun())
		}
	}
	check := func(h *host) bool {
		if h == nil {
			return true
		}
		if h.down {
			return false
		}
		for gi := range l.groups {
			g := &l.groups[gi]
			if matches(h, g.labels) && (!single || c.fitOn(h, g, t, end, true, vec{}, 1) > 0) {
				return true
			}
		}
		return false
	}
	i := sort.Search(len(c.rel), func(i int) bool { return c.rel[i].epoch > memoEpoch })
	for ; i < len(c.rel); i++ {
		if check(c.rel[i].h) {
			return true
		}
	}
	for k := same; k < memoK; k++ {
		for _, h := range c.lastTents[k].hosts {
			if check(h) {
				return true
			}
		}
	}
	return false
}

func matches(h *host, labels map[string]string) bool {
	for k, v := range labels {
		if h.Labels[k] != v {
			return false
		}
	}
	return true
}

// AddHost adds a host (or brings back one that was removed under the same
// name, empty). Waiting leases may start on it at the next Advance.
func (c *Calendar) AddHost(h Host, now time.Time) error {
	c.rev++ // see Revision
	c.clamp(now)
	if err := c.addHost(h); err != nil {
		return err
	}
	c.adoptVolumes() // a removed host back: its volumes count again
	c.reindex()
	return nil
}

// SetHostTimes changes what the calendar knows of a live host's guests'
// times, as the host measured them: boot is how long a guest takes from
// its start to ready, suspendRate and resumeRate the bytes/s of saving and
// restoring a guest's memory (zero: not modelled). The host keeps its
// holds.
//
// Only what is planned afterwards uses the new values: the overheads of
// holds committed afterwards (admissions, starts and resumes from the
// queue, re-placements after RemoveHost) and the suspensions planned
// afterwards. Holds already committed keep their windows and the times
// of their actions, and suspensions already planned keep theirs: a
// reservation admitted when the host booted faster still starts its
// guests when planned, and they may be ready late. The lease records do
// not change; the queue is looked at again at the next Advance. Values
// equal to the current ones change nothing. An unknown (or removed) host
// is an error wrapping ErrNotFound; a negative rate or a boot time outside
// [0, MaxBootTime] one wrapping ErrInvalid.
func (c *Calendar) SetHostTimes(name string, boot time.Duration, suspendRate, resumeRate int64, now time.Time) error {
	c.clamp(now)
	h := c.byName[name]
	switch {
	case h == nil:
		return fmt.Errorf("set host times %s: %w", name, ErrNotFound)
	case suspendRate < 0 || resumeRate < 0:
		return fmt.Errorf("set host times %s: negative rate: %w", name, ErrInvalid)
	case boot < 0 || boot > MaxBootTime:
		return fmt.Errorf("set host times %s: boot time %v, want 0 to %v: %w", name, boot, MaxBootTime, ErrInvalid)
	}
	if h.BootTime == boot && h.SuspendRate == suspendRate && h.ResumeRate == resumeRate {
		return nil
	}
	h.BootTime, h.SuspendRate, h.ResumeRate = boot, suspendRate, resumeRate
	// Overheads computed before (preFor) are stale, and so are the pass's
	// memos and plans, which assumed them.
	c.hostVer++
	c.released(nil)
	c.needPass = true
	return nil
}

// clamp converts now to the internal clock, never earlier than the clock.
// The first call of any kind starts the clock.
func (c *Calendar) clamp(now time.Time) int64 {
	t := tick(now)
	if c.now == math.MinInt64 {
		c.now = t
	}
	if t < c.now {
		return c.now
	}
	return t
}

func tick(t time.Time) int64 { return t.UnixNano() }

func tm(n int64) time.Time { return time.Unix(0, n).UTC() }

func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// labelKey is the canonical form of a label constraint: "k=v,k=v" sorted.
func labelKey(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
	}
	return b.String()
}

// eligible returns the live hosts, not cordoned, whose labels satisfy g's
// constraint.
func (c *Calendar) eligible(g *group) []*host {
	if g.key == "" && c.cordoned == 0 {
		return c.order
	}
	if hs, ok := c.elig[g.key]; ok {
		return hs
	}
	var hs []*host
	for _, h := range c.order {
		if !h.Cordoned && matches(h, g.labels) {
			hs = append(hs, h)
		}
	}
	c.elig[g.key] = hs
	return hs
}

// touch refreshes a host's free-now entry and forgets its past.
func (c *Calendar) touch(h *host) {
	if h.down {
		return
	}
	h.tl.gc(c.now)
	n := 0
	for _, a := range h.allocs {
		if a.to > c.now {
			h.allocs[n] = a
			n++
		}
	}
	clear(h.allocs[n:])
	h.allocs = h.allocs[:n]
	f := h.cap.sub(h.tl.at(c.now))
	c.freeSum = c.freeSum.add(f.sub(c.free[h.pos]))
	c.free[h.pos] = f
	if c.pol.Placement == Pack || c.pol.Placement == Spread {
		c.rescore(h) // (only pack and spread read the index)
	}
}

func (c *Calendar) project(name string) *project {
	p := c.projects[name]
	if p == nil {
		p = &project{name: name, weight: 1}
		if c.pol.FairShare != nil {
			if w, ok := c.pol.FairShare.Weights[name]; ok {
				p.weight = w
			}
		}
		if q, ok := c.pol.Quotas[name]; ok {
			p.quota = &q
			p.limit = vec{q.MilliCPU, int64(q.Memory), unlimited, unlimited, int64(q.Workspaces)}
			for i, v := range p.limit {
				if v == 0 {
					p.limit[i] = unlimited
				}
			}
		}
		c.projects[name] = p
	}
	return p
}

// Get returns a lease's view.
func (c *Calendar) Get(id string) (LeaseView, bool) {
	l := c.leases[id]
	if l == nil {
		return LeaseView{}, false
	}
	return c.view(l), true
}

// Leases returns every lease the calendar knows, by ID.
func (c *Calendar) Leases() []LeaseView {
	ls := c.sortedLeases()
	out := make([]LeaseView, len(ls))
	for i, l := range ls {
		out[i] = c.view(l)
	}
	return out
}

func (c *Calendar) sortedLeases() []*lease {
	ls := make([]*lease, 0, len(c.leases))
	for _, l := range c.leases {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].ID < ls[j].ID })
	return ls
}

func (c *Calendar) view(l *lease) LeaseView {
	v := LeaseView{
		ID: l.ID, Project: l.Project, Kind: l.Kind, State: l.st,
		Remaining: c.remainingOf(l), Suspensions: l.suspensions, Requeues: l.requeues,
		Reason: l.reason,
	}
	v.Members = make([]string, len(l.Members))
	for i, m := range l.Members {
		v.Members[i] = m.Workspace
	}
	for _, mv := range l.moves {
		if v.Moving == nil {
			v.Moving = map[int]string{}
		}
		v.Moving[mv.member] = mv.to.Name
	}
	switch {
	case l.held:
		v.Start, v.End = tm(l.T), tm(l.runTo)
		v.Hosts = names(l.hosts)
		if l.fate == fateEnd && l.to > l.runTo {
			v.ShutdownTo, v.ShuttingDown = tm(l.to), l.stopped
		}
	case l.queued && l.planned:
		v.Start, v.End, v.Planned = tm(l.planT), tm(l.planT+l.remaining), true
		v.Hosts = names(l.planHosts)
	case l.st == StateDone || l.st == StateCancelled || l.st == StateFailed:
		if n := len(l.segs); n > 0 {
			// The last run, over the segments a move or resize split it into.
			from, to := l.segs[n-1].runFrom, l.segs[n-1].runTo
			for i := n - 1; i > 0 && l.segs[i].cont; i-- {
				from, to = min(from, l.segs[i-1].runFrom), max(to, l.segs[i-1].runTo)
			}
			v.Start, v.End = tm(from), tm(to)
			v.Hosts = names(l.hosts)
		}
	}
	return v
}

func names(hs []*host) []string {
	if hs == nil {
		return nil
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

// NextEvent returns the time of the next thing the calendar will do, for a
// simulator's virtual clock; false if nothing is pending.
func (c *Calendar) NextEvent() (time.Time, bool) {
	if c.needPass && c.now != math.MinInt64 {
		return tm(c.now), true
	}
	if e, ok := c.peek(); ok {
		return tm(max(e.at, c.now)), true
	}
	return time.Time{}, false
}

// Now returns the calendar's clock (the latest time given to Advance).
func (c *Calendar) Now() time.Time {
	if c.now == math.MinInt64 {
		return time.Time{}
	}
	return tm(c.now)
}

// Revision counts the calendar's changes made by its callers: leases
// admitted, cancelled, finished, extended, resized or moved, hosts and
// volumes added, changed or removed. Time passing (Advance) does not
// change it, nor do refused submissions, measured rates or usage. A dry
// run made at one revision is still the answer at the same revision if
// the clock has not moved anything meanwhile; callers that need exactly
// the same answer evaluate again and compare. A restored calendar starts
// again from 0.
func (c *Calendar) Revision() uint64 { return c.rev }
