package control

import (
	"testing"
	"time"

	"vgrid/internal/model"
)

// Counter readings fold into runs: per process start, growing only; a
// final reading (no start time) goes to the workspace's latest run.
func TestAddRun(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	type reading struct {
		ws      string
		started time.Time
		cpu     float64
		added   float64
	}
	steps := []reading{
		{"a", t0, 1.5, 1.5},
		{"a", t0, 1.2, 0}, // an older reading of the same run
		{"a", t0, 4, 2.5},
		{"a", time.Time{}, 5, 1}, // final reading at suspension
		{"a", time.Time{}, 5, 0},
		{"a", t1, 0.5, 0.5}, // resumed: a new process, a new counter
		{"b", time.Time{}, 2, 2},
		{"a", time.Time{}, 3, 2.5}, // final of the second run
	}
	var u model.LeaseUsage
	for i, s := range steps {
		if got := addRun(&u, s.ws, s.started, s.cpu); got != s.added {
			t.Fatalf("step %d: added %v, want %v (%+v)", i, got, s.added, u.Runs)
		}
	}
	if got, want := u.CPUSeconds(), 5.0+3+2; got != want {
		t.Fatalf("total %v, want %v: %+v", got, want, u.Runs)
	}
	if len(u.Runs) != 3 {
		t.Fatalf("runs %+v, want 3", u.Runs)
	}
}

// Reserved counts each hold once (not once per host) up to now.
func TestReserved(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := model.LeaseRecord{
		Members: []model.LeaseMember{{Resources: model.Resources{MilliCPU: 500, Memory: model.GiB}}, {Resources: model.Resources{MilliCPU: 500, Memory: model.GiB}}},
		Segments: []model.LeaseSegment{
			{Host: "h1", From: t0, To: t0.Add(time.Hour)},
			{Host: "h2", From: t0, To: t0.Add(time.Hour)},
			{Host: "h1", From: t0.Add(2 * time.Hour), To: t0.Add(4 * time.Hour)},
		},
	}
	cs, ms := r.Reserved(t0.Add(3 * time.Hour))
	if cs != 2*3600 || ms != float64(2*model.GiB)*2*3600 {
		t.Fatalf("reserved %v core-s, %v byte-s; want 7200 and %v", cs, ms, float64(2*model.GiB)*2*3600)
	}
}
