package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
	"vgrid/internal/control"
	"vgrid/internal/gridplan"
	"vgrid/internal/gridspec"

	"github.com/spf13/cobra"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sim"
	"vgrid/internal/sim/metrics"
	"vgrid/internal/sim/plot"
	"vgrid/internal/sim/trace"
)

func newSimCmd() *cobra.Command {
	var (
		tracePath, inject, backfill, placement, output, plotDir, hostMem string
		hosts, injectVM                                                  int
		hostCPUs                                                         float64
		suspend, keepCancelled, gantt, migrate                           bool
		suspendRate, resumeRate, stageRate, migrateRate                  string
		gf                                                               gridFileFlags
		gridAt                                                           time.Duration
	)
	c := &cobra.Command{
		Use:   "sim --trace FILE",
		Short: "Replay a workload trace on a modelled grid with the real lease calendar, in virtual time",
		Long: `Replay a trace (SWF from the Parallel Workloads Archive, Haizea's LWF XML,
or Haizea's AR injection files; .gz is read too) against a modelled grid of
identical hosts, with the same calendar code the server schedules with.
Prints utilization, waits, bounded slowdown (10 s bound), AR acceptance,
preemptions (suspensions, requeues), live migrations and total completion
time; --plot-dir writes a utilization plot and a Gantt chart as SVG.

With --migrate, a reservation or deadline lease that needs a host where a
best-effort lease runs first tries to live-migrate that lease to another
host with room for the rest of its run (taking its memory over
--migrate-rate, plus 1 s); only where none has room, or there is not
enough time, is the lease suspended (or requeued).

The defaults model Haizea's SDSC Blue Horizon experiments: 144 hosts with
1 CPU and 1 GiB each; every SWF job is a best-effort lease of 1 CPU and
1 GiB per requested node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tracePath == "" && gf.file == "" {
				return fmt.Errorf("--trace is required (or --grid, to try a grid on an empty modelled resource)")
			}
			if injectVM < 1 {
				return fmt.Errorf("--inject-vm %d: want 1 or more", injectVM)
			}
			opt := trace.SWFOptions{KeepCancelled: keepCancelled}
			var leases []trace.Lease
			var err error
			if tracePath != "" {
				if leases, _, err = trace.OpenWith(tracePath, opt); err != nil {
					return err
				}
			}
			if inject != "" {
				ars, _, err := trace.Open(inject)
				if err != nil {
					return fmt.Errorf("--inject: %w", err)
				}
				leases = trace.Merge(trace.Prefix(leases, "t"), trace.Prefix(trace.Coarsen(ars, injectVM), "ar"))
			}
			cfg := sim.DefaultConfig()
			cfg.Hosts, cfg.HostCPUs = hosts, hostCPUs
			if cfg.HostMemory, err = model.ParseByteSize(hostMem); err != nil {
				return fmt.Errorf("--host-memory: %w", err)
			}
			for _, r := range []struct {
				flag, v string
				dst     *int64
			}{{"--suspend-rate", suspendRate, &cfg.SuspendRate}, {"--resume-rate", resumeRate, &cfg.ResumeRate}, {"--stage-rate", stageRate, &cfg.StageRate},
				{"--migrate-rate", migrateRate, &cfg.MigrateRate}} {
				b, err := model.ParseByteSize(r.v)
				if err != nil {
					return fmt.Errorf("%s: %w", r.flag, err)
				}
				if b < 0 {
					return fmt.Errorf("%s: %s is negative", r.flag, r.v)
				}
				*r.dst = int64(b)
			}
			cfg.Policy.Suspend, cfg.Policy.Migrate = suspend, migrate
			switch calendar.Backfill(backfill) {
			case calendar.BackfillNone, calendar.BackfillConservative, calendar.BackfillAggressive:
				cfg.Policy.Backfill = calendar.Backfill(backfill)
			default:
				return fmt.Errorf("--backfill %q: want none, conservative or aggressive", backfill)
			}
			switch calendar.Placement(placement) {
			case calendar.FirstFit, calendar.Pack, calendar.Spread:
				cfg.Policy.Placement = calendar.Placement(placement)
			default:
				return fmt.Errorf("--placement %q: want first-fit, pack or spread", placement)
			}
			if gf.file != "" {
				return simGrid(cmd, gf, gridAt, leases, cfg, tracePath, output, plotDir)
			}
			t0 := time.Now()
			res, err := sim.Run(leases, cfg)
			if err != nil {
				return err
			}
			wall := time.Since(t0)
			if plotDir != "" {
				if err := writePlots(plotDir, res); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(out, res.Summary)
			}
			fmt.Fprintf(out, "trace %s: %d leases on %d hosts × %.4g CPU, %s; backfill %s, suspension %v, migration %v; simulated in %s\n\n",
				filepath.Base(tracePath), len(leases), cfg.Hosts, cfg.HostCPUs, cfg.HostMemory, cfg.Policy.Backfill, cfg.Policy.Suspend,
				cfg.Policy.Migrate, wall.Round(time.Millisecond))
			fmt.Fprintln(out, res.Summary.Table())
			if gantt && res.Gantt != "" {
				fmt.Fprintln(out, res.Gantt)
			}
			if plotDir != "" {
				fmt.Fprintf(out, "plots: %s, %s\n", filepath.Join(plotDir, "utilization.svg"), filepath.Join(plotDir, "gantt.svg"))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&gf.file, "grid", "", "a grid file to try on the modelled resource (with the trace as background): when it would start, and its effect on the trace")
	f.DurationVar(&gridAt, "grid-at", 0, "with --grid: when the grid is asked for, from the trace's start")
	f.StringVar(&gf.values, "values", "", "with --grid: a YAML file of the grid's parameter values")
	f.StringArrayVar(&gf.sets, "set", nil, "with --grid: a parameter value NAME=VALUE (repeatable)")
	f.StringVar(&tracePath, "trace", "", "workload trace: .swf, .lwf (XML or AR injection), optionally .gz")
	f.StringVar(&inject, "inject", "", "advance reservations to add (Haizea injection file or LWF)")
	f.IntVar(&injectVM, "inject-vm", 1, "make the injected reservations' VMs this many times larger (CPUs, memory) and as many times fewer")
	f.IntVar(&hosts, "hosts", 144, "number of hosts")
	f.Float64Var(&hostCPUs, "host-cpus", 1, "CPUs per host")
	f.StringVar(&hostMem, "host-memory", "1Gi", "memory per host")
	f.BoolVar(&suspend, "suspend", true, "preempt best-effort leases by suspending them (false: requeue them)")
	f.StringVar(&backfill, "backfill", "aggressive", "none, conservative or aggressive (EASY)")
	f.StringVar(&placement, "placement", "first-fit", "first-fit, pack or spread")
	f.StringVar(&suspendRate, "suspend-rate", "0", "bytes/s a host writes when suspending (0: instantaneous)")
	f.StringVar(&resumeRate, "resume-rate", "0", "bytes/s a host reads when resuming (0: instantaneous)")
	f.StringVar(&stageRate, "stage-rate", "0", "bytes/s of image staging to a host (0: instantaneous)")
	f.BoolVar(&migrate, "migrate", false, "live-migrate a best-effort lease in a reservation's way to another host where one has room, before suspending it")
	f.StringVar(&migrateRate, "migrate-rate", "0", "bytes/s of live migration from or to a host (0: the calendar's default, 100Mi)")
	f.BoolVar(&keepCancelled, "keep-cancelled", false, "keep SWF jobs cancelled while queued, withdrawn after their wait (Haizea 2008)")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.StringVar(&plotDir, "plot-dir", "", "write utilization.svg and gantt.svg here (with --grid: grid-gantt.svg, the grid's window with the background)")
	f.BoolVar(&gantt, "gantt", false, "print the calendar's text Gantt of the first day (grids of up to 16 hosts)")
	return c
}

func writePlots(dir string, res sim.Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	uf, err := os.Create(filepath.Join(dir, "utilization.svg"))
	if err != nil {
		return err
	}
	defer uf.Close()
	span := time.Duration(res.Summary.SpanS * float64(time.Second))
	step := max(span/600, time.Minute)
	if err := plot.UtilizationSVG(uf, metrics.Series(res.Records, res.Capacity, step), "utilization"); err != nil {
		return err
	}
	gf, err := os.Create(filepath.Join(dir, "gantt.svg"))
	if err != nil {
		return err
	}
	defer gf.Close()
	return plot.GanttSVG(gf, res.Records, plot.GanttOptions{Title: "leases by host"})
}

// simGrid tries a grid on the modelled resource, the trace as background:
// two runs, without and with it.
func simGrid(cmd *cobra.Command, gf gridFileFlags, at time.Duration, leases []trace.Lease, cfg sim.Config, tracePath, output, plotDir string) error {
	req, err := gf.request()
	if err != nil {
		return err
	}
	g, err := gridspec.Parse([]byte(req.Spec), req.Values, req.Set)
	if err != nil {
		return fmt.Errorf("--grid %s: %w", gf.file, err)
	}
	t0 := time.Now()
	run, err := sim.RunGrid(leases, cfg, g, at)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if output == "json" {
		return printJSON(out, map[string]any{"fits": run.Plan.Fits, "start_s": run.Plan.Start.Sub(sim.Epoch).Seconds(), "end_s": run.Plan.End.Sub(sim.Epoch).Seconds(),
			"tries": run.Plan.Tries, "shortfall": run.Plan.Shortfall, "effects": run.Plan.Effects, "background_without": run.BaseBG, "background_with": run.WithBG,
			"utilization_without": run.Base.Summary.Utilization, "utilization_with": run.With.Summary.Utilization})
	}
	bg := "no background"
	if tracePath != "" {
		bg = fmt.Sprintf("background %s (%d leases)", filepath.Base(tracePath), len(leases))
	}
	fmt.Fprintf(out, "grid %s on %d modelled hosts × %.4g CPU, %s; %s; backfill %s; simulated twice in %s\n\n",
		g.Name, cfg.Hosts, cfg.HostCPUs, cfg.HostMemory, bg, cfg.Policy.Backfill, time.Since(t0).Round(time.Millisecond))
	fmt.Fprint(out, run.Report(g.Name, cfg.Hosts))
	if run.Plan.Fits && run.Plan.After != nil && cfg.Hosts <= 32 {
		from := run.Plan.Start.Add(-time.Hour)
		fmt.Fprintln(out)
		view := control.CalendarJSON(run.Plan.After, from, run.Plan.End.Add(time.Hour), sim.GridProject, true)
		for i := range view.Rows {
			for k := range view.Rows[i].Bars {
				view.Rows[i].Bars[k].Planned = view.Rows[i].Bars[k].Project == sim.GridProject
			}
		}
		fmt.Fprint(out, gridplan.Chart(view, 100))
	}
	if plotDir != "" && run.Plan.Fits {
		// The run with the grid, the chart around its window.
		if err := os.MkdirAll(plotDir, 0o755); err != nil {
			return err
		}
		gfile, err := os.Create(filepath.Join(plotDir, "grid-gantt.svg"))
		if err != nil {
			return err
		}
		defer gfile.Close()
		from, to := run.Plan.Start.Sub(sim.Epoch)-6*time.Hour, run.Plan.End.Sub(sim.Epoch)+6*time.Hour
		if err := plot.GanttSVG(gfile, run.With.Records, plot.GanttOptions{Title: "grid " + g.Name + " (project " + sim.GridProject + ") with the background", From: max(from, 0), To: to}); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nplot: %s\n", gfile.Name())
	}
	if !run.Plan.Fits {
		return exitStatus(2)
	}
	return nil
}
