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
