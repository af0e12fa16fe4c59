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

// TestAlikeMembersShared: leases of alike members share one read-only
// array of them; resizing a member of one copies it first, so that the
// other keeps its size.
func TestAlikeMembersShared(t *testing.T) {
	c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 16000, Memory: 32 * model.GiB}}}, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	three := []Request{member(2, model.GiB), member(2, model.GiB), member(2, model.GiB)}
	for _, id := range []string{"a", "b"} {
		if _, err := c.Submit(Lease{ID: id, Kind: BestEffort, Members: three, Duration: time.Hour}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(epoch)
	a, b := c.leases["a"], c.leases["b"]
	if !a.sharedMembers || &a.Members[0] != &b.Members[0] || &a.groups[0].members[0] != &b.groups[0].members[0] {
		t.Fatal("alike members are not shared")
	}
	three[1].Resources.MilliCPU = 5000 // the caller's slice is not the calendar's
	small := model.Resources{MilliCPU: 1000, Memory: model.GiB}
	if _, err := c.Resize("a", 1, small, epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if a.Members[1].Resources != small || len(a.groups) != 2 {
		t.Errorf("a after the resize: %+v, %d groups", a.Members, len(a.groups))
	}
	for i, m := range b.Members {
		if m.Resources != member(2, model.GiB).Resources {
			t.Errorf("b's member %d is %+v after a's resize", i, m.Resources)
		}
	}
	if len(b.groups) != 1 || len(b.groups[0].members) != 3 || b.total[dCPU] != 6000 {
		t.Errorf("b's groups %+v, total %v", b.groups, b.total)
	}
}

// TestUntracked: a calendar told it will not be asked what changed makes
// the same decisions, and Changes says nothing.
func TestUntracked(t *testing.T) {
	run := func(untracked bool) (string, int) {
		c, err := New(oneHost(), DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if untracked {
			c.Untracked()
		}
		var log strings.Builder
		for i, id := range []string{"a", "b", "c"} {
			acts, err := c.Submit(Lease{ID: id, Kind: BestEffort, Project: "p", Members: []Request{member(4, model.GiB)}, Duration: time.Hour}, epoch.Add(time.Duration(i)*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&log, acts)
		}
		fmt.Fprintln(&log, c.Advance(epoch.Add(5*time.Hour)))
		recs, us := c.Changes()
		return log.String(), len(recs) + len(us)
	}
	a, na := run(false)
	b, nb := run(true)
	if a != b {
		t.Errorf("untracked decided otherwise:\n%s\n---- tracked:\n%s", b, a)
	}
	if na == 0 || nb != 0 {
		t.Errorf("Changes: %d records tracked, %d untracked; want some, none", na, nb)
	}
}
