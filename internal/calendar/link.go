package calendar

// Image transfers on a shared link. With Policy.Link set, the images of
// fresh starts go from the image repository to the hosts over one link of
// the given bandwidth, as transfers booked on it like slots: one at a time
// (serialised), or, with Multicast, one transfer serving every host of a
// lease that needs the image. The slots are not held while an image
// arrives: the hosts run other leases meanwhile, and a lease's hold begins
// when its guests boot.
//
// Reservations and deadline leases, planned ahead, book their transfers
// when they are admitted, each as late as it can be, ending by the time
// their guests must boot; when the link has no such room from now, the
// reservation is refused (a deadline lease starts later, if its deadline
// allows). Best-effort and immediate leases, which start as soon as they
// can, take the earliest room on the link from now: their guests boot when
// the last of their transfers ends (linkReady), and their hold begins then.
//
// A transfer of the same image to the same host that ends in time, booked
// for another lease or done already, is used again instead (one done
// already left the image in the host's cache, bounded by Link.Cache). A
// transfer that has not begun is given back when the last lease using it
// lets go of it.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"vgrid/internal/model"
)

// Link is the image repository's link to the hosts.
type Link struct {
	// Bandwidth in bytes/s; 0: no shared link (each host stages at its
	// own StageRate).
	Bandwidth int64
	// Measured takes the link's bandwidth from the hosts: the median of
	// their StageRates (how fast each fetched images from the repository,
	// which the server measures), Bandwidth while none is known. Bookings
	// made keep their times when the figure changes.
	Measured bool
	// Multicast sends one transfer to every host of a lease that needs
	// the image, instead of one per host.
	Multicast bool
	// Cache bounds the bytes of images a host keeps from transfers (0:
	// no bound). To make room for a new one, the least recently used
	// images that no admitted lease waits for are dropped; when that is
	// not enough, the reservation is refused.
	Cache int64
}

// transfer is an image going to hosts over the link over [from, to).
type transfer struct {
	image    string
	size     int64
	hosts    []*host
	from, to int64
	users    int   // leases using it
	used     int64 // the latest time a lease needed it (for the cache's LRU)
}

// linkPlan is what planLink found for a lease: when its staging begins,
// the transfers it uses (new ones not on the link yet), and the cached
// images to drop first.
type linkPlan struct {
	start int64
	xs    []*transfer
	evict []eviction
}

// eviction drops image transfer x's image from host h's cache.
type eviction struct {
	x *transfer
	h *host
}

// linkFor says whether l's image goes over the link (for a fresh start:
// a resume stages no image).
func (c *Calendar) linkFor(l *lease) bool {
	return c.linkBW > 0 && l.Image.Size > 0
}

// linkReady is the earliest time by >= now at which l's image can be on
// every one of hosts, and the plan of transfers that brings it there: a
// host that has it by now needs nothing; one a transfer already on its way
// will reach waits for it; the others get new transfers at the earliest
// room on the link (one for all of them with Multicast). ok is false when
// a host's image cache has no room for it (r says why).
func (c *Calendar) linkReady(l *lease, hosts []*host, now int64) (by int64, p linkPlan, r *Refusal) {
	by = now
	size := int64(l.Image.Size)
	d := xfer(size, c.linkBW)
	var need []*host
	for _, h := range distinctHosts(hosts) {
		if _, ok := c.cachedBy(l, h, now); ok {
			continue
		}
		// The earliest transfer of the image to h already booked.
		var on *transfer
		for _, x := range c.xfers {
			if x.image == l.Image.Name && slices.Contains(x.hosts, h) && (on == nil || x.to < on.to) {
				on = x
			}
		}
		if on != nil && on.to <= now+d {
			by = max(by, on.to)
			continue
		}
		need = append(need, h)
	}
	var added []*transfer
	groups := len(need)
	if c.pol.Link.Multicast && groups > 0 {
		groups = 1
	}
	for range groups {
		s := c.earliestOnLink(d, now, added)
		added = append(added, &transfer{from: s, to: s + d})
		by = max(by, s+d)
	}
	p, r = c.planLink(l, hosts, by, now)
	return by, p, r
}

// startOverLink commits a fresh start of l on hosts (placed from t) with
// its guests booting as soon as the link brings its image (linkReady) and
// its hold beginning then. It does nothing when a host's cache has no room
// for the image (r) or the hosts lack room from when it is there (ok
// false, by that time).
func (c *Calendar) startOverLink(l *lease, hosts []*host, t, boot int64) (by int64, ok bool, r *Refusal) {
	by, lp, r := c.linkReady(l, hosts, t)
	if r != nil {
		return by, false, r
	}
	T := by + boot
	if by > t && !c.fitsOn(l, hosts, by, T+c.span(l.remaining)) {
		return by, false, nil
	}
	c.commit(l, hosts, by, T, T+l.remaining, T-lp.start, boot, false)
	c.useLink(l, lp, by)
	return by, true, nil
}

// earliestOnLink is the earliest start s >= now of a transfer of length d
// on the link, with extra booked too.
func (c *Calendar) earliestOnLink(d, now int64, extra []*transfer) int64 {
	busy := make([]*transfer, 0, len(c.xfers)+len(extra))
	for _, x := range c.xfers {
		if x.to > now {
			busy = append(busy, x)
		}
	}
	busy = append(busy, extra...)
	sort.Slice(busy, func(i, j int) bool { return busy[i].from < busy[j].from })
	s := now
	for _, x := range busy {
		if x.from >= s+d {
			break // [s, s+d) ends before this and every later one begins
		}
		s = max(s, x.to)
	}
	return s
}

// linkBandwidth is the shared link's bandwidth under the policy: with
// Link.Measured, the median StageRate of the live hosts that have one.
func (c *Calendar) linkBandwidth() int64 {
	if !c.pol.Link.Measured {
		return c.pol.Link.Bandwidth
	}
	var rates []int64
	for _, h := range c.order {
		if h.StageRate > 0 {
			rates = append(rates, h.StageRate)
		}
	}
	if len(rates) == 0 {
		return c.pol.Link.Bandwidth
	}
	slices.Sort(rates)
	return rates[(len(rates)-1)/2]
}

// LinkBandwidth is the shared link's bandwidth in bytes/s now (0: no
// link): Policy.Link's, or the hosts' median stage rate (Link.Measured).
func (c *Calendar) LinkBandwidth() int64 { return c.linkBW }

// cachedBy says whether host h has l's image by time by: in its cache
// from the start, or by a transfer that ends in time.
func (c *Calendar) cachedBy(l *lease, h *host, by int64) (*transfer, bool) {
	if slices.Contains(h.Images, l.Image.Name) {
		return nil, true
	}
	for _, x := range c.xfers {
		if x.image == l.Image.Name && x.to <= by && slices.Contains(x.hosts, h) {
			return x, true
		}
	}
	return nil, false
}

// planLink plans the transfers of l's image to hosts ending by `by` (when
// its guests must boot), using again those that exist, as of now, and the
// room in the hosts' caches. Nothing is booked: useLink does it, or a
// refusal says why it cannot be.
func (c *Calendar) planLink(l *lease, hosts []*host, by, now int64) (linkPlan, *Refusal) {
	var p linkPlan
	var need []*host
	for _, h := range distinctHosts(hosts) {
		x, ok := c.cachedBy(l, h, by)
		switch {
		case ok && x != nil:
			// On its way or in the cache: l waits for it, or keeps it.
			if !slices.Contains(p.xs, x) {
				p.xs = append(p.xs, x)
			}
		case !ok:
			need = append(need, h)
		}
	}
	size := int64(l.Image.Size)
	for _, h := range need {
		ev, ok := c.cacheRoom(h, size, now, p.evict)
		if !ok {
			return linkPlan{}, &Refusal{Lease: l.ID, Reason: ReasonImageCache, Host: h.Name,
				Detail: fmt.Sprintf("image %s (%s) does not fit in host %s's image cache (%s) beside the images admitted leases wait for",
					l.Image.Name, l.Image.Size, h.Name, model.ByteSize(c.pol.Link.Cache))}
		}
		p.evict = append(p.evict, ev...)
	}
	d := xfer(size, c.linkBW)
	var groups [][]*host
	if c.pol.Link.Multicast && len(need) > 0 {
		groups = [][]*host{need}
	} else {
		for _, h := range need {
			groups = append(groups, []*host{h})
		}
	}
	// Each as late as it can be on the link as it stands, the new ones
	// included (tentatively).
	var added []*transfer
	for _, g := range groups {
		s, ok := c.latestOnLink(d, by, now, added)
		if !ok {
			return linkPlan{}, &Refusal{Lease: l.ID, Reason: ReasonTooSoon, From: tm(by - d), To: tm(by),
				Detail: fmt.Sprintf("image %s (%s) cannot reach %s over the shared link (%s/s, %v a transfer) by %s: the link is booked%s",
					l.Image.Name, l.Image.Size, strings.Join(names(g), ","), model.ByteSize(c.linkBW), time.Duration(d), fmtT(tm(by)), c.linkBusy(now, by, added))}
		}
		added = append(added, &transfer{image: l.Image.Name, size: size, hosts: g, from: s, to: s + d})
	}
	p.xs = append(p.xs, added...)
	p.start = by
	for _, x := range p.xs {
		if x.to > now {
			p.start = min(p.start, x.from)
		}
	}
	return p, nil
}

// linkPlanFor is planLink for reservation l starting at S on hosts, its
// guests booting boot before, and its overhead before S from then on:
// pre as it was, and an empty plan, when its image does not go over the
// link; else from the start of its staging.
func (c *Calendar) linkPlanFor(l *lease, hosts []*host, S, pre, boot, now int64) (int64, linkPlan, *Refusal) {
	if !c.linkFor(l) {
		return pre, linkPlan{}, nil
	}
	p, r := c.planLink(l, hosts, S-boot, now)
	if r != nil {
		return 0, linkPlan{}, r
	}
	return S - p.start, p, nil
}

// cacheRoom lists the cached images to drop from h so that one of size
// more fits in its cache (Link.Cache), least recently used first, among
// those no admitted lease waits for (and not already in planned); ok is
// false when they are not enough.
func (c *Calendar) cacheRoom(h *host, size, now int64, planned []eviction) ([]eviction, bool) {
	limit := c.pol.Link.Cache
	if limit <= 0 {
		return nil, true
	}
	gone := func(x *transfer) bool {
		return slices.ContainsFunc(planned, func(e eviction) bool { return e.x == x && e.h == h })
	}
	used := int64(0)
	var free []*transfer
	for _, x := range c.xfers {
		if !slices.Contains(x.hosts, h) || gone(x) {
			continue
		}
		used += x.size
		if x.users == 0 && x.to <= now {
			free = append(free, x)
		}
	}
	sort.SliceStable(free, func(i, j int) bool { return free[i].used < free[j].used })
	var out []eviction
	for used+size > limit && len(free) > 0 {
		used -= free[0].size
		out = append(out, eviction{free[0], h})
		free = free[1:]
	}
	return out, used+size <= limit
}

// latestOnLink is the latest start s >= now of a transfer of length d
// ending by `by` on the link, with extra booked too.
func (c *Calendar) latestOnLink(d, by, now int64, extra []*transfer) (int64, bool) {
	busy := make([]*transfer, 0, len(c.xfers)+len(extra))
	for _, x := range c.xfers {
		if x.to > now && x.from < by {
			busy = append(busy, x)
		}
	}
	for _, x := range extra {
		busy = append(busy, x)
	}
	sort.Slice(busy, func(i, j int) bool { return busy[i].from > busy[j].from })
	end := by
	for _, x := range busy {
		if x.to <= end-d {
			break // the room [end-d, end) is free of this and all earlier ones
		}
		if x.from < end {
			end = x.from
		}
	}
	if s := end - d; s >= now {
		return s, true
	}
	return 0, false
}

// linkBusy describes the link's bookings over [now, by), for refusals.
func (c *Calendar) linkBusy(now, by int64, extra []*transfer) string {
	var parts []string
	for _, x := range append(slices.Clone(c.xfers), extra...) {
		if x.to > now && x.from < by {
			parts = append(parts, fmt.Sprintf("%s to %s [%s, %s)", x.image, strings.Join(names(x.hosts), ","), fmtT(tm(x.from)), fmtT(tm(x.to))))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// useLink carries out plan p for l, whose guests boot at by: the cached
// images to drop are dropped, the new transfers booked, and l uses them
// all until its hold ends.
func (c *Calendar) useLink(l *lease, p linkPlan, by int64) {
	for _, e := range p.evict {
		e.x.hosts = slices.DeleteFunc(slices.Clone(e.x.hosts), func(h *host) bool { return h == e.h })
		if len(e.x.hosts) == 0 {
			c.xfers = slices.DeleteFunc(c.xfers, func(y *transfer) bool { return y == e.x })
		}
	}
	for _, x := range p.xs {
		if !slices.Contains(c.xfers, x) {
			c.xfers = append(c.xfers, x)
		}
		x.users++
		x.used = max(x.used, by)
	}
	l.xfers = p.xs
	sort.SliceStable(c.xfers, func(i, j int) bool { return c.xfers[i].from < c.xfers[j].from })
}

// dropLink lets go of l's transfers; one no lease uses any more and that
// has not begun by now leaves the link.
func (c *Calendar) dropLink(l *lease) {
	for _, x := range l.xfers {
		x.users--
		if x.users <= 0 && x.from > c.now {
			c.xfers = slices.DeleteFunc(c.xfers, func(y *transfer) bool { return y == x })
		}
	}
	l.xfers = nil
}

// Transfer is an image transfer booked on the shared link.
type Transfer struct {
	Image    string
	Hosts    []string
	From, To time.Time
	Users    int
}

// Transfers lists the link's transfers that end after from, by start.
func (c *Calendar) Transfers(from time.Time) []Transfer {
	var out []Transfer
	for _, x := range c.xfers {
		if x.to > tick(from) {
			out = append(out, Transfer{Image: x.image, Hosts: names(x.hosts), From: tm(x.from), To: tm(x.to), Users: x.users})
		}
	}
	return out
}

func distinctHosts(hs []*host) []*host {
	var out []*host
	for _, h := range hs {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
