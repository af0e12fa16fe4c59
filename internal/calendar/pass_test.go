package calendar

import (
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

// TestPassMissesAreDominance: a lease that failed to start in a pass
// rules out only leases of the same members that are at least as many
// over a window at least as long. Four hosts of 1 CPU, all free at 00:01;
// a reservation holds h1 and h2 from 00:10. a (4 members, 1h) fits the
// free capacity but not its window and is planned after the reservation;
// b (1 member, 1h), behind it, starts on h3: a's miss does not rule it out.
// c (4 members, 2h) is ruled out by a's miss and does not start either.
func TestPassMissesAreDominance(t *testing.T) {
	var hosts []Host
	for _, n := range []string{"h1", "h2", "h3", "h4"} {
		hosts = append(hosts, Host{Name: n, Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB}})
	}
	c, err := New(hosts, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	one := Request{Resources: model.Resources{MilliCPU: 1000, Memory: model.GiB}}
	members := func(n int) []Request {
		ms := make([]Request, n)
		for i := range ms {
			ms[i] = one
		}
		return ms
	}
	if _, err := c.Submit(Lease{ID: "ar", Project: "p", Kind: Reservation, Members: members(2),
		Start: epoch.Add(10 * time.Minute), Duration: 2 * time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	at := epoch.Add(time.Minute)
	for i, l := range []struct {
		id string
		n  int
		d  time.Duration
	}{{"a", 4, time.Hour}, {"b", 1, time.Hour}, {"c", 4, 2 * time.Hour}} {
		if _, err := c.Submit(Lease{ID: l.id, Project: "p", Kind: BestEffort, Members: members(l.n), Duration: l.d,
			Preempt: PreemptNever, Submitted: at.Add(time.Duration(i) * time.Second)}, at); err != nil {
			t.Fatal(err)
		}
	}
	started := map[string][]string{}
	for _, a := range c.Advance(at) {
		if a.Kind == ActStart {
			started[a.Lease] = a.Hosts
		}
	}
	if len(started) != 1 || len(started["b"]) != 1 || started["b"][0] != "h3" {
		t.Fatalf("started %v, want b on h3 only", started)
	}
	if v, _ := c.Get("a"); !v.Planned {
		t.Fatalf("a: %+v, want a plan", v)
	}
}

// TestLinkMissBehindReservation: a best-effort lease behind the backfill
// reservation whose start failed for the shared link's sake (its image
// does not fit in the image cache of the host it was placed on) is tried
// again in the next pass, with or without the pass's shortcuts: there,
// once a reservation has taken that host, it is placed on another whose
// cache has room, and starts. The leases behind the reservation share one
// memo (bulkMemo), which said it had not fit and nothing was freed since.
func TestLinkMissBehindReservation(t *testing.T) {
	run := func(noMemo bool) (*Calendar, []Action) {
		pol := DefaultPolicy()
		pol.Gaps = false
		pol.Link = Link{Bandwidth: 100 * int64(model.MiB), Cache: int64(model.GiB)}
		hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * model.GiB}},
			{Name: "h2", Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * model.GiB}}}
		c, err := New(hosts, pol)
		if err != nil {
			t.Fatal(err)
		}
		c.noMemo = noMemo
		submit := func(l Lease, at time.Duration) {
			t.Helper()
			if _, err := c.Submit(l, epoch.Add(at)); err != nil {
				t.Fatalf("submit %s: %v", l.ID, err)
			}
		}
		// im1 holds 5 of the 8 cores of each host until 5h.
		submit(Lease{ID: "im1", Project: "a", Kind: Immediate, Duration: 5 * time.Hour,
			Members: []Request{member(5, model.GiB), member(5, model.GiB)}}, 0)
		// ar1 waits on h1 for its image from 3h: h1's cache is taken.
		submit(Lease{ID: "ar1", Project: "a", Kind: Reservation, Start: epoch.Add(3 * time.Hour), Duration: time.Hour,
			Members: []Request{member(1, model.GiB)}, Image: Image{Name: "ubuntu", Size: 800 * model.MiB}}, 0)
		// be1 cannot start before im1 ends: the backfill reservation.
		submit(Lease{ID: "be1", Project: "a", Kind: BestEffort, Duration: time.Hour,
			Members: []Request{member(4, model.GiB)}}, 0)
		// be2, behind it, fits on h1 now, but its image does not fit
		// in h1's cache beside ar1's.
		submit(Lease{ID: "be2", Project: "a", Kind: BestEffort, Duration: 30 * time.Minute,
			Members: []Request{member(2, model.GiB)}, Image: Image{Name: "debian", Size: 500 * model.MiB}}, 0)
		c.Advance(epoch.Add(time.Minute))
		if v, _ := c.Get("be2"); v.State != StateQueued {
			t.Fatalf("noMemo %v: be2 %s, want queued", noMemo, v.State)
		}
		// ar2 takes h1's free cores over be2's window: be2 goes to h2.
		submit(Lease{ID: "ar2", Project: "a", Kind: Reservation, Start: epoch.Add(10 * time.Minute), Duration: time.Hour,
			Members: []Request{member(3, model.GiB)}}, 2*time.Minute)
		return c, c.Advance(epoch.Add(2 * time.Minute))
	}
	for _, noMemo := range []bool{false, true} {
		c, _ := run(noMemo)
		if v, _ := c.Get("ar2"); len(v.Hosts) != 1 || v.Hosts[0] != "h1" {
			t.Fatalf("noMemo %v: ar2 on %v, want h1", noMemo, v.Hosts)
		}
		v, _ := c.Get("be2")
		if v.State != StateScheduled && v.State != StateRunning || len(v.Hosts) != 1 || v.Hosts[0] != "h2" {
			t.Errorf("noMemo %v: be2 %s on %v, want it to start on h2", noMemo, v.State, v.Hosts)
		}
		if err := c.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMixedMembersRetried: a lease of mixed members that did not fit is
// tried again though nothing was released, with or without the pass's
// shortcuts: its members are placed greedily, group by group (most cores
// first), so slots taken can let it fit. h1 and h2 have 4 cores and
// 16Gi, h3 4 cores and 8Gi; im1 holds h1's cores. m1's 4-core member
// goes first fit to h2, where its 12Gi one then has no room, nor on h3:
// it waits. im2 (1 core) then takes h2: the 4-core member goes to h3,
// the 12Gi one to h2, and m1 starts at once (at the next pass, which
// be1's arrival brings).
func TestMixedMembersRetried(t *testing.T) {
	for _, noMemo := range []bool{false, true} {
		pol := DefaultPolicy()
		pol.Gaps = false
		c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 16 * model.GiB}},
			{Name: "h2", Capacity: model.Resources{MilliCPU: 4000, Memory: 16 * model.GiB}},
			{Name: "h3", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}}}, pol)
		if err != nil {
			t.Fatal(err)
		}
		c.noMemo = noMemo
		for _, l := range []Lease{
			{ID: "im1", Project: "a", Kind: Immediate, Duration: 5 * time.Hour, Members: []Request{member(4, model.GiB)}},
			{ID: "m1", Project: "a", Kind: BestEffort, Duration: time.Hour,
				Members: []Request{member(1, 12*model.GiB), member(4, model.GiB)}},
		} {
			if _, err := c.Submit(l, epoch); err != nil {
				t.Fatal(err)
			}
		}
		c.Advance(epoch)
		if v, _ := c.Get("m1"); v.State != StateQueued {
			t.Fatalf("noMemo %v: m1 %s on %v, want it to wait", noMemo, v.State, v.Hosts)
		}
		at := epoch.Add(10 * time.Minute)
		for _, l := range []Lease{
			{ID: "im2", Project: "a", Kind: Immediate, Duration: time.Hour, Members: []Request{member(1, model.GiB)}},
			{ID: "be1", Project: "a", Kind: BestEffort, Duration: time.Hour, Members: []Request{member(4, 16*model.GiB)}},
		} {
			if _, err := c.Submit(l, at); err != nil {
				t.Fatal(err)
			}
		}
		c.Advance(at)
		if v, _ := c.Get("m1"); v.State != StateRunning || !v.Start.Equal(at) || strings.Join(v.Hosts, ",") != "h2,h3" {
			t.Errorf("noMemo %v: m1 %s from %s on %v, want running from 00:10 on h2,h3", noMemo, v.State, rel(v.Start), v.Hosts)
		}
	}
}
