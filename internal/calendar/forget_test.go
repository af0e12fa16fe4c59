package calendar

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func TestForget(t *testing.T) {
	c, err := New(oneHost(), DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	run := func(id string) Lease {
		return Lease{ID: id, Kind: BestEffort, Members: []Request{member(4, model.GiB)}, Duration: time.Hour}
	}
	for _, id := range []string{"a", "b"} {
		if _, err := c.Submit(run(id), epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	if err := c.Forget("a"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Forget of a running lease: %v, want ErrInvalid", err)
	}
	if err := c.Forget("b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Forget of a waiting lease: %v, want ErrInvalid", err)
	}
	if err := c.Forget("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Forget of an unknown lease: %v, want ErrNotFound", err)
	}
	c.Advance(epoch.Add(time.Hour))
	if err := c.Forget("a"); err != nil {
		t.Fatalf("Forget of a done lease: %v", err)
	}
	if _, ok := c.Get("a"); ok {
		t.Error("Get finds a forgotten lease")
	}
	if vs := c.Leases(); len(vs) != 1 || vs[0].ID != "b" || vs[0].State != StateRunning {
		t.Errorf("Leases after Forget: %+v, want b running", vs)
	}
	if err := c.Forget("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Forget: %v, want ErrNotFound", err)
	}
	if _, err := c.Finish("a", epoch.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Finish of a forgotten lease: %v, want ErrNotFound", err)
	}
}

// TestForgetChangesNothing replays random workloads (best-effort leases
// ending early or cancelled, reservations) twice, the second time
// forgetting every lease as soon as it is over: every action must be the
// same.
func TestForgetChangesNothing(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		a := forgetRun(t, seed, false)
		if b := forgetRun(t, seed, true); a != b {
			t.Fatalf("seed %d: forgetting finished leases changed the actions:\n%s\n---- forgetting:\n%s", seed, a, b)
		}
	}
}

func forgetRun(t *testing.T, seed int64, forget bool) string {
	rng := rand.New(rand.NewSource(seed))
	pol := DefaultPolicy()
	pol.Backfill = []Backfill{BackfillAggressive, BackfillConservative, BackfillNone}[rng.Intn(3)]
	pol.Placement = []Placement{FirstFit, Pack, Spread}[rng.Intn(3)]
	pol.Migrate = rng.Intn(2) == 0
	var hosts []Host
	for i := range 3 + rng.Intn(4) {
		hosts = append(hosts, Host{Name: fmt.Sprintf("h%d", i+1), Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB},
			SuspendRate: int64(model.GiB), ResumeRate: int64(model.GiB)})
	}
	c, err := New(hosts, pol)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	type early struct {
		at     time.Time
		id     string
		cancel bool
	}
	var timers []early
	over := map[string]bool{}
	note := func(as []Action) {
		for _, a := range as {
			fmt.Fprintf(&log, "%s %s %s %v %s\n", a.At.Sub(epoch), a.Kind, a.Lease, a.Hosts, a.Reason)
			if a.Kind == ActEnd {
				over[a.Lease] = true
			}
			if a.Kind == ActStart && rng.Intn(2) == 0 {
				timers = append(timers, early{at: a.At.Add(time.Duration(1+rng.Intn(50)) * time.Minute), id: a.Lease})
			}
		}
		if forget {
			for id := range over {
				if err := c.Forget(id); err != nil {
					t.Fatalf("seed %d: Forget %s: %v", seed, id, err)
				}
				delete(over, id)
			}
		}
	}
	now := epoch
	for i := range 120 {
		now = now.Add(time.Duration(rng.Intn(20)) * time.Minute)
		for j := 0; j < len(timers); j++ {
			tm := timers[j]
			if tm.at.After(now) {
				continue
			}
			timers = append(timers[:j], timers[j+1:]...)
			j--
			var as []Action
			if tm.cancel {
				as, err = c.Cancel(tm.id, tm.at)
			} else {
				as, err = c.Finish(tm.id, tm.at)
			}
			// (A lease already over is not found once forgotten: only
			// whether the call failed is logged.)
			fmt.Fprintf(&log, "%s end %s early: failed %v\n", tm.at.Sub(epoch), tm.id, err != nil)
			if err == nil {
				over[tm.id] = true
			}
			note(as)
		}
		note(c.Advance(now))
		id := fmt.Sprintf("l%d", i)
		n := 1 + rng.Intn(6)
		l := Lease{ID: id, Kind: BestEffort, Duration: time.Duration(10+rng.Intn(120)) * time.Minute}
		if rng.Intn(5) == 0 {
			l.Kind, l.Start = Reservation, now.Add(time.Duration(rng.Intn(180))*time.Minute)
		}
		for range n {
			l.Members = append(l.Members, member(int64(1+rng.Intn(2)), model.GiB))
		}
		_, err := c.Submit(l, now)
		fmt.Fprintf(&log, "%s submit %s: %v\n", now.Sub(epoch), id, err)
		if err == nil && l.Kind == BestEffort && rng.Intn(6) == 0 {
			timers = append(timers, early{at: now.Add(time.Duration(rng.Intn(60)) * time.Minute), id: id, cancel: true})
		}
		note(c.Advance(now))
	}
	for {
		next, ok := c.NextEvent()
		if !ok {
			break
		}
		note(c.Advance(next))
	}
	return log.String()
}
