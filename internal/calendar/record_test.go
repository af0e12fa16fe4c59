package calendar

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

// recordsByID is every lease's record.
func recordsByID(c *Calendar) map[string]model.LeaseRecord {
	out := map[string]model.LeaseRecord{}
	for _, l := range c.leases {
		out[l.ID] = c.record(l)
	}
	return out
}

// checkChanges fails if a lease's record changed since *prev without
// Changes naming it, then moves *prev on.
func checkChanges(t *testing.T, c *Calendar, prev *map[string]model.LeaseRecord, seed int64, step int) {
	t.Helper()
	changed, _ := c.Changes()
	named := map[string]bool{}
	for _, r := range changed {
		named[r.ID] = true
	}
	now := recordsByID(c)
	for id, r := range now {
		if old, ok := (*prev)[id]; (!ok || !reflect.DeepEqual(old, r)) && !named[id] {
			t.Fatalf("seed %d step %d: lease %s changed but Changes did not name it:\nwas %+v\nnow %+v", seed, step, id, old, r)
		}
	}
	*prev = now
}

// restoreCheck restores c from its snapshot (through JSON, as the store
// keeps it), checks that the copy's snapshot is the same, and returns the
// copy.
func restoreCheck(t *testing.T, c *Calendar, seed int64, step int) *Calendar {
	t.Helper()
	snap := c.Snapshot()
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var hosts []Host
	for _, h := range c.order {
		hosts = append(hosts, h.Host)
	}
	r, err := Restore(hosts, c.pol, back)
	if err != nil {
		t.Fatalf("seed %d step %d: restore: %v", seed, step, err)
	}
	r.noMemo = c.noMemo
	if err := r.checkInvariants(); err != nil {
		t.Fatalf("seed %d step %d: restored calendar: %v", seed, step, err)
	}
	for _, h := range c.order {
		rh := r.byName[h.Name]
		for _, p := range append(append([]point(nil), h.tl.pts...), rh.tl.pts...) {
			if p.t >= c.now && h.tl.at(p.t) != rh.tl.at(p.t) {
				t.Fatalf("seed %d step %d: host %s at %s: table %v, restored %v", seed, step, h.Name, rel(tm(p.t)), h.tl.at(p.t), rh.tl.at(p.t))
			}
		}
		if c.free[h.pos] != r.free[rh.pos] {
			t.Fatalf("seed %d step %d: host %s free now %v, restored %v", seed, step, h.Name, c.free[h.pos], r.free[rh.pos])
		}
	}
	if c.now != r.now || c.queued != r.queued {
		t.Fatalf("seed %d step %d: clock/queued %d/%d, restored %d/%d", seed, step, c.now, c.queued, r.now, r.queued)
	}
	got, want := r.Snapshot(), snap
	if !reflect.DeepEqual(js(t, got), js(t, want)) {
		t.Fatalf("seed %d step %d: restored snapshot differs:\n got %s\nwant %s", seed, step, js(t, got), js(t, want))
	}
	return r
}

func js(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRestoreBoot: a hold's boot time is part of its record, so that a
// restored calendar starts the guests as early as the one saved would; a
// record whose boot does not fit in its overhead is refused.
func TestRestoreBoot(t *testing.T) {
	hosts := []Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}, StageRate: 10 * int64(model.MiB), BootTime: 2500 * time.Millisecond}}
	c, err := New(hosts, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	l := Lease{ID: "ar", Kind: Reservation, Members: []Request{member(2, model.GiB)}, Start: at(time.Hour), Duration: time.Hour,
		Image: Image{Name: "img", Size: 100 * model.MiB}}
	if _, err := c.Submit(l, epoch); err != nil {
		t.Fatal(err)
	}
	r, _ := c.Record("ar")
	// The reservation stages ahead of its hold: slots from its boot only.
	if h := r.Hold; h.Boot.D() != 3*time.Second || h.Pre.D() != 13*time.Second || !h.From.Equal(at(time.Hour-3*time.Second)) {
		t.Fatalf("hold %+v: want 3s of boot (2.5s rounded up) held, after 10s of staging ahead", h)
	}
	c = restoreCheck(t, c, 0, 0)
	var got []string
	for _, a := range c.Advance(at(3 * time.Hour)) {
		got = append(got, rel(a.At)+" "+string(a.Kind))
	}
	if want := "00:59:47 stage,00:59:57 start,02:00:00 end"; strings.Join(got, ",") != want {
		t.Errorf("actions %v, want %s", got, want)
	}
	snap := Snapshot{Now: epoch, Leases: []model.LeaseRecord{r}}
	snap.Leases[0].Hold.Boot = snap.Leases[0].Hold.Pre + model.Duration(time.Second)
	if _, err := Restore(hosts, DefaultPolicy(), snap); !errors.Is(err, ErrInvalid) {
		t.Errorf("boot longer than the overhead: got %v, want ErrInvalid", err)
	}
}

// A best-effort lease still booting when a reservation requeues it keeps
// no run in its record (start and end at the cut), and nothing starts it.
func TestRequeueWhileBooting(t *testing.T) {
	c, err := New([]Host{{Name: "h1", BootTime: 5 * time.Second, Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, Policy{Suspend: false})
	if err != nil {
		t.Fatal(err)
	}
	all := []Request{{Resources: model.Resources{MilliCPU: 2000, Memory: model.GiB}}}
	if _, err := c.Submit(Lease{ID: "be", Kind: BestEffort, Members: all, Duration: time.Hour}, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	at := epoch.Add(500 * time.Millisecond)
	if _, err := c.Submit(Lease{ID: "ar", Kind: Reservation, Start: epoch.Add(7 * time.Second), Members: all, Duration: time.Minute}, at); err != nil {
		t.Fatal(err)
	}
	r, _ := c.Record("be")
	if r.Hold == nil || r.Hold.Start.After(r.Hold.RunEnd) || r.Hold.Fate != "requeue" {
		t.Fatalf("requeued while booting: hold %+v", r.Hold)
	}
	for _, a := range c.Advance(epoch.Add(3 * time.Second)) {
		if a.Lease == "be" && a.Kind == ActStart {
			t.Fatalf("a requeued lease with no run left started: %+v", a)
		}
	}
	if _, err := Restore([]Host{{Name: "h1", BootTime: 5 * time.Second, Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}, Policy{Suspend: false}, c.Snapshot()); err != nil {
		t.Fatalf("restore: %v", err)
	}
}

// TestRequeueAtStart: a best-effort lease requeued at the instant it
// started (requeue-at-start.txt) no longer counts in its project's
// running cores (fair share), in the calendar as in one restored from its
// snapshot, which counts only the leases that hold slots.
func TestRequeueAtStart(t *testing.T) {
	c, err := New([]Host{{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB}}}, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(Lease{ID: "be1", Project: "a", Kind: BestEffort, Duration: 2 * time.Hour, Preempt: PreemptRequeue,
		Members: []Request{member(4, 2*model.GiB)}}, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	if _, err := c.Submit(Lease{ID: "ar1", Project: "b", Kind: Reservation, Start: epoch, Duration: time.Hour,
		Members: []Request{member(4, 2*model.GiB)}}, epoch); err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, a := range c.Advance(epoch) {
		acts = append(acts, string(a.Kind)+" "+a.Lease)
	}
	if got := strings.Join(acts, ", "); got != "requeue be1, start ar1" {
		t.Fatalf("actions %s, want be1's requeue and ar1's start", got)
	}
	r := restoreCheck(t, c, 0, 0)
	for i, cal := range []*Calendar{c, r} {
		if p := cal.projects["a"]; p.runMilli != 0 {
			t.Errorf("calendar %d: project a runs %d millicores, want 0", i, p.runMilli)
		}
		if rec, _ := cal.Record("be1"); rec.State != StateQueued || rec.Requeues != 1 {
			t.Errorf("calendar %d: be1 %s requeued %d times, want queued, once", i, rec.State, rec.Requeues)
		}
	}
}
