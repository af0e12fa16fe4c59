package calendar

import (
	"fmt"
	"testing"
	"time"

	"vgrid/internal/model"
)

// TestBucketMemoSeesNewHosts: under pack, within one pass, a start that
// found no room in a bucket leaves a memo there; a host that enters the
// bucket afterwards (its score rose with a start) must still be looked
// at by the starts the memo covers. h2 and h3 run 2 of their 4 CPUs and
// hold a reservation of 2 more from 01:00: a lease of 1 CPU for 2 h fits
// only on the empty h1. Three such leases go to h1 one after the other
// (pack), the third after h1 has joined h2 and h3 in their bucket.
func TestBucketMemoSeesNewHosts(t *testing.T) {
	var hosts []Host
	for i := 1; i <= 3; i++ {
		hosts = append(hosts, Host{Name: fmt.Sprintf("h%d", i), Capacity: model.Resources{MilliCPU: 4000, Memory: 16 * model.GiB}})
	}
	pol := DefaultPolicy()
	pol.Placement = Pack
	c, err := New(hosts, pol)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	two := member(2, model.GiB)
	for _, h := range []string{"h2", "h3"} {
		l := c.newLease(Lease{ID: "run-" + h, Kind: BestEffort, Members: []Request{two}, Duration: 10 * time.Hour}, tick(epoch))
		c.leases[l.ID] = l
		c.commit(l, []*host{c.byName[h]}, tick(epoch), tick(epoch), tick(epoch.Add(10*time.Hour)), 0, 0, false)
		r := c.newLease(Lease{ID: "ar-" + h, Kind: Reservation, Members: []Request{two}, Start: epoch.Add(time.Hour), Duration: time.Hour}, tick(epoch))
		c.leases[r.ID] = r
		c.commit(r, []*host{c.byName[h]}, tick(epoch.Add(time.Hour)), tick(epoch.Add(time.Hour)), tick(epoch.Add(2*time.Hour)), 0, 0, false)
	}
	now := tick(epoch)
	c.passNo++
	for i := range 3 {
		l := c.newLease(Lease{ID: fmt.Sprintf("x%d", i), Kind: BestEffort, Members: []Request{member(1, model.GiB)}, Duration: 2 * time.Hour}, now)
		to := now + l.remaining
		want, wok := c.placeAt(l, now, to, true)
		got, gok := c.placeNow(l, now, to)
		if !wok || !gok || !sameHosts(want, got) || got[0].Name != "h1" {
			t.Fatalf("lease %d: placeNow %v %v, placeAt %v %v, want h1", i, names(got), gok, names(want), wok)
		}
		c.leases[l.ID] = l
		c.commit(l, got, now, now, to, 0, 0, false)
	}
}
