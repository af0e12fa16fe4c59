// Command haizea replays Haizea's SDSC Blue Horizon workloads (HPDC 2008)
// with vgrid's calendar: the 30-day trace without reservations, then with
// injected advance reservations (10, 20, 30 % of the CPU-hours), with and
// without suspension, and prints one row per run for docs/simulation.md.
//
//	go run ./bench/haizea [-traces DIR] [-notice 24h|01h]
//
// The traces are found as every benchmark finds them (trace.Dir):
// -traces, else $VGRID_TRACES, else shared/traces above the working
// directory (../shared/traces beside the module root).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/sim"
	"vgrid/internal/sim/trace"
)

func main() {
	dir := flag.String("traces", "", "the shared traces directory (default: $VGRID_TRACES, else shared/traces above the working directory)")
	days := flag.String("days", "30days", "trace: 15days, 30days or 60days")
	size := flag.String("size", "2medium", "AR size: 1small, 2medium, 3large")
	dur := flag.String("dur", "2h", "mean AR duration: 1h, 2h, 3h, 4h")
	notice := flag.String("notice", "", "advance notice suffix (15days only): 01h, 03h, 06h, 12h, 24h; empty: the 24 h default")
	gaps := flag.Bool("gaps", true, "best effort in gaps (the calendar's default); false shows the starvation without them")
	flag.Parse()
	if *dir == "" {
		d, err := trace.Dir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "haizea:", err)
			os.Exit(1)
		}
		*dir = d
	}
	if err := run(*dir, *days, *size, *dur, *notice, *gaps); err != nil {
		fmt.Fprintln(os.Stderr, "haizea:", err)
		os.Exit(1)
	}
}

// starvationBound is the most the total completion time may grow over
// the run without ARs, with suspension: Haizea's published runs stayed
// within about 10 %.
const starvationBound = 0.10

func run(dir, days, size, dur, notice string, gaps bool) error {
	blue := filepath.Join(dir, "haizea-sdsc-blue")
	base, _, err := trace.Open(filepath.Join(blue, days+".swf"))
	if err != nil {
		return err
	}
	fmt.Printf("| ARs | suspension | leases | ARs accepted/rejected | preemptions | utilization | mean wait (s) | bounded slowdown | total completion (s) | vs no ARs | sim time |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|\n")
	var baseline, worst float64
	row := func(label string, leases []trace.Lease, suspend bool) error {
		cfg := sim.DefaultConfig()
		cfg.Policy.Suspend = suspend
		cfg.Policy.Gaps = gaps
		t0 := time.Now()
		res, err := sim.Run(leases, cfg)
		if err != nil {
			return err
		}
		s := res.Summary
		if baseline == 0 {
			baseline = s.TotalCompletionS
		}
		if suspend {
			worst = max(worst, s.TotalCompletionS/baseline-1)
		}
		fmt.Printf("| %s | %v | %d | %d/%d | %d | %.1f %% | %.0f | %.2f | %.0f | %+.1f %% | %s |\n", label, suspend, s.Leases,
			s.ARAccepted, s.ARRejected, s.Preemptions, 100*s.Utilization, s.MeanWaitS, s.MeanBoundedSlowdown,
			s.TotalCompletionS, 100*(s.TotalCompletionS/baseline-1), time.Since(t0).Round(time.Millisecond))
		return nil
	}
	if err := row("none", base, true); err != nil {
		return err
	}
	for _, work := range []string{"10", "20", "30"} {
		name := fmt.Sprintf("work_%s-dur_%s-size_%s", work, dur, size)
		if notice != "" {
			name += "-" + notice
		}
		path := filepath.Join(blue, "injected_leases", days, name+".lwf")
		if _, err := os.Stat(path); err != nil {
			continue // not every combination was published
		}
		ars, _, err := trace.Open(path)
		if err != nil {
			return err
		}
		leases := trace.Merge(trace.Prefix(append([]trace.Lease(nil), base...), "t"), trace.Prefix(ars, "ar"))
		for _, suspend := range []bool{true, false} {
			if err := row(work+" %", leases, suspend); err != nil {
				return err
			}
		}
	}
	verdict := "met"
	if worst > starvationBound {
		verdict = "MISSED"
	}
	fmt.Printf("\nstarvation bound (with suspension, total completion at most +%.0f %% over no ARs; gaps %v): worst %+.1f %%, %s\n",
		100*starvationBound, gaps, 100*worst, verdict)
	return nil
}
