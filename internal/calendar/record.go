package calendar

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"vgrid/internal/model"
)

// A calendar's state is a set of lease records and project usages
// (model.LeaseRecord, model.ProjectUsage) plus its clock. The control plane
// stores them before it acts on what the calendar decided, and Restore
// builds the same calendar from them after a restart: reservations keep
// their windows and kinds, queued leases their order, suspended leases
// their remaining time, projects their fair-share history.
//
// Changes returns what changed since it was last called, so that the
// caller writes only that.

// Snapshot is a calendar's whole durable state.
type Snapshot struct {
	// Now is the calendar's clock.
	Now time.Time
	// Pass says the queue is due to be looked at again at Now.
	Pass bool
	// Removed names the hosts taken away with RemoveHost; leases may
	// still name them.
	Removed  []string
	Leases   []model.LeaseRecord
	Projects []model.ProjectUsage
	// Transfers are the image transfers on the shared link, past ones
	// included (link.go).
	Transfers []model.ImageTransfer `json:",omitempty"`
}

// Untracked tells the calendar that it will not be asked what changed (a
// simulation): it keeps no account of the leases and projects whose
// durable state changed, which costs a map write per change. Changes
// returns nothing from then on.
func (c *Calendar) Untracked() {
	c.untracked = true
	c.dirty, c.dirtyProj = nil, nil
}

// mark records that l's durable state changed.
func (c *Calendar) mark(l *lease) {
	if c.untracked {
		return
	}
	if c.dirty == nil {
		c.dirty = map[*lease]struct{}{}
	}
	c.dirty[l] = struct{}{}
}

// markProject records that p's durable state changed.
func (c *Calendar) markProject(p *project) {
	if c.untracked {
		return
	}
	if c.dirtyProj == nil {
		c.dirtyProj = map[*project]struct{}{}
	}
	c.dirtyProj[p] = struct{}{}
}

// setReason changes a lease's reason, marking it only if it differs.
func (c *Calendar) setReason(l *lease, r string) {
	if l.reason != r {
		l.reason = r
		c.mark(l)
	}
}

// Changes returns the records of the leases and projects whose durable
// state changed since the last call (or since New or Restore), by ID, and
// forgets them.
func (c *Calendar) Changes() ([]model.LeaseRecord, []model.ProjectUsage) {
	ls := make([]*lease, 0, len(c.dirty))
	for l := range c.dirty {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].ID < ls[j].ID })
	recs := make([]model.LeaseRecord, len(ls))
	for i, l := range ls {
		recs[i] = c.record(l)
	}
	ps := make([]*project, 0, len(c.dirtyProj))
	for p := range c.dirtyProj {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	us := make([]model.ProjectUsage, len(ps))
	for i, p := range ps {
		us[i] = usageOf(p)
	}
	clear(c.dirty)
	clear(c.dirtyProj)
	return recs, us
}

// Record returns the durable state of one lease.
func (c *Calendar) Record(id string) (model.LeaseRecord, bool) {
	l := c.leases[id]
	if l == nil {
		return model.LeaseRecord{}, false
	}
	return c.record(l), true
}

// Removed names the hosts taken away with RemoveHost, in order.
func (c *Calendar) Removed() []string {
	var out []string
	for _, h := range c.hosts {
		// A host brought back under the same name (AddHost) is live.
		if h.down && c.byName[h.Name] == nil && !slices.Contains(out, h.Name) {
			out = append(out, h.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Snapshot returns the whole durable state: every lease (those that are
// over too: they draw the chart's past), every project, and the clock.
func (c *Calendar) Snapshot() Snapshot {
	s := Snapshot{Now: c.Now(), Pass: c.needPass, Removed: c.Removed()}
	for _, x := range c.xfers {
		s.Transfers = append(s.Transfers, x.record())
	}
	for _, l := range c.sortedLeases() {
		s.Leases = append(s.Leases, c.record(l))
	}
	names := make([]string, 0, len(c.projects))
	for n := range c.projects {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Projects = append(s.Projects, usageOf(c.projects[n]))
	}
	return s
}

func usageOf(p *project) model.ProjectUsage {
	u := model.ProjectUsage{Project: p.name, DecayedCoreSeconds: p.usage, ChargedCoreSeconds: p.charged}
	if p.at != 0 {
		u.At = tm(p.at)
	}
	return u
}

func tmz(n int64) time.Time {
	if n == 0 || n == math.MinInt64 {
		return time.Time{}
	}
	return tm(n)
}

func tickz(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return tick(t)
}

var fateNames = map[fate]string{fateEnd: "", fateSuspend: "suspend", fateRequeue: "requeue"}

func (c *Calendar) record(l *lease) model.LeaseRecord {
	r := model.LeaseRecord{
		ID: l.ID, Project: l.Project, Kind: l.Kind,
		Start: l.Start, Deadline: l.Deadline, Duration: model.Duration(l.run),
		Preempt: string(l.Preempt), Image: l.Image.Name, ImageBytes: l.Image.Size,
		Submitted: tm(l.submitted), Arrival: tm(l.arrival), State: l.st,
		Remaining: model.Duration(l.remaining), Queued: l.queued,
		SavedOn: names(l.savedOn), Suspensions: l.suspensions, Requeues: l.requeues,
		ChargedCoreSeconds: l.charged, ResizedCoreSeconds: l.usedAdj, Reason: l.reason,
	}
	r.Members = make([]model.LeaseMember, len(l.Members))
	for i, m := range l.Members {
		r.Members[i] = model.LeaseMember{Workspace: m.Workspace, Resources: m.Resources, Labels: cloneLabels(m.Labels), Spread: m.Spread}
	}
	if l.held {
		r.Hold = &model.LeaseHold{
			Hosts: names(l.hosts), From: tm(l.holdFrom), Start: tm(l.T), RunEnd: tm(l.runTo), To: tm(l.to),
			Pre: model.Duration(l.pre), Boot: model.Duration(l.boot), Resume: l.resume, Fate: fateNames[l.fate], Cause: l.cause,
			Staged: l.staged, Started: l.started, SuspendSent: l.suspendSent, Stopped: l.stopped, Holding: l.holding,
			Moves: movesRecord(l),
		}
	}
	for _, x := range l.xfers {
		r.Transfers = append(r.Transfers, model.TransferRef{Image: x.image, From: tm(x.from), To: tm(x.to)})
	}
	if b := l.next; b != nil {
		r.Next = &model.LeaseHold{Hosts: names(b.hosts), From: tm(b.from), Start: tm(b.T), RunEnd: tm(b.runTo), To: tm(b.to),
			Pre: model.Duration(b.pre), Resume: true}
	}
	for _, s := range l.segs {
		r.Segments = append(r.Segments, model.LeaseSegment{Host: s.h.Name, From: tm(s.from),
			OverheadFrom: tm(s.ovFrom), RunFrom: tm(s.runFrom), RunTo: tm(s.runTo), To: tm(s.to), Continued: s.cont})
	}
	return r
}

// Restore builds a calendar of hosts under policy p from a snapshot, as it
// was when the snapshot was taken: its clock is the snapshot's, so the next
// Advance carries out what fell due since. A record that names a host the
// calendar does not have, or is inconsistent, is an error wrapping
// ErrInvalid that names the lease.
func Restore(hosts []Host, p Policy, s Snapshot) (*Calendar, error) {
	c, err := New(hosts, p)
	if err != nil {
		return nil, err
	}
	if !s.Now.IsZero() {
		c.now = tick(s.Now)
	}
	// Removed hosts are kept, down, so that records may name them.
	c.all = map[string]*host{}
	for _, h := range c.hosts {
		c.all[h.Name] = h
	}
	for _, name := range s.Removed {
		h := c.all[name]
		if h == nil {
			if err := c.addHost(Host{Name: name}); err != nil {
				return nil, err
			}
			h = c.hosts[len(c.hosts)-1]
			c.all[name] = h
		}
		h.down = true
		delete(c.byName, name)
	}
	for _, u := range s.Projects {
		pr := c.project(u.Project)
		pr.usage, pr.at, pr.charged = u.DecayedCoreSeconds, tickz(u.At), u.ChargedCoreSeconds
	}
	for _, tr := range s.Transfers {
		if _, err := c.restoreTransfer(tr); err != nil {
			return nil, err
		}
	}
	recs := append([]model.LeaseRecord(nil), s.Leases...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	for i := range recs {
		if err := c.restoreLease(&recs[i]); err != nil {
			return nil, fmt.Errorf("restore lease %s: %w", recs[i].ID, err)
		}
	}
	c.all = nil
	c.reindex()
	c.needPass = s.Pass
	clear(c.dirty)
	clear(c.dirtyProj)
	return c, nil
}

func (c *Calendar) hostsNamed(ns []string) ([]*host, error) {
	if ns == nil {
		return nil, nil
	}
	out := make([]*host, len(ns))
	for i, n := range ns {
		h := c.all[n]
		if h == nil {
			return nil, fmt.Errorf("unknown host %q: %w", n, ErrInvalid)
		}
		out[i] = h
	}
	return out, nil
}

func (c *Calendar) restoreLease(r *model.LeaseRecord) error {
	in := Lease{ID: r.ID, Project: r.Project, Kind: r.Kind, Start: r.Start, Deadline: r.Deadline,
		Duration: r.Duration.D(), Preempt: Preempt(r.Preempt), Submitted: r.Submitted,
		Image: Image{Name: r.Image, Size: r.ImageBytes}}
	for _, m := range r.Members {
		in.Members = append(in.Members, Request{Resources: m.Resources, Labels: m.Labels, Workspace: m.Workspace, Spread: m.Spread})
	}
	if err := validate(&in); err != nil {
		return err
	}
	if c.leases[r.ID] != nil {
		return fmt.Errorf("listed twice: %w", ErrExists)
	}
	l := c.newLease(in, tick(r.Arrival))
	l.submitted = tick(r.Submitted)
	l.st, l.remaining, l.reason = r.State, int64(r.Remaining), r.Reason
	l.suspensions, l.requeues, l.charged, l.usedAdj = r.Suspensions, r.Requeues, r.ChargedCoreSeconds, r.ResizedCoreSeconds
	var err error
	if l.savedOn, err = c.hostsNamed(r.SavedOn); err != nil {
		return err
	}
	if l.savedOn != nil && len(l.savedOn) != len(l.Members) {
		return fmt.Errorf("saved on %d hosts for %d members: %w", len(l.savedOn), len(l.Members), ErrInvalid)
	}
	for _, s := range r.Segments {
		h := c.all[s.Host]
		if h == nil {
			return fmt.Errorf("segment on unknown host %q: %w", s.Host, ErrInvalid)
		}
		l.segs = append(l.segs, seg{h: h, from: tick(s.From), ovFrom: tick(s.OverheadFrom),
			runFrom: tick(s.RunFrom), runTo: tick(s.RunTo), to: tick(s.To), cont: s.Continued})
	}
	c.leases[l.ID] = l
	if h := r.Hold; h != nil {
		hosts, err := c.hostsNamed(h.Hosts)
		if err != nil {
			return err
		}
		if len(hosts) != len(l.Members) {
			return fmt.Errorf("hold on %d hosts for %d members: %w", len(hosts), len(l.Members), ErrInvalid)
		}
		from, T, runTo, to := tick(h.From), tick(h.Start), tick(h.RunEnd), tick(h.To)
		if !holdInOrder(from, T, runTo, to, int64(h.Pre), int64(h.Boot), h.Resume) {
			return fmt.Errorf("hold window [%s, %s) run [%s, %s) out of order: %w", fmtT(h.From), fmtT(h.To), fmtT(h.Start), fmtT(h.RunEnd), ErrInvalid)
		}
		if h.Boot < 0 || h.Boot > h.Pre || h.Boot > 0 && h.Resume {
			return fmt.Errorf("hold boot %v out of overhead %v (resume %v): %w", h.Boot.D(), h.Pre.D(), h.Resume, ErrInvalid)
		}
		l.held, l.resume, l.hosts = true, h.Resume, hosts
		l.holdFrom, l.T, l.runTo, l.to, l.pre, l.boot = from, T, runTo, to, int64(h.Pre), int64(h.Boot)
		switch h.Fate {
		case "":
			l.fate = fateEnd
		case "suspend":
			l.fate = fateSuspend
			c.noteStop(l)
		case "requeue":
			l.fate = fateRequeue
			c.noteStop(l)
		default:
			return fmt.Errorf("unknown fate %q: %w", h.Fate, ErrInvalid)
		}
		l.cause = h.Cause
		l.staged, l.started, l.suspendSent, l.stopped = h.Staged, h.Started, h.SuspendSent, h.Stopped
		if l.stopped && l.fate != fateEnd {
			return fmt.Errorf("hold stopped (shutting down) with fate %q: %w", h.Fate, ErrInvalid)
		}
		if err := c.restoreMoves(l, h.Moves); err != nil {
			return err
		}
		l.allocs, _ = c.desiredAllocs(l)
		for _, a := range l.allocs {
			if a.to > a.from {
				a.h.tl.add(a.from, a.to, a.v)
			}
			a.h.allocs = append(a.h.allocs, a)
		}
		// The chart's record of the current hold is the last segments;
		// an old record without them gets them back.
		if len(l.segs) < len(l.allocs) {
			l.segs = l.segs[:0]
			for _, a := range l.allocs {
				l.segs = append(l.segs, seg{h: a.h, from: from, ovFrom: max(T-l.pre, from), runFrom: T, runTo: runTo, to: to})
			}
		}
		p := c.project(l.Project)
		if p.quota != nil && to > from {
			p.qtl.add(from, to, l.qvec())
		}
		if h.Holding {
			p.runMilli += l.total[dCPU]
			l.holding = true
		}
		c.schedule(l)
	}
	for _, tr := range r.Transfers {
		from, to := tick(tr.From), tick(tr.To)
		i := slices.IndexFunc(c.xfers, func(x *transfer) bool { return x.image == tr.Image && x.from == from && x.to == to })
		if i < 0 {
			return fmt.Errorf("image transfer of %s over [%s, %s) not in the snapshot: %w", tr.Image, fmtT(tr.From), fmtT(tr.To), ErrInvalid)
		}
		c.xfers[i].users++
		l.xfers = append(l.xfers, c.xfers[i])
	}
	if n := r.Next; n != nil {
		if r.Hold == nil || r.Hold.Fate != "suspend" || l.Kind != Deadline {
			return fmt.Errorf("a booked resume without a hold that ends in a suspension: %w", ErrInvalid)
		}
		hosts, err := c.hostsNamed(n.Hosts)
		if err != nil {
			return err
		}
		from, T, runTo, to := tick(n.From), tick(n.Start), tick(n.RunEnd), tick(n.To)
		if n.RunEnd.IsZero() {
			runTo = to // a record from before shutdowns were modelled
		}
		if len(hosts) != len(l.Members) || !(from <= T && T <= runTo && runTo <= to && T-from == int64(n.Pre) && from >= l.to) {
			return fmt.Errorf("booked resume [%s, %s) on %d hosts out of order: %w", fmtT(n.From), fmtT(n.To), len(hosts), ErrInvalid)
		}
		c.addBooked(l, &booked{hosts: hosts, from: from, T: T, runTo: runTo, to: to, pre: int64(n.Pre)})
	}
	if r.Queued {
		c.enqueue(l)
	}
	return nil
}

// holdInOrder says whether a hold over [from, to) with its run [T, runTo)
// is in order: a fresh start's hold covers at least its boot (staging may
// come before it: stagesAhead), a resume's all of its overhead pre; a
// hold cut before its run began has an empty run [T, T) that may start
// inside its overhead.
func holdInOrder(from, T, runTo, to, pre, boot int64, resume bool) bool {
	cutEarly := runTo == T && from <= T
	ovFrom := T - pre
	if !resume {
		ovFrom = T - boot
	}
	return (from <= ovFrom || cutEarly) && T <= runTo && runTo <= to && from <= to
}

func (x *transfer) record() model.ImageTransfer {
	return model.ImageTransfer{Image: x.image, Size: model.ByteSize(x.size), Hosts: names(x.hosts), From: tm(x.from), To: tm(x.to), Used: tmz(x.used)}
}

// restoreTransfer books the link's transfer tr, as the snapshot had it.
func (c *Calendar) restoreTransfer(tr model.ImageTransfer) (*transfer, error) {
	hosts, err := c.hostsNamed(tr.Hosts)
	if err != nil {
		return nil, err
	}
	from, to := tick(tr.From), tick(tr.To)
	if len(hosts) == 0 || tr.Image == "" || to < from {
		return nil, fmt.Errorf("image transfer %q to %v over [%s, %s): %w", tr.Image, tr.Hosts, fmtT(tr.From), fmtT(tr.To), ErrInvalid)
	}
	for _, x := range c.xfers {
		if x.image == tr.Image && x.from == from && x.to == to {
			return nil, fmt.Errorf("image transfer of %s over [%s, %s) listed twice: %w", tr.Image, fmtT(tr.From), fmtT(tr.To), ErrInvalid)
		}
	}
	x := &transfer{image: tr.Image, size: int64(tr.Size), hosts: hosts, from: from, to: to, used: tickz(tr.Used)}
	c.xfers = append(c.xfers, x)
	sort.SliceStable(c.xfers, func(i, j int) bool { return c.xfers[i].from < c.xfers[j].from })
	return x, nil
}
