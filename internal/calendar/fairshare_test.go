package calendar

import (
	"testing"
	"time"

	"vgrid/internal/model"
)

// Fair share on the basis of what was used: a project that held a host
// for hours but used little CPU goes before one that held it for less time
// but used all of it; on the basis of what was reserved it is the other
// way round.
func TestFairShareBasis(t *testing.T) {
	for _, tc := range []struct {
		basis Basis
		first string
	}{{BasisReserved, "heavy/q"}, {BasisUsed, "light/q"}} {
		p := DefaultPolicy()
		p.FairShare = &FairShare{Basis: tc.basis}
		c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, p)
		if err != nil {
			t.Fatal(err)
		}
		all := []Request{{Resources: model.Resources{MilliCPU: 2000, Memory: model.GiB}}}
		submit := func(id, project string, d time.Duration, at time.Time) {
			t.Helper()
			if _, err := c.Submit(Lease{ID: id, Project: project, Kind: BestEffort, Members: all, Duration: d}, at); err != nil {
				t.Fatal(err)
			}
		}
		// "light" holds the host for 2 h but uses 0.1 core; "heavy" holds
		// it for 1 h and uses both cores.
		submit("light/a", "light", 2*time.Hour, epoch)
		c.Advance(epoch)
		c.AddUsage("light", 0.1*7200, epoch.Add(2*time.Hour))
		c.Advance(epoch.Add(2 * time.Hour))
		submit("heavy/a", "heavy", time.Hour, epoch.Add(2*time.Hour))
		c.Advance(epoch.Add(2 * time.Hour))
		c.AddUsage("heavy", 2*3600, epoch.Add(3*time.Hour))
		// Both queue while a reservation holds the host; then one starts.
		submit("heavy/q", "heavy", time.Hour, epoch.Add(150*time.Minute))
		submit("light/q", "light", time.Hour, epoch.Add(150*time.Minute))
		var first string
		for _, a := range c.Advance(epoch.Add(3 * time.Hour)) {
			if a.Kind == ActStart && first == "" {
				first = a.Lease
			}
		}
		if first != tc.first {
			t.Errorf("basis %s: %s started first, want %s", tc.basis, first, tc.first)
		}
	}
	if _, err := New(nil, Policy{FairShare: &FairShare{Basis: "vibes"}}); err == nil {
		t.Error("unknown basis accepted")
	}
}

// FairShareUsage reads the usage as of a time without changing the
// calendar: two cores for an hour are 7,200 core-seconds.
func TestFairShareUsageReadOnly(t *testing.T) {
	c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(Lease{ID: "a/x", Project: "a", Kind: Immediate, Members: []Request{{Resources: model.Resources{MilliCPU: 2000}}}, Duration: 3 * time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	c.Changes()
	if got := c.FairShareUsage("a", epoch.Add(time.Hour)); got != 7200 {
		t.Fatalf("usage after 1h: %v, want 7200", got)
	}
	if recs, projs := c.Changes(); len(recs)+len(projs) != 0 {
		t.Fatalf("reading the usage changed %d leases and %d projects", len(recs), len(projs))
	}
}

// A pass that orders the queue by fair share reads the projects' usage
// without writing it: a host reporting a new cached image, which makes the
// queue be looked at again, rewrites no project's record (a restarted
// control plane's store stays as it was).
func TestFairSharePassWritesNoUsage(t *testing.T) {
	p := DefaultPolicy()
	p.FairShare = &FairShare{Basis: BasisReserved}
	h := Host{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}
	c, err := New([]Host{h}, p)
	if err != nil {
		t.Fatal(err)
	}
	all := []Request{{Resources: model.Resources{MilliCPU: 2000, Memory: model.GiB}}}
	if _, err := c.Submit(Lease{ID: "a/run", Project: "a", Kind: Immediate, Members: all, Duration: 3 * time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a/q", "b/q"} {
		if _, err := c.Submit(Lease{ID: id, Project: id[:1], Kind: BestEffort, Members: all, Duration: time.Hour}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	c.Changes()
	h.Images = []string{"img"}
	if _, err := c.UpdateHost(h, epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, projs := c.Changes(); len(projs) != 0 {
		t.Fatalf("a pass rewrote the usage of %d projects: %+v", len(projs), projs)
	}
}
