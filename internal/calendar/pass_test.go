package calendar

import (
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
