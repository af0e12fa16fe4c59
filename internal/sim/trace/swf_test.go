package trace

import (
	"strings"
	"testing"
	"time"
	"vgrid/internal/model"
)

// be returns the best-effort lease ReadSWF makes with default options, for
// tests to adjust.
func be(id string, submit, req, real time.Duration, nodes int, project string) Lease {
	return Lease{ID: id, Submit: submit, Kind: model.LeaseBestEffort, Duration: req, RealDuration: real,
		Nodes: nodes, CPUs: 1, MemoryMiB: 1024, Image: "NONE.img", ImageSizeMiB: 600,
		Preemptible: true, Project: project}
}

func TestReadSWF(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name      string
		in        string
		opt       SWFOptions
		want      []Lease
		wantStats SWFStats
		wantErr   string
	}{
		{
			name: "haizea mapping with comments and blank lines",
			in: "; Version: 2.2\n;\n\n" +
				"  1   10  5 100 4 -1 -1 4 200 -1 1 7 3 -1 -1 -1 -1 -1\n" +
				"\t2\t20\t0\t50\t8\t0.03\t-1\t2\t60\t-1\t0\t8\t3\t-1\t1\t-1\t-1\t-1\r\n",
			want: []Lease{
				be("1", 10*s, 200*s, 100*s, 4, "u7"),
				be("2", 20*s, 60*s, 50*s, 2, "u8"),
			},
			wantStats: SWFStats{Jobs: 2, Leases: 2},
		},
		{
			name:      "run time capped at requested time",
			in:        "1 0 0 300 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			want:      []Lease{be("1", 0, 200*s, 200*s, 1, "u7")},
			wantStats: SWFStats{Jobs: 1, Leases: 1, RunTimeCapped: 1},
		},
		{
			name:      "run time 0 becomes 1 s",
			in:        "1 0 0 0 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			want:      []Lease{be("1", 0, 200*s, 1*s, 1, "u7")},
			wantStats: SWFStats{Jobs: 1, Leases: 1, RunTimeZero: 1},
		},
		{
			name:      "unknown run time runs the full duration",
			in:        "1 0 0 -1 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			want:      []Lease{be("1", 0, 200*s, 0, 1, "u7")},
			wantStats: SWFStats{Jobs: 1, Leases: 1, RunTimeUnknown: 1},
		},
		{
			name:      "allocated processors when requested are missing",
			in:        "1 0 0 10 6 -1 -1 -1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			want:      []Lease{be("1", 0, 200*s, 10*s, 6, "u7")},
			wantStats: SWFStats{Jobs: 1, Leases: 1},
		},
		{
			name:      "prefer allocated",
			in:        "1 0 0 10 6 -1 -1 4 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			opt:       SWFOptions{PreferAllocated: true},
			want:      []Lease{be("1", 0, 200*s, 10*s, 6, "u7")},
			wantStats: SWFStats{Jobs: 1, Leases: 1},
		},
		{
			name: "procs per node rounds up, custom VM size",
			in:   "1 0 0 10 -1 -1 -1 9 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			opt:  SWFOptions{ProcsPerNode: 8, CPUsPerNode: 8, MemoryMiB: 2048, Image: "x.img", ImageSizeMiB: 4096, NotPreemptible: true},
			want: []Lease{{ID: "1", Kind: model.LeaseBestEffort, Duration: 200 * s, RealDuration: 10 * s, Nodes: 2,
				CPUs: 8, MemoryMiB: 2048, Image: "x.img", ImageSizeMiB: 4096, Project: "u7"}},
			wantStats: SWFStats{Jobs: 1, Leases: 1},
		},
		{
			name: "skips and their reasons",
			in: "1 -1 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n" + // no submit
				"2 0 30 -1 -1 -1 -1 1 200 -1 5 7 3 -1 -1 -1 -1 -1\n" + // cancelled
				"3 0 0 10 -1 -1 -1 -1 200 -1 1 7 3 -1 -1 -1 -1 -1\n" + // no procs
				"4 0 0 10 1 -1 -1 1 -1 -1 1 7 3 -1 -1 -1 -1 -1\n" + // no requested time
				"5 0 0 10 1 -1 -1 1 0 -1 1 7 3 -1 -1 -1 -1 -1\n", // requested time 0
			want:      nil,
			wantStats: SWFStats{Jobs: 5, SkippedNoSubmit: 1, SkippedCancelled: 1, SkippedNoProcs: 1, SkippedNoRequestedTime: 2},
		},
		{
			name: "run time as requested time",
			in: "4 0 0 10 1 -1 -1 1 -1 -1 1 7 3 -1 -1 -1 -1 -1\n" +
				"5 0 0 0 1 -1 -1 1 -1 -1 1 7 3 -1 -1 -1 -1 -1\n", // no run time either
			opt:       SWFOptions{RuntimeAsRequested: true},
			want:      []Lease{be("4", 0, 10*s, 10*s, 1, "u7")},
			wantStats: SWFStats{Jobs: 2, Leases: 1, SkippedNoRequestedTime: 1},
		},
		{
			name: "keep cancelled",
			in: "2 5 30 -1 -1 -1 -1 1 200 -1 5 7 3 -1 -1 -1 -1 -1\n" +
				"3 6 0 -1 -1 -1 -1 1 200 -1 5 7 3 -1 -1 -1 -1 -1\n",
			opt: SWFOptions{KeepCancelled: true},
			want: func() []Lease {
				a, b := be("2", 5*s, 200*s, 0, 1, "u7"), be("3", 6*s, 200*s, 0, 1, "u7")
				a.CancelAfter, b.CancelAfter = 30*s, 1*s
				return []Lease{a, b}
			}(),
			wantStats: SWFStats{Jobs: 2, Leases: 2, Cancelled: 2},
		},
		{
			name: "projects by user or group",
			in: "1 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n" +
				"2 0 0 10 1 -1 -1 1 200 -1 1 -1 3 -1 -1 -1 -1 -1\n" +
				"3 0 0 10 1 -1 -1 1 200 -1 1 -1 -1 -1 -1 -1 -1 -1\n",
			opt: SWFOptions{ProjectByGroup: false},
			want: []Lease{
				be("1", 0, 200*s, 10*s, 1, "u7"),
				be("2", 0, 200*s, 10*s, 1, "g3"),
				be("3", 0, 200*s, 10*s, 1, ""),
			},
			wantStats: SWFStats{Jobs: 3, Leases: 3},
		},
		{
			name:      "project by group",
			in:        "1 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			opt:       SWFOptions{ProjectByGroup: true},
			want:      []Lease{be("1", 0, 200*s, 10*s, 1, "g3")},
			wantStats: SWFStats{Jobs: 1, Leases: 1},
		},
		{
			name: "sorted by submit, ties in file order",
			in: "1 50 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n" +
				"2 20 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n" +
				"3 50 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			want: []Lease{
				be("2", 20*s, 200*s, 10*s, 1, "u7"),
				be("1", 50*s, 200*s, 10*s, 1, "u7"),
				be("3", 50*s, 200*s, 10*s, 1, "u7"),
			},
			wantStats: SWFStats{Jobs: 3, Leases: 3},
		},
		{
			name:      "fractional seconds",
			in:        "1 0.5 0 10.25 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			want:      []Lease{be("1", 500*time.Millisecond, 200*s, 10250*time.Millisecond, 1, "u7")},
			wantStats: SWFStats{Jobs: 1, Leases: 1},
		},
		{
			name:    "too few fields",
			in:      "; c\n1 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n2 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1\n",
			wantErr: "read swf: line 3: got 17 fields, want 18",
		},
		{
			name:    "too many fields",
			in:      "1 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1 9\n",
			wantErr: "read swf: line 1: got 19 fields, want 18",
		},
		{
			name:    "not a number",
			in:      "1 0 0 10 1 -1 -1 1 2h -1 1 7 3 -1 -1 -1 -1 -1\n",
			wantErr: `read swf: line 1: field 9 (requested time): "2h" is not a number`,
		},
		{
			name:    "infinity is not a number",
			in:      "1 0 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 Inf\n",
			wantErr: `read swf: line 1: field 18 (think time): "Inf" is not a number`,
		},
		{
			name:    "time out of range",
			in:      "1 1e12 0 10 1 -1 -1 1 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			wantErr: "read swf: line 1: field 2 (submit time): 1e12: out of range",
		},
		{
			name:    "fractional processors",
			in:      "1 0 0 10 1 -1 -1 1.5 200 -1 1 7 3 -1 -1 -1 -1 -1\n",
			wantErr: "read swf: line 1: field 8 (requested processors): 1.5: not a whole number",
		},
		{
			name:    "line too long",
			in:      "1 " + strings.Repeat("9", maxLine+1) + "\n",
			wantErr: "read swf: line 1: longer than",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st, err := ReadSWFStats(strings.NewReader(tt.in), tt.opt)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadSWFStats: %v", err)
			}
			checkLeases(t, got, tt.want)
			if st != tt.wantStats {
				t.Errorf("got stats %+v, want %+v", st, tt.wantStats)
			}
		})
	}
}

func checkLeases(t *testing.T, got, want []Lease) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d leases, want %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("lease %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestSWFStatsSkipped(t *testing.T) {
	st := SWFStats{SkippedNoSubmit: 1, SkippedCancelled: 2, SkippedNoProcs: 3, SkippedNoRequestedTime: 4, RunTimeZero: 100}
	if got, want := st.Skipped(), 10; got != want {
		t.Fatalf("got %d skipped, want %d", got, want)
	}
}
