package metrics

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
	"vgrid/internal/model"
)

const s = time.Second

// mixed is a small run on 4 cores; the expected numbers are worked out in
// TestSummarize.
func mixed() []Record {
	return []Record{
		{ID: "a", Kind: model.LeaseBestEffort, Submit: 0, Start: 0, End: 100 * s, Nodes: 2, CPUs: 1},
		{ID: "b", Kind: model.LeaseBestEffort, Submit: 10 * s, Start: 100 * s, End: 200 * s, Nodes: 2, CPUs: 1},
		{ID: "c", Kind: model.LeaseReservation, Submit: 0, Start: 50 * s, End: 150 * s, Nodes: 1, CPUs: 2, Accepted: true},
		{ID: "d", Kind: model.LeaseReservation, Submit: 20 * s, Rejected: true, Nodes: 8, CPUs: 1},
		{ID: "e", Kind: model.LeaseBestEffort, Submit: 0, Start: 0, End: 5 * s, Nodes: 1, CPUs: 1},
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name     string
		records  []Record
		capacity float64
		want     Summary
	}{
		{name: "empty", want: Summary{}},
		{
			// used core-seconds: a 200 + b 200 + c 200 + e 5 = 605 over
			// 4 cores × 200 s; waits 0, 90, 0 (c is a reservation);
			// slowdowns 1, 190/100, max(1, 5/10).
			name: "mixed", records: mixed(), capacity: 4,
			want: Summary{Leases: 5, Completed: 4, Rejected: 1, Utilization: 605.0 / 800, SpanS: 200,
				MeanWaitS: 30, P50WaitS: 0, P90WaitS: 90, P99WaitS: 90, MaxWaitS: 90,
				MeanBoundedSlowdown: (1 + 1.9 + 1) / 3, TotalCompletionS: 200, ARAccepted: 1, ARRejected: 1},
		},
		{
			// Suspended for 100 s: it ran 200 s of its 300 s in the system.
			name: "segments", capacity: 2,
			records: []Record{{ID: "f", Kind: model.LeaseBestEffort, Submit: 0, Start: 0, End: 300 * s, Nodes: 1, CPUs: 1, Preemptions: 1,
				Segments: []Segment{{Host: "h1", Start: 0, End: 100 * s}, {Host: "h2", Start: 200 * s, End: 300 * s}}}},
			want: Summary{Leases: 1, Completed: 1, Utilization: 200.0 / 600, SpanS: 300, MeanBoundedSlowdown: 1.5,
				TotalCompletionS: 300, Preemptions: 1},
		},
		{
			// Three VMs, two of them in one segment: as if each had its own.
			name: "segment of several VMs", capacity: 4,
			records: []Record{{ID: "g", Kind: model.LeaseBestEffort, Submit: 0, Start: 0, End: 100 * s, Nodes: 3, CPUs: 1,
				Segments: []Segment{{Host: "h1", Start: 0, End: 100 * s, VMs: 2}, {Host: "h2", Start: 0, End: 100 * s}}}},
			want: Summary{Leases: 1, Completed: 1, Utilization: 300.0 / 400, SpanS: 100, MeanBoundedSlowdown: 1,
				TotalCompletionS: 100},
		},
		{
			name: "real run time and late first submission", capacity: 1,
			records: []Record{
				{ID: "g", Kind: model.LeaseImmediate, Submit: 1000 * s, Start: 1010 * s, End: 1110 * s, Nodes: 1, CPUs: 1, Real: 50 * s},
				{ID: "h", Kind: model.LeaseBestEffort, Submit: 1000 * s, Start: 1000 * s, End: 1010 * s, Nodes: 1, CPUs: 1},
			},
			want: Summary{Leases: 2, Completed: 2, Utilization: 110.0 / 110, SpanS: 110, MeanWaitS: 5, P50WaitS: 0,
				P90WaitS: 10, P99WaitS: 10, MaxWaitS: 10, MeanBoundedSlowdown: (110.0/50 + 1) / 2, TotalCompletionS: 10},
		},
		{
			name: "only reservations: completion from any record", capacity: 0,
			records: []Record{{ID: "r", Kind: model.LeaseReservation, Submit: 0, Start: 50 * s, End: 80 * s, Nodes: 1, CPUs: 1, Accepted: true}},
			want:    Summary{Leases: 1, Completed: 1, SpanS: 80, TotalCompletionS: 80, ARAccepted: 1},
		},
		{
			name: "nothing ran", capacity: 4,
			records: []Record{{ID: "q", Kind: model.LeaseBestEffort, Submit: 5 * s}, {ID: "r", Kind: model.LeaseReservation, Rejected: true}},
			want:    Summary{Leases: 2, Rejected: 1, ARRejected: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.records, tt.capacity)
			if !closeSummary(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func closeSummary(a, b Summary) bool {
	fa, fb := []float64{a.Utilization, a.SpanS, a.MeanWaitS, a.P50WaitS, a.P90WaitS, a.P99WaitS, a.MaxWaitS, a.MeanBoundedSlowdown, a.TotalCompletionS},
		[]float64{b.Utilization, b.SpanS, b.MeanWaitS, b.P50WaitS, b.P90WaitS, b.P99WaitS, b.MaxWaitS, b.MeanBoundedSlowdown, b.TotalCompletionS}
	for i := range fa {
		if math.Abs(fa[i]-fb[i]) > 1e-9 {
			return false
		}
	}
	a.Utilization, a.SpanS, a.MeanWaitS, a.P50WaitS, a.P90WaitS, a.P99WaitS, a.MaxWaitS, a.MeanBoundedSlowdown, a.TotalCompletionS = 0, 0, 0, 0, 0, 0, 0, 0, 0
	b.Utilization, b.SpanS, b.MeanWaitS, b.P50WaitS, b.P90WaitS, b.P99WaitS, b.MaxWaitS, b.MeanBoundedSlowdown, b.TotalCompletionS = 0, 0, 0, 0, 0, 0, 0, 0, 0
	return a == b
}

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want float64
	}{{0, 1}, {10, 1}, {11, 2}, {50, 5}, {90, 9}, {99, 10}, {100, 10}}
	for _, tt := range tests {
		if got := percentile(v, tt.p); got != tt.want {
			t.Errorf("p%v: got %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestRuns(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		want []Segment
	}{
		{name: "hosts", r: Record{Start: 1, End: 5, Nodes: 2, Hosts: []string{"a", "b"}}, want: []Segment{{Host: "a", Start: 1, End: 5}, {Host: "b", Start: 1, End: 5}}},
		{name: "no hosts", r: Record{Start: 1, End: 5, Nodes: 2}, want: []Segment{{Host: "", Start: 1, End: 5}, {Host: "", Start: 1, End: 5}}},
		{name: "segments win, empty ones dropped", r: Record{Start: 1, End: 5, Nodes: 1, Hosts: []string{"a"}, Segments: []Segment{{Host: "x", Start: 1, End: 2}, {Host: "y", Start: 3, End: 3}}}, want: []Segment{{Host: "x", Start: 1, End: 2}}},
		{name: "a segment of several VMs is one per VM", r: Record{Start: 1, End: 5, Nodes: 3, Segments: []Segment{{Host: "x", Start: 1, End: 5, VMs: 2}, {Host: "y", Start: 1, End: 5, VMs: 1}}},
			want: []Segment{{Host: "x", Start: 1, End: 5}, {Host: "x", Start: 1, End: 5}, {Host: "y", Start: 1, End: 5}}},
		{name: "rejected", r: Record{Start: 1, End: 5, Nodes: 1, Rejected: true}, want: nil},
		{name: "never ran", r: Record{Nodes: 1}, want: nil},
	}
	for _, tt := range tests {
		got := tt.r.Runs()
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			}
		}
	}
}

func TestSeries(t *testing.T) {
	one := []Record{{Kind: model.LeaseBestEffort, Submit: 0, Start: 50 * s, End: 150 * s, Nodes: 1, CPUs: 2}}
	got := Series(one, 4, 100*s)
	want := []Sample{{0, 0.25}, {100 * s, 0.5}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i].T != want[i].T || math.Abs(got[i].Utilization-want[i].Utilization) > 1e-12 {
			t.Errorf("sample %d: got %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []struct {
		rec  []Record
		cap  float64
		step time.Duration
	}{{one, 4, 0}, {one, 0, s}, {nil, 4, s}, {[]Record{{Submit: 5}}, 4, s}} {
		if got := Series(bad.rec, bad.cap, bad.step); got != nil {
			t.Errorf("Series(%v, %v, %v): got %v, want nil", bad.rec, bad.cap, bad.step, got)
		}
	}
}

// TestSeriesMatchesSummary checks that the length-weighted mean of the
// series is the summary's utilization, whatever the step.
func TestSeriesMatchesSummary(t *testing.T) {
	recs := append(mixed(), Record{Kind: model.LeaseBestEffort, Submit: 3 * s, Start: 7 * s, End: 190 * s, Nodes: 1, CPUs: 0.5,
		Segments: []Segment{{Host: "h", Start: 7 * s, End: 20 * s}, {Host: "h", Start: 150 * s, End: 190 * s}}})
	sum := Summarize(recs, 4)
	for _, step := range []time.Duration{time.Millisecond, s, 7 * s, 33 * s, 199 * s, 1000 * s} {
		ser := Series(recs, 4, step)
		var acc float64
		for i, p := range ser {
			end := time.Duration(sum.SpanS * float64(s))
			if i+1 < len(ser) {
				end = ser[i+1].T
			}
			acc += p.Utilization * (end - p.T).Seconds()
			if p.Utilization < -1e-9 || p.Utilization > 1+1e-9 {
				t.Errorf("step %v: sample %d out of [0, 1]: %v", step, i, p)
			}
		}
		if got := acc / sum.SpanS; math.Abs(got-sum.Utilization) > 1e-9 {
			t.Errorf("step %v: got mean %v, want %v", step, got, sum.Utilization)
		}
	}
}

func TestSeriesWidensStep(t *testing.T) {
	recs := []Record{{Kind: model.LeaseBestEffort, Start: 0, End: 10_000_000 * s, Nodes: 1, CPUs: 1}}
	got := Series(recs, 1, s)
	if len(got) > maxSamples || len(got) < maxSamples/2 {
		t.Fatalf("got %d samples, want at most %d", len(got), maxSamples)
	}
	if got[len(got)-1].Utilization != 1 {
		t.Errorf("got last sample %v, want utilization 1", got[len(got)-1])
	}
}

func TestTable(t *testing.T) {
	tab := Summarize(mixed(), 4).Table()
	lines := strings.Split(strings.TrimRight(tab, "\n"), "\n")
	if len(lines) != 11 {
		t.Fatalf("got %d lines, want 11:\n%s", len(lines), tab)
	}
	col := -1
	for _, l := range lines {
		i := strings.Index(l, "  ")
		j := i + len(l[i:]) - len(strings.TrimLeft(l[i:], " "))
		if col == -1 {
			col = j
		}
		if j != col {
			t.Errorf("value column at %d, want %d: %q", j, col, l)
		}
	}
	for _, want := range []string{
		"leases                 5 (4 ran, 1 rejected)",
		"utilization            75.6 % over 200 s (3m20s)",
		"wait p50 / p90 / p99   0.00 s / 90 s (1m30s) / 90 s (1m30s)",
		"total completion       200 s (3m20s)",
		"reservations rejected  1",
		"preemptions            0 (0 suspended, 0 requeued)",
		"migrations             0, 0.00 s in all",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}

func TestShortDur(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{90 * s, "1m30s"}, {3599 * s, "59m59s"}, {3600 * s, "1h00m"}, {47*time.Hour + 59*time.Minute, "47h59m"},
		{48 * time.Hour, "2d00h"}, {30*24*time.Hour + 5*time.Hour + 40*time.Minute, "30d06h"},
	}
	for _, tt := range tests {
		if got := shortDur(tt.in); got != tt.want {
			t.Errorf("shortDur(%v): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSummaryJSON(t *testing.T) {
	b, err := json.Marshal(Summary{Utilization: 0.5, MeanWaitS: 1, MeanBoundedSlowdown: 2, TotalCompletionS: 3, ARAccepted: 4, ARRejected: 5, Preemptions: 6, Leases: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"utilization":0.5`, `"mean_wait_s":1`, `"p90_wait_s":0`, `"mean_bounded_slowdown":2`, `"total_completion_s":3`, `"ar_accepted":4`, `"ar_rejected":5`, `"preemptions":6`, `"leases":7`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("got %s, want it to contain %s", b, key)
		}
	}
}

// TestMigrations: suspensions, requeues and migrations are summed apart,
// printed and written out.
func TestMigrations(t *testing.T) {
	recs := []Record{
		{ID: "a", Kind: model.LeaseBestEffort, Start: 0, End: 100 * s, Nodes: 1, CPUs: 1, Preemptions: 3, Suspensions: 2, Requeues: 1, Migrations: 1, MigrationTime: 7 * s},
		{ID: "b", Kind: model.LeaseBestEffort, Start: 0, End: 100 * s, Nodes: 2, CPUs: 1, Migrations: 2, MigrationTime: 65 * s},
	}
	sum := Summarize(recs, 4)
	if sum.Preemptions != 3 || sum.Suspensions != 2 || sum.Requeues != 1 || sum.Migrations != 3 || sum.MigrationS != 72 {
		t.Errorf("got %+v", sum)
	}
	tab := sum.Table()
	for _, want := range []string{"preemptions            3 (2 suspended, 1 requeued)", "migrations             3, 72 s (1m12s) in all"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"suspensions":2`, `"requeues":1`, `"migrations":3`, `"migration_s":72`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("got %s, want it to contain %s", b, key)
		}
	}
}
