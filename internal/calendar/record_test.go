package calendar

import (
	"encoding/json"
	"reflect"
	"testing"

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
