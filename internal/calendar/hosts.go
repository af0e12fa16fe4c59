package calendar

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Hosts changing under the calendar: described anew (UpdateHost),
// cordoned (SetCordon), taken away (RemoveHost).

// UpdateHost changes what the calendar knows of a live host, as its agent
// describes it now: capacity, labels and times (its cordon is SetCordon's).
// The host keeps its holds and its volumes (their size is taken off the
// new disk capacity), even where a smaller capacity no longer has
// room for them: only what is placed afterwards sees the new host (and a
// waiting lease may start on one that grew). It advances the calendar to
// now and returns what is due. An unknown (or removed) host is an error
// wrapping ErrNotFound; a negative capacity or rate, or a boot time outside
// [0, MaxBootTime], one wrapping ErrInvalid.
func (c *Calendar) UpdateHost(h Host, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	adopted := c.adoptVolumes()
	if adopted {
		c.volumesChanged()
	}
	old := c.byName[h.Name]
	switch {
	case old == nil:
		return c.take(), fmt.Errorf("update host %s: %w", h.Name, ErrNotFound)
	case h.Capacity.MilliCPU < 0 || h.Capacity.Memory < 0 || h.Capacity.Disk < 0 || h.Capacity.Bandwidth < 0:
		return c.take(), fmt.Errorf("update host %s: negative capacity: %w", h.Name, ErrInvalid)
	case h.SuspendRate < 0 || h.ResumeRate < 0 || h.StageRate < 0 || h.MigrateRate < 0:
		return c.take(), fmt.Errorf("update host %s: negative rate: %w", h.Name, ErrInvalid)
	case h.BootTime < 0 || h.BootTime > MaxBootTime:
		return c.take(), fmt.Errorf("update host %s: boot time %v, want 0 to %v: %w", h.Name, h.BootTime, MaxBootTime, ErrInvalid)
	}
	h.Cordoned = old.Cordoned
	h.Labels = cloneLabels(h.Labels)
	h.Images = slices.Clone(h.Images)
	// Its volumes stay, and keep taking their size of its disk.
	h.volumes = old.volumes
	cp := vecOf(h.Capacity)
	for d, r := range c.pol.Overcommit.ratios() {
		cp[d] = overcommit(cp[d], r)
	}
	cp[dWS] = hostWorkspaces
	cp[dDisk] -= old.volDisk()
	if cp == old.cap && labelKey(h.Labels) == labelKey(old.Labels) && h.SuspendRate == old.SuspendRate &&
		h.ResumeRate == old.ResumeRate && h.StageRate == old.StageRate && h.BootTime == old.BootTime && h.MigrateRate == old.MigrateRate &&
		slices.Equal(h.Images, old.Images) && h.Storage == old.Storage {
		return c.take(), nil
	}
	old.Host, old.cap = h, cp
	c.reindex()
	c.advance(t)
	return c.take(), nil
}

// SetCordon cordons a live host (on) or lifts its cordon: a cordoned host
// keeps its holds and what they plan (starts, resumes, suspensions, ends)
// but gets no new hold: no admission, start from the queue, resume or
// re-placement picks it. Lifting the cordon lets waiting leases start on
// it. It advances the calendar to now and returns what is due. An unknown (or removed) host is an error
// wrapping ErrNotFound.
func (c *Calendar) SetCordon(name string, on bool, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	h := c.byName[name]
	if h == nil {
		return c.take(), fmt.Errorf("cordon %s: %w", name, ErrNotFound)
	}
	if h.Cordoned != on {
		h.Cordoned = on
		c.countCordoned()
		c.elig = map[string][]*host{}
		c.mask = map[string][]bool{}
		c.hostVer++
		c.released(nil)
		c.needPass = true
		c.advance(t)
	}
	return c.take(), nil
}

func (c *Calendar) countCordoned() {
	c.cordoned = 0
	for _, h := range c.order {
		if h.Cordoned {
			c.cordoned++
		}
	}
}

// RemoveHost takes a host away (it is down or drained). Best-effort leases
// on it are requeued; reservations that have not begun are placed again
// with the same run window if they can be (their overheads, staging and
// boot, as the hosts now are, if they can still begin in time; else as
// admitted), else they fail, as do running ones.
// Suspended leases whose memory image was on the host start again from
// scratch. Its volumes stay listed on it (Volumes), unavailable; a host
// added again under its name counts them in its disk from the next
// volume call (PlaceVolume, AddVolume, ResizeVolume, RemoveVolume) or
// UpdateHost. It advances the calendar to now and returns what is due.
func (c *Calendar) RemoveHost(name string, now time.Time) ([]Action, error) {
	c.rev++ // see Revision
	t := c.clamp(now)
	c.advance(t)
	h := c.byName[name]
	if h == nil {
		return c.take(), fmt.Errorf("remove host %s: %w", name, ErrNotFound)
	}
	// Moves to or from the host end first.
	var movers []*lease
	for _, a := range h.allocs {
		if len(a.l.moves) > 0 && !slices.Contains(movers, a.l) {
			movers = append(movers, a.l)
		}
	}
	sort.Slice(movers, func(i, j int) bool { return movers[i].ID < movers[j].ID })
	for _, l := range movers {
		c.dropMovesOn(l, h, t)
	}
	h.down = true
	delete(c.byName, name)
	c.reindex()
	affected := map[*lease]bool{}
	for _, a := range h.allocs {
		if a.to > t {
			affected[a.l] = true
		}
	}
	ls := make([]*lease, 0, len(affected))
	for l := range affected {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].ID < ls[j].ID })
	why := "host " + name + " removed"
	for _, l := range ls {
		c.mark(l)
		// Staging ahead of the hold has not begun it: the lease may
		// still be placed elsewhere in its window (and stage there).
		begun := l.staged && !l.stagedOutside() || l.started || l.holdFrom < t
		switch {
		case l.shuttingDown():
			// Its run is over: the guests' shutdown ends with the host.
			c.cut(l, t)
			c.endHold(l, t)
			if l.st != StateCancelled {
				l.st = StateDone
			}
			c.unholdKeep(l)
		case l.Kind == BestEffort:
			if begun {
				c.cut(l, t)
				c.emit(t, ActRequeue, l, why)
				if l.started {
					l.requeues++
				}
			} else {
				c.cut(l, l.holdFrom)
			}
			c.endHold(l, t)
			l.remaining, l.savedOn, l.preVer, l.usedAdj = l.run, nil, 0, 0
			l.st, l.reason = StateQueued, why
			c.unhold(l)
			c.enqueue(l)
		case begun:
			// Begun: restarted elsewhere for the rest of its window (its
			// guests boot again, from a fresh disk, since the old one is
			// on the lost host; the run still ends when it was to), if
			// there is room now; else it fails.
			end := l.runTo
			c.cut(l, t)
			c.endHold(l, t)
			hosts := l.hosts
			c.unhold(l)
			pre, boot := c.overheads(l)
			failed := "; no room elsewhere for the rest of its window"
			const tooLate = "; the shared link cannot bring its image to another host before its window ends"
			if end <= t+pre && c.linkFor(l) {
				failed = tooLate
			}
			if end > t+pre {
				// Where there is room now; it displaces no one (a
				// restart that preempted others is not done yet).
				if placed, ok := c.placeAt(l, t, end+c.shutdown(), true); ok {
					// It holds its slots from t, its run from t+pre; with
					// its image over the link, from when the image is
					// there (startOverLink), if that leaves a run.
					from, T, p := t, t+pre, pre
					var lp linkPlan
					var r *Refusal
					if c.linkFor(l) {
						var by int64
						by, lp, r = c.linkReady(l, placed, t)
						from, T, p = by, by+boot, by+boot-lp.start
					}
					switch {
					case r != nil:
						failed = fmt.Sprintf("; no room for its image on %s: %v", strings.Join(names(distinctHosts(placed)), ","), r)
					case T >= end:
						failed = tooLate
					default:
						// What it is owed is the rest of its window, so
						// that its run still ends at end: Extend and
						// Resize take the end of a run to be its start
						// plus what it is owed.
						l.st = StateScheduled
						l.remaining = end - T
						c.commit(l, placed, from, T, end, p, boot, false)
						if c.linkFor(l) {
							c.useLink(l, lp, from)
						}
						l.reason = why + "; restarted on " + strings.Join(names(placed), ",") + " for the rest of its window"
						continue
					}
				}
			}
			c.refund(l, t)
			l.hosts = hosts
			c.emit(t, ActEnd, l, why)
			l.st, l.reason = StateFailed, why+failed
		default:
			// Not begun: the same run window elsewhere, if there is
			// room, with the overheads of the hosts left if it can still
			// begin in time.
			from, T, runTo, to, pre, boot := l.holdFrom, l.T, l.runTo, l.to, l.pre, l.boot
			c.cut(l, l.holdFrom)
			c.unhold(l)
			if p, b := c.overheads(l); T-p >= t {
				from, pre, boot = T-c.holdPre(l, p, b), p, b
			}
			// Its image comes to the new hosts over the link when it
			// can in time; else (too late for a transfer) as before.
			recommit := func(hosts []*host) {
				if c.linkFor(l) {
					if lpre, lp, r := c.linkPlanFor(l, hosts, T, pre, boot, t); r == nil {
						c.commitHold(l, hosts, from, T, runTo, to, lpre, boot, false)
						c.useLink(l, lp, T-boot)
						return
					}
				}
				c.commitHold(l, hosts, from, T, runTo, to, pre, boot, false)
			}
			if hosts, ok := c.placeAt(l, from, to, false); ok {
				recommit(hosts)
			} else if hosts, vs, ok := c.preemptFor(l, from, to, t); ok {
				recommit(hosts)
				c.applyVictims(l, vs, t)
			} else {
				c.refund(l, t)
				l.st, l.reason = StateFailed, why+"; no room elsewhere in the same window"
			}
		}
	}
	// Suspended images on the host are lost.
	for _, l := range c.sortedLeases() {
		if l.st != StateSuspended {
			continue
		}
		for _, s := range l.savedOn {
			if s == h {
				c.mark(l)
				l.savedOn, l.preVer, l.usedAdj = nil, 0, 0
				l.remaining = l.run
				l.st, l.reason = StateQueued, why+" with its saved image"
				c.renew(l)
				l.requeues++
				break
			}
		}
	}
	c.released(nil)
	c.needPass = true
	c.advance(t)
	return c.take(), nil
}
