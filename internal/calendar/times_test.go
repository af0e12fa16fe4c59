package calendar

import (
	"errors"
	"testing"
	"time"

	"vgrid/internal/model"
)

// Times a lease names outside 1970..2200, runs longer than MaxDuration and
// extensions past it are refused as invalid: the calendar's arithmetic in
// nanoseconds (which ends in 2262) never wraps. A reservation for the year
// 2611 once started at once and took the whole host.
func TestTimesOutOfRange(t *testing.T) {
	c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	all := []Request{{Resources: model.Resources{MilliCPU: 2000}}}
	for _, l := range []Lease{
		{ID: "far", Kind: Reservation, Start: time.Date(2611, 1, 1, 0, 0, 0, 0, time.UTC), Members: all, Duration: time.Hour},
		{ID: "past", Kind: Reservation, Start: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), Members: all, Duration: time.Hour},
		{ID: "dl", Kind: Deadline, Deadline: time.Date(2262, 6, 1, 0, 0, 0, 0, time.UTC), Members: all, Duration: time.Hour},
		{ID: "long", Kind: Immediate, Members: all, Duration: 200 * 365 * 24 * time.Hour},
		{ID: "sub", Kind: BestEffort, Submitted: time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC), Members: all, Duration: time.Hour},
	} {
		if _, err := c.Submit(l, epoch); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", l.ID, err)
		}
	}
	if _, err := c.Submit(Lease{ID: "ok", Kind: Immediate, Members: all, Duration: time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{MaxDuration, -MaxDuration - time.Hour, time.Duration(1<<62 + 1)} {
		if _, err := c.Extend("ok", d, epoch); !errors.Is(err, ErrInvalid) {
			t.Errorf("extend by %v: %v, want ErrInvalid", d, err)
		}
	}
	if as := c.Advance(epoch.Add(time.Minute)); len(as) != 0 {
		t.Errorf("refused leases did something: %+v", as)
	}
}

// FuzzLeaseTimes submits and extends a lease with fuzzed times and
// lengths: no panic, the slot table stays consistent, and anything
// accepted starts no earlier than asked.
func FuzzLeaseTimes(f *testing.F) {
	f.Add(int64(3600), int64(3600), int64(60))
	f.Add(int64(20000000000), int64(1), int64(-1))
	f.Add(int64(-1e10), int64(1e15), int64(1e15))
	f.Add(int64(9e9), int64(9e9), int64(-9e9))
	f.Fuzz(func(t *testing.T, startS, durS, extS int64) {
		c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Unix(epoch.Unix()+startS%(1<<40), 0).UTC()
		dur := time.Duration(durS%(1<<40)) * time.Second
		l := Lease{ID: "r", Kind: Reservation, Start: start, Members: []Request{{Resources: model.Resources{MilliCPU: 1000}}}, Duration: dur}
		adm, err := c.Submit(l, epoch)
		if err != nil {
			return
		}
		if adm.Start.Before(start) || !adm.End.After(adm.Start) {
			t.Fatalf("admitted %s..%s for a start %s", adm.Start, adm.End, start)
		}
		_, _ = c.Extend("r", time.Duration(extS%(1<<40))*time.Second, epoch)
		for _, a := range c.Advance(epoch.Add(time.Hour)) {
			if a.Kind == ActStart && a.At.Before(start) {
				t.Fatalf("started at %s, before %s", a.At, start)
			}
		}
		if err := c.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}
