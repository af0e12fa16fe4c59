package calendar

import (
	"reflect"
	"testing"
	"time"

	"vgrid/internal/model"
)

// TestCloneSameDecisions: a clone answers the next submissions as the
// calendar does, and what is done to the clone leaves the calendar as it
// was (revision, leases, chart).
func TestCloneSameDecisions(t *testing.T) {
	hosts := []Host{
		{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}, Storage: true, BootTime: 5 * time.Second},
		{Name: "h2", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}, Cordoned: true},
		{Name: "h3", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 100 * model.GiB}, Labels: map[string]string{"gpu": "1"}},
	}
	c, err := New(hosts, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	now := epoch
	if err := c.AddVolume(Volume{Name: "p/data", Project: "p", Size: 10 * model.GiB, Host: "h1"}, now); err != nil {
		t.Fatal(err)
	}
	be := Lease{ID: "be", Project: "p", Kind: BestEffort, Members: []Request{member(3, model.GiB), member(2, model.GiB)}, Duration: 2 * time.Hour}
	ar := Lease{ID: "ar", Project: "q", Kind: Reservation, Start: now.Add(time.Hour), Members: []Request{member(2, model.GiB)}, Duration: time.Hour}
	for _, l := range []Lease{be, ar} {
		if _, err := c.Submit(l, now); err != nil {
			t.Fatal(err)
		}
		c.Advance(now)
	}
	now = now.Add(10 * time.Minute)
	c.Advance(now)
	rev := c.Revision()
	cl, err := c.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if cl.Revision() != rev {
		t.Fatalf("clone revision %d, want %d", cl.Revision(), rev)
	}
	if !reflect.DeepEqual(cl.Volumes(), c.Volumes()) {
		t.Fatalf("clone volumes %v, want %v", cl.Volumes(), c.Volumes())
	}
	from, to := epoch, epoch.Add(6*time.Hour)
	if a, b := cl.Gantt(from, to, 60), c.Gantt(from, to, 60); a != b {
		t.Fatalf("clone chart:\n%s\nwant:\n%s", a, b)
	}
	next := []Lease{
		{ID: "x1", Project: "p", Kind: Reservation, Start: now.Add(30 * time.Minute), Members: []Request{member(4, model.GiB)}, Duration: time.Hour},
		{ID: "x2", Project: "p", Kind: Immediate, Members: []Request{member(1, model.GiB)}, Duration: time.Hour},
		{ID: "x3", Project: "q", Kind: BestEffort, Members: []Request{member(4, model.GiB), member(4, model.GiB)}, Duration: time.Hour},
	}
	for _, l := range next {
		a1, e1 := c.Submit(l, now)
		a2, e2 := cl.Submit(l, now)
		if !reflect.DeepEqual(a1, a2) || (e1 == nil) != (e2 == nil) {
			t.Fatalf("%s: calendar %+v %v, clone %+v %v", l.ID, a1, e1, a2, e2)
		}
		if acts1, acts2 := c.Advance(now), cl.Advance(now); !reflect.DeepEqual(acts1, acts2) {
			t.Fatalf("%s: calendar acts %+v, clone %+v", l.ID, acts1, acts2)
		}
	}
	// And the other way: the clone's changes do not reach the calendar.
	c2, _ := New(hosts, DefaultPolicy())
	if _, err := c2.Submit(be, epoch); err != nil {
		t.Fatal(err)
	}
	snap := c2.Snapshot()
	cl2, _ := c2.Clone()
	if _, err := cl2.Submit(ar, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := cl2.Cancel("be", epoch); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c2.Snapshot(), snap) {
		t.Fatal("changes to the clone changed the calendar")
	}
}
