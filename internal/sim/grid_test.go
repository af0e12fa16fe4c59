package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"vgrid/internal/gridspec"
	"vgrid/internal/model"
	"vgrid/internal/sim/trace"
)

const simGrid = `name: trial
params: {workers: "4", cpu: "1"}
duration: 2h
clusters:
  - name: head
    roles: [{name: h, count: 1, image: x, quantum: {vcpus: 1, cpu: ${cpu}, memory: 512Mi}}]
  - name: work
    roles: [{name: w, count: ${workers}, image: x, quantum: {vcpus: 1, cpu: ${cpu}, memory: 512Mi}}]
`

// bgTrace is best-effort leases filling 8 hosts of 1 CPU: 16 of 1 h
// each, all submitted at 0, so half the hosts' time is taken for 2 h.
func bgTrace() []trace.Lease {
	var ls []trace.Lease
	for i := 0; i < 16; i++ {
		ls = append(ls, trace.Lease{ID: fmt.Sprintf("bg%02d", i), Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true})
	}
	return ls
}

func TestRunGrid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Hosts, cfg.HostMemory = 8, 2*model.GiB
	tests := []struct {
		name    string
		sets    []string
		fits    bool
		startAt time.Duration // the window's start, as an offset
		waits   bool          // the background waits longer with the grid
	}{
		// 5 members of 1 CPU on 8 hosts busy for 2 h: a reservation from
		// +1 s suspends best-effort leases to make room; they wait longer.
		{name: "small grid now", fits: true, startAt: 10*time.Minute + time.Second, waits: true},
		{name: "too big", sets: []string{"workers=8"}, fits: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := gridspec.Parse([]byte(simGrid), nil, tt.sets)
			if err != nil {
				t.Fatal(err)
			}
			run, err := RunGrid(bgTrace(), cfg, g, 10*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if run.Plan.Fits != tt.fits {
				t.Fatalf("fits %v, want %v: %+v", run.Plan.Fits, tt.fits, run.Plan.Shortfall)
			}
			rep := run.Report("trial", cfg.Hosts)
			if !tt.fits {
				if !strings.Contains(rep, "does not fit") {
					t.Fatalf("report:\n%s", rep)
				}
				return
			}
			if got := offset(run.Plan.Start); got != tt.startAt {
				t.Errorf("start +%s, want +%s", got, tt.startAt)
			}
			// The grid's leases ran in the second run, from the planned start.
			ran := 0
			for _, r := range run.With.Records {
				if r.Project == GridProject {
					ran++
					if r.Start != tt.startAt || r.End != tt.startAt+2*time.Hour {
						t.Errorf("grid lease %s ran %s..%s, planned +%s for 2h", r.ID, r.Start, r.End, tt.startAt)
					}
				}
			}
			if ran != 2 {
				t.Errorf("%d grid leases ran, want 2", ran)
			}
			if tt.waits && !(run.WithBG.MeanWaitS > run.BaseBG.MeanWaitS || run.WithBG.TotalCompletionS > run.BaseBG.TotalCompletionS) {
				t.Errorf("background: mean wait %.0f s without, %.0f s with the grid; completion %.0f, %.0f", run.BaseBG.MeanWaitS, run.WithBG.MeanWaitS,
					run.BaseBG.TotalCompletionS, run.WithBG.TotalCompletionS)
			}
			if !strings.Contains(rep, "starts at +10m1s") || !strings.Contains(rep, "mean wait") {
				t.Errorf("report:\n%s", rep)
			}
			t.Logf("\n%s", rep)
		})
	}
}
