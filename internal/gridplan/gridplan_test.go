package gridplan

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

var t0 = time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)

func hosts(n int) []calendar.Host {
	var hs []calendar.Host
	for i := 1; i <= n; i++ {
		hs = append(hs, calendar.Host{Name: "h" + string(rune('0'+i)), Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 50 * model.GiB},
			Storage: i == 1, BootTime: 5 * time.Second, SuspendRate: 100 << 20, ResumeRate: 100 << 20})
	}
	return hs
}

func req(cores int64) calendar.Request {
	return calendar.Request{Resources: model.Resources{MilliCPU: cores * 1000, Memory: model.GiB, Disk: model.GiB}}
}

func part(name string, n int, cores int64, linked bool) Part {
	l := calendar.Lease{ID: "p/" + name, Project: "p", Kind: calendar.Immediate, Duration: time.Hour}
	for i := 0; i < n; i++ {
		l.Members = append(l.Members, req(cores))
	}
	return Part{Name: name, Kind: "cluster", Lease: l, Linked: linked}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name string
		// setup submits the leases already there.
		setup     []calendar.Lease
		in        Input
		fits      bool
		start     time.Time // zero: not checked
		effect    string    // an action expected among the effects
		shortfall string    // a substring of the shortfall message
	}{
		{name: "empty grid fits at once", in: Input{Parts: []Part{part("a", 2, 1, true), part("b", 2, 1, true)}},
			fits: true, start: t0.Add(10 * time.Second)},
		{name: "reservation in the way: after it",
			setup: []calendar.Lease{{ID: "q/ar", Project: "q", Kind: calendar.Reservation, Start: t0.Add(30 * time.Minute), Duration: 2 * time.Hour,
				Members: []calendar.Request{req(2), req(2)}}},
			in:   Input{Parts: []Part{part("a", 2, 1, true), part("b", 2, 1, true)}},
			fits: true, start: t0.Add(150*time.Minute + 5*time.Second)}, // after its end and the boot
		{name: "best effort suspended",
			setup: []calendar.Lease{{ID: "q/be", Project: "q", Kind: calendar.BestEffort, Duration: 5 * time.Hour,
				Members: []calendar.Request{req(2), req(2)}}},
			in:   Input{Parts: []Part{part("a", 1, 2, true)}, NotBefore: t0.Add(time.Hour)},
			fits: true, start: t0.Add(time.Hour), effect: "suspend"},
		{name: "too large never fits", in: Input{Parts: []Part{part("a", 1, 1, true), part("big", 1, 3, true)}},
			shortfall: "big"},
		{name: "too many members never fit", in: Input{Parts: []Part{part("a", 5, 1, true)}},
			shortfall: "a"},
		{name: "volume too big", in: Input{Parts: []Part{part("a", 1, 1, true)}, Volumes: []Volume{{Name: "data", Project: "p", Size: 80 * model.GiB}}},
			shortfall: "volume data"},
		{name: "exact start refused when taken",
			setup: []calendar.Lease{{ID: "q/ar", Project: "q", Kind: calendar.Reservation, Start: t0.Add(time.Hour), Duration: time.Hour,
				Members: []calendar.Request{req(2), req(2)}}},
			in:        Input{Parts: []Part{part("a", 1, 1, true)}, NotBefore: t0.Add(time.Hour), Exact: true},
			shortfall: "no room"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := calendar.New(hosts(2), calendar.DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tt.setup {
				if _, err := c.Submit(l, t0); err != nil {
					t.Fatal(err)
				}
				c.Advance(t0)
			}
			snap, rev := c.Snapshot(), c.Revision()
			res, err := Evaluate(c, tt.in, t0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Snapshot(), snap) || c.Revision() != rev {
				t.Fatal("Evaluate changed the calendar")
			}
			if res.Fits != tt.fits {
				t.Fatalf("fits %v, want %v (shortfall %+v)", res.Fits, tt.fits, res.Shortfall)
			}
			if !tt.fits {
				if res.Shortfall == nil || !strings.Contains(res.Shortfall.Message, tt.shortfall) {
					t.Fatalf("shortfall %+v, want one naming %q", res.Shortfall, tt.shortfall)
				}
				return
			}
			if !tt.start.IsZero() && !res.Start.Equal(tt.start) {
				t.Errorf("start %s, want %s", res.Start, tt.start)
			}
			for _, p := range tt.in.Parts {
				a := res.Admissions[p.Name]
				if len(a.Hosts) != len(p.Lease.Members) || !a.Start.Equal(res.Start) {
					t.Errorf("part %s: %+v, want %d hosts from %s", p.Name, a, len(p.Lease.Members), res.Start)
				}
			}
			if tt.effect != "" {
				found := false
				for _, e := range res.Effects {
					found = found || e.Action == tt.effect
				}
				if !found {
					t.Errorf("effects %+v, want a %s", res.Effects, tt.effect)
				}
			}
			// Carried out on the calendar itself at the same revision, the
			// same submissions give the same admissions.
			for _, p := range tt.in.Parts {
				l := p.Lease
				if p.Linked {
					l.Kind, l.Start = calendar.Reservation, res.Start
				}
				l.Submitted = t0
				a, err := c.Submit(l, t0)
				if err != nil || !reflect.DeepEqual(a, res.Admissions[p.Name]) {
					t.Fatalf("part %s on the calendar: %+v %v, planned %+v", p.Name, a, err, res.Admissions[p.Name])
				}
			}
		})
	}
}
