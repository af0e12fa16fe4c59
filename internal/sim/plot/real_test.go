package plot

import (
	"vgrid/internal/model"
	"vgrid/internal/sim/trace/tracetest"

	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"vgrid/internal/sim/metrics"
	"vgrid/internal/sim/trace"
)

// toySchedule stands in for the simulator so that the plots can be drawn
// from real traces: hosts have one core; in submission order, a
// reservation takes hosts that are free at its start or is rejected, and a
// best-effort lease starts first-come first-served on the hosts that free
// up first. No backfilling, no preemption.
func toySchedule(leases []trace.Lease, hosts int) []metrics.Record {
	free := make([]time.Duration, hosts)
	idx := make([]int, hosts)
	var lastStart time.Duration
	recs := make([]metrics.Record, 0, len(leases))
	for _, l := range leases {
		r := metrics.Record{ID: l.ID, Kind: l.Kind, Project: l.Project, Submit: l.Submit, Nodes: l.Nodes,
			CPUs: l.CPUs, Requested: l.Duration, Real: l.Run()}
		if l.Nodes > hosts {
			r.Rejected = true
			recs = append(recs, r)
			continue
		}
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case free[a] < free[b]:
				return -1
			case free[a] > free[b]:
				return 1
			}
			return 0
		})
		chosen := idx[:l.Nodes]
		if l.Kind == model.LeaseReservation {
			r.Accepted = free[chosen[l.Nodes-1]] <= l.Start && l.Start >= l.Submit
			r.Rejected = !r.Accepted
			if r.Rejected {
				recs = append(recs, r)
				continue
			}
			r.Start = l.Start
		} else {
			r.Start = max(l.Submit, lastStart, free[chosen[l.Nodes-1]])
			lastStart = r.Start
		}
		r.End = r.Start + l.Run()
		for _, h := range chosen {
			free[h] = r.End
			r.Hosts = append(r.Hosts, fmt.Sprintf("node%d", h+1))
		}
		recs = append(recs, r)
	}
	return recs
}

// TestRealTracePlots draws Haizea's HPDC'08 setting (30 days of SDSC-BLUE
// with injected reservations on 144 one-core hosts) through the toy
// scheduler. Set VGRID_PLOT_DIR to keep the SVG files.
func TestRealTracePlots(t *testing.T) {
	dir := tracetest.Dir(t)
	be, _, err := trace.OpenWith(filepath.Join(dir, "haizea-sdsc-blue", "30days.swf"), trace.SWFOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ar, _, err := trace.Open(filepath.Join(dir, "haizea-sdsc-blue", "injected_leases", "30days", "work_10-dur_2h-size_2medium.lwf"))
	if err != nil {
		t.Fatal(err)
	}
	leases := trace.Merge(trace.Prefix(be, "be"), trace.Prefix(ar, "ar"))
	recs := toySchedule(leases, 144)
	sum := metrics.Summarize(recs, 144)
	t.Logf("30days + ARs, toy FCFS on 144 hosts:\n%s", sum.Table())
	if sum.Utilization <= 0 || sum.Utilization > 1 {
		t.Fatalf("got utilization %v, want in (0, 1]", sum.Utilization)
	}

	out := os.Getenv("VGRID_PLOT_DIR")
	if out == "" {
		out = t.TempDir()
	}
	write := func(name string, f func(*bytes.Buffer) error) {
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wellFormed(t, b.Bytes())
		if err := os.WriteFile(filepath.Join(out, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", name, b.Len())
	}
	write("utilization-30days.svg", func(b *bytes.Buffer) error {
		return UtilizationSVG(b, metrics.Series(recs, 144, time.Hour), "SDSC-BLUE 30 days + 10% ARs, toy FCFS, 144 nodes (hourly)")
	})
	write("gantt-30days-first2days.svg", func(b *bytes.Buffer) error {
		return GanttSVG(b, recs, GanttOptions{Title: "SDSC-BLUE 30 days + ARs, toy FCFS: days 0-2", From: 0, To: 48 * time.Hour})
	})
	write("gantt-30days.svg", func(b *bytes.Buffer) error {
		return GanttSVG(b, recs, GanttOptions{Title: "SDSC-BLUE 30 days + ARs, toy FCFS", Width: 1600})
	})
}

// TestKTHEndToEnd reads, schedules (toy), summarizes and plots all of KTH
// to show what the simulator's budget of 2 s leaves: reading, metrics and
// plots must be a small part of it.
func TestKTHEndToEnd(t *testing.T) {
	p := filepath.Join(tracetest.Dir(t), "KTH-SP2-1996-2.swf")
	t0 := time.Now()
	leases, _, err := trace.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	tRead := time.Since(t0)
	recs := toySchedule(leases, 100)
	tSched := time.Since(t0) - tRead
	sum := metrics.Summarize(recs, 100)
	series := metrics.Series(recs, 100, time.Hour)
	tMetrics := time.Since(t0) - tRead - tSched
	var u, g bytes.Buffer
	if err := UtilizationSVG(&u, series, "KTH-SP2"); err != nil {
		t.Fatal(err)
	}
	if err := GanttSVG(&g, recs, GanttOptions{Title: "KTH-SP2", NoTooltips: true}); err != nil {
		t.Fatal(err)
	}
	tPlot := time.Since(t0) - tRead - tSched - tMetrics
	t.Logf("KTH %d leases: read %v, toy schedule %v, summary+series %v, plots %v (%d + %d bytes)\n%s",
		len(leases), tRead, tSched, tMetrics, tPlot, u.Len(), g.Len(), sum.Table())
	if sum.Leases != 28489 {
		t.Errorf("got %d records, want 28489", sum.Leases)
	}
}
