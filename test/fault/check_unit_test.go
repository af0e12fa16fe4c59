package fault

import (
	"strings"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

// TestCheckCapacityMidMove runs check (d) on the records of a real
// calendar at every second of a live migration that the calendar decided
// after its victim's hold began (for a reservation): its source's chart
// segment is cut when the move is decided and goes on from there, which
// the check once took for a segment out of its hold. It must find
// nothing wrong, and still find a hold whose segment was tampered with.
func TestCheckCapacityMidMove(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hosts := []calendar.Host{
		{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}, BootTime: time.Second},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 6000, Memory: 8 * model.GiB}, BootTime: time.Second, MigrateRate: int64(model.GiB)},
	}
	pol := calendar.DefaultPolicy()
	pol.Migrate = true
	c, err := calendar.New(hosts, pol)
	if err != nil {
		t.Fatal(err)
	}
	req := func(cpu int64) []calendar.Request {
		return []calendar.Request{{Resources: model.Resources{MilliCPU: cpu, Memory: model.GiB}}}
	}
	// First fit puts be on h1 and im (too big for h1's rest) on h2: the
	// reservation needs all of h1, and h2 has room for be.
	for _, l := range []calendar.Lease{
		{ID: "be", Project: "a", Kind: calendar.BestEffort, Members: req(2000), Duration: time.Hour},
		{ID: "im", Project: "a", Kind: calendar.Immediate, Members: req(3000), Duration: 2 * time.Hour},
	} {
		if _, err := c.Submit(l, t0); err != nil {
			t.Fatal(err)
		}
		c.Advance(t0)
	}
	at := t0.Add(10 * time.Minute)
	adm, err := c.Submit(calendar.Lease{ID: "ar", Project: "a", Kind: calendar.Reservation, Members: req(4000), Start: at.Add(2 * time.Minute), Duration: time.Hour}, at)
	if err != nil {
		t.Fatal(err)
	}
	moved, seen := false, 0
	for now := at; now.Before(at.Add(3 * time.Minute)); now = now.Add(time.Second) {
		for _, a := range c.Advance(now) {
			if a.Kind == calendar.ActMigrate {
				moved = true
			}
		}
		rec, _ := c.Record("be")
		if rec.Hold == nil || len(rec.Hold.Moves) == 0 {
			continue
		}
		st := newStoreState()
		st.leases["be"] = rec
		for _, h := range hosts {
			st.nodes[h.Name] = model.Node{Name: h.Name, Capacity: h.Capacity}
		}
		r := newReport()
		checkCapacity(st, r)
		if len(r.fails) > 0 {
			t.Fatalf("at %s, moving: %s\nrecord: %+v", now.Sub(t0), strings.Join(r.fails, "; "), rec)
		}
		seen++
		if seen > 1 {
			continue
		}
		// A segment that does not match the hold is still found.
		bad := rec
		bad.Segments = append([]model.LeaseSegment(nil), rec.Segments...)
		bad.Segments[len(bad.Segments)-2].From = rec.Hold.From.Add(-time.Second)
		st.leases["be"] = bad
		r = newReport()
		checkCapacity(st, r)
		if len(r.fails) == 0 {
			t.Fatalf("at %s: a source segment moved before its hold was not found: %+v", now.Sub(t0), bad.Segments)
		}
	}
	if seen == 0 || !moved {
		t.Fatalf("no move in flight seen (admission %+v, migrate action %v)", adm, moved)
	}
	t.Logf("checked the records at %d instants of the move", seen)
}
