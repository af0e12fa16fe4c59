package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"vgrid/internal/control"
	"vgrid/internal/gridplan"
	"vgrid/internal/gridspec"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sim"
	"vgrid/internal/sim/metrics"
	"vgrid/internal/sim/plot"
	"vgrid/internal/sim/trace"
)

func newSimCmd() *cobra.Command {
	var (
		tracePath, inject, backfill, placement, output, plotDir, hostMem, leasesFile string
		policyPath                                                                   string
		hosts, injectVM                                                              int
		hostCPUs                                                                     float64
		keepCancelled, gantt, migrate, gaps, runAsReq, multicast                     bool
		suspend                                                                      = suspendMode{on: true}
		exclusion                                                                    string
		gapMinRun, bootTime, shutdownTime, minRun                                    time.Duration
		depth                                                                        int
		suspendRate, resumeRate, stageRate, migrateRate, linkBW, imageCache          string
		gf                                                                           gridFileFlags
		gridAt                                                                       time.Duration
	)
	c := &cobra.Command{
		Use:   "sim --trace FILE",
		Short: "Replay a workload trace on a modelled grid with the real lease calendar, in virtual time",
		Long: `Replay a trace (SWF from the Parallel Workloads Archive, Haizea's LWF XML,
or Haizea's AR injection files; .gz is read too) against a modelled grid of
identical hosts, with the same calendar code the server schedules with.
Prints utilization, waits, bounded slowdown (10 s bound), AR acceptance,
preemptions (suspensions, requeues), live migrations and total completion
time; --plot-dir writes a utilization plot and a Gantt chart as SVG;
--leases writes what happened to every lease (CSV or JSON, by the file's
extension), and -o json has the same in its "leases" array.

The grid is the <site> of an LWF trace when it has one; --hosts,
--host-cpus and --host-memory, when given, override its values. The
output says which was used.

SIGINT and SIGTERM stop a run at once (exit status 130 and 143); on a
terminal, a run longer than a second shows its progress on stderr.

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
			leasesFormat, err := leasesFileFormat(leasesFile)
			if err != nil {
				return err
			}
			opt := trace.SWFOptions{KeepCancelled: keepCancelled, RuntimeAsRequested: runAsReq}
			var leases []trace.Lease
			var site *trace.Site
			if tracePath != "" {
				w, _, err := trace.OpenWorkload(tracePath, opt)
				if err != nil {
					return err
				}
				leases, site = w.Leases, w.Site
				if len(leases) == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s holds no lease the simulator can run (an SWF file without requested times needs --runtime-as-requested; an LWF file's requests may be commented out)\n", tracePath)
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
			siteDesc := applySite(&cfg, site, filepath.Base(tracePath), cmd.Flags().Changed)
			for _, r := range []struct {
				flag, v string
				dst     *int64
			}{{"--suspend-rate", suspendRate, &cfg.SuspendRate}, {"--resume-rate", resumeRate, &cfg.ResumeRate}, {"--stage-rate", stageRate, &cfg.StageRate},
				{"--migrate-rate", migrateRate, &cfg.MigrateRate}, {"--link-bandwidth", linkBW, &cfg.Policy.Link.Bandwidth},
				{"--image-cache", imageCache, &cfg.Policy.Link.Cache}} {
				if r.v == "" {
					continue // not given: none
				}
				b, err := model.ParseByteSize(r.v)
				if err != nil {
					return fmt.Errorf("%s: %w", r.flag, err)
				}
				if b < 0 {
					return fmt.Errorf("%s: %s is negative", r.flag, r.v)
				}
				*r.dst = int64(b)
			}
			cfg.Policy.Suspend, cfg.Policy.SerialOnly, cfg.Policy.Migrate, cfg.Policy.Gaps = suspend.on, suspend.serialOnly, migrate, gaps
			switch e := calendar.Exclusion(exclusion); e {
			case calendar.ExclusionLocal, calendar.ExclusionGlobal:
				cfg.Policy.Exclusion = e
			default:
				return fmt.Errorf("--exclusion %q: want local or global", exclusion)
			}
			if gapMinRun < 0 {
				return fmt.Errorf("--gap-min-run %s: want 0 (the default, %s) or more", gapMinRun, calendar.DefaultGapMinRun)
			}
			if multicast && cfg.Policy.Link.Bandwidth == 0 {
				return fmt.Errorf("--multicast needs --link-bandwidth (the shared link it sends over)")
			}
			cfg.Policy.Link.Multicast = multicast
			if cfg.Policy.Link.Cache != 0 && cfg.Policy.Link.Bandwidth == 0 {
				return fmt.Errorf("--image-cache needs --link-bandwidth (the caches hold what the link brings)")
			}
			if minRun < 0 {
				return fmt.Errorf("--min-run %s: want 0 (no minimum, the default) or more", minRun)
			}
			cfg.Policy.MinRun = minRun
			if depth < 0 {
				return fmt.Errorf("--depth %d: want 0 (every waiting lease under conservative backfilling) or more", depth)
			}
			if bootTime < 0 {
				return fmt.Errorf("--boot-time %s: want 0 or more", bootTime)
			}
			if shutdownTime < 0 || shutdownTime > calendar.MaxBootTime {
				return fmt.Errorf("--shutdown-time %s: want 0 (not modelled, the default) to %s", shutdownTime, calendar.MaxBootTime)
			}
			cfg.Policy.GapMinRun, cfg.Policy.Depth, cfg.BootTime = gapMinRun, depth, bootTime
			cfg.Policy.ShutdownTime = shutdownTime
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
			if cfg.Policy, err = simPolicy(policyPath, cfg.Policy, cmd.Flags().Changed); err != nil {
				return err
			}
			ctx, stop := simSignals(cmd.Context())
			defer stop()
			cfg.Context = ctx
			bar := newSimProgress(cmd.ErrOrStderr())
			if bar != nil {
				cfg.Progress = bar.update
			}
			if gf.file != "" {
				cfg.Progress = nil // two runs and a plan: the bar would start over
				return simInterrupted(cmd, ctx, simGrid(cmd, gf, gridAt, leases, cfg, tracePath, output, plotDir, siteDesc))
			}
			t0 := time.Now()
			res, err := sim.Run(leases, cfg)
			bar.clear() // before anything else is written
			if err != nil {
				return simInterrupted(cmd, ctx, err)
			}
			wall := time.Since(t0)
			if leasesFile != "" {
				if err := writeLeasesFile(leasesFile, leasesFormat, res.Leases); err != nil {
					return err
				}
			}
			if plotDir != "" {
				if err := writePlots(plotDir, res); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(out, simJSON{Summary: res.Summary, LeaseCount: res.Summary.Leases, Site: siteDesc, Leases: res.Leases})
			}
			fmt.Fprintf(out, "trace %s: %d leases on %d hosts × %.4g CPU, %s; backfill %s, suspension %v, migration %v; simulated in %s\n",
				filepath.Base(tracePath), len(leases), cfg.Hosts, cfg.HostCPUs, cfg.HostMemory, cfg.Policy.Backfill, suspend.String(),
				cfg.Policy.Migrate, wall.Round(time.Millisecond))
			fmt.Fprintf(out, "site: %s\n\n", siteDesc)
			fmt.Fprintln(out, res.Summary.Table())
			if gantt && res.Gantt != "" {
				fmt.Fprintln(out, res.Gantt)
			}
			if plotDir != "" {
				fmt.Fprintf(out, "plots: %s, %s\n", filepath.Join(plotDir, "utilization.svg"), filepath.Join(plotDir, "gantt.svg"))
			}
			if leasesFile != "" {
				fmt.Fprintf(out, "leases: %s (%d rows)\n", leasesFile, len(res.Leases))
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
	f.IntVar(&hosts, "hosts", 144, "number of hosts (given: overrides the trace's <site>)")
	f.Float64Var(&hostCPUs, "host-cpus", 1, "CPUs per host (given: overrides the trace's <site>)")
	f.StringVar(&hostMem, "host-memory", "1Gi", "memory per host (given: overrides the trace's <site>)")
	f.StringVar(&leasesFile, "leases", "", "write one row per lease to this file: .csv or .json")
	f.Var(&suspend, "suspend", "preempt best-effort leases by suspending them: true, false (requeue them) or serial-only (leases of one member; others are requeued)")
	f.Lookup("suspend").NoOptDefVal = "true"
	f.StringVar(&exclusion, "exclusion", "local", "suspend/resume exclusion: local (each host saves its members' memory one at a time, hosts in parallel) or global (one at a time for all of a lease's hosts: a shared file system)")
	f.BoolVar(&gaps, "gaps", true, "start a best-effort lease in a gap shorter than its run, suspended in time for what needs the room (needs --suspend)")
	f.DurationVar(&gapMinRun, "gap-min-run", 0, "the least run a gap must give a best-effort lease (0: 5m)")
	f.StringVar(&linkBW, "link-bandwidth", "", "bytes/s of the shared link the leases' images come over from the repository, one transfer at a time (e.g. 100Mi; default: none, each host stages at --stage-rate)")
	f.StringVar(&imageCache, "image-cache", "", "with --link-bandwidth: bytes of images each host keeps (least recently used dropped first; default: no bound)")
	f.BoolVar(&multicast, "multicast", false, "with --link-bandwidth: one transfer of an image serves every host of a lease")
	f.DurationVar(&minRun, "min-run", 0, "the least a lease runs, from its start or resume, before it may be preempted (0: no minimum)")
	f.IntVar(&depth, "depth", 0, "how many waiting leases get a backfill reservation under conservative backfilling (0: all)")
	f.DurationVar(&bootTime, "boot-time", 0, "time a host takes to boot a lease's guests, before its run (0: instantaneous)")
	f.StringVar(&policyPath, "policy", "", "the server's policy file (YAML, docs/cli.md): the policy to simulate, the policy flags given overriding its keys")
	f.DurationVar(&shutdownTime, "shutdown-time", 0, "time a lease's guests take to shut down after its run, their host's slots held meanwhile (0: not modelled)")
	f.StringVar(&backfill, "backfill", "aggressive", "none, conservative or aggressive (EASY)")
	f.StringVar(&placement, "placement", "first-fit", "first-fit, pack or spread")
	f.StringVar(&suspendRate, "suspend-rate", "0", "bytes/s a host writes when suspending (0: instantaneous)")
	f.StringVar(&resumeRate, "resume-rate", "0", "bytes/s a host reads when resuming (0: instantaneous)")
	f.StringVar(&stageRate, "stage-rate", "0", "bytes/s of image staging to a host (0: instantaneous)")
	f.BoolVar(&migrate, "migrate", false, "live-migrate a best-effort lease in a reservation's way to another host where one has room, before suspending it")
	f.StringVar(&migrateRate, "migrate-rate", "0", "bytes/s of live migration from or to a host (0: the calendar's default, 100Mi)")
	f.BoolVar(&runAsReq, "runtime-as-requested", false, "an SWF job without a requested time (-1) asks for its run time (synthetic traces such as lublin_256.swf)")
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
func simGrid(cmd *cobra.Command, gf gridFileFlags, at time.Duration, leases []trace.Lease, cfg sim.Config, tracePath, output, plotDir string, siteDesc siteJSON) error {
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
		return printJSON(out, map[string]any{"site": siteDesc, "fits": run.Plan.Fits, "start_s": run.Plan.Start.Sub(sim.Epoch).Seconds(), "end_s": run.Plan.End.Sub(sim.Epoch).Seconds(),
			"tries": run.Plan.Tries, "shortfall": run.Plan.Shortfall, "effects": run.Plan.Effects, "background_without": run.BaseBG, "background_with": run.WithBG,
			"utilization_without": run.Base.Summary.Utilization, "utilization_with": run.With.Summary.Utilization})
	}
	bg := "no background"
	if tracePath != "" {
		bg = fmt.Sprintf("background %s (%d leases)", filepath.Base(tracePath), len(leases))
	}
	fmt.Fprintf(out, "grid %s on %d modelled hosts × %.4g CPU, %s; %s; backfill %s; simulated twice in %s\n",
		g.Name, cfg.Hosts, cfg.HostCPUs, cfg.HostMemory, bg, cfg.Policy.Backfill, time.Since(t0).Round(time.Millisecond))
	fmt.Fprintf(out, "site: %s\n\n", siteDesc)
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

// simJSON is vgrid sim -o json: the summary's fields, the site, and a
// row per lease. The summary's lease count (its "leases") is
// "lease_count" here, since "leases" is the array.
type simJSON struct {
	metrics.Summary
	LeaseCount int               `json:"lease_count"`
	Site       siteJSON          `json:"site"`
	Leases     []sim.LeaseResult `json:"leases"`
}

// siteJSON says which grid a run modelled and where it came from.
type siteJSON struct {
	// Source is "flags", or the trace file's name when its <site> was
	// used; Overridden lists the flags that replaced its values.
	Source     string   `json:"source"`
	Overridden []string `json:"overridden,omitempty"`
	Hosts      int      `json:"hosts"`
	HostCPUs   float64  `json:"host_cpus"`
	HostMemMiB int64    `json:"host_memory_mib"`
}

// String is the "site: ..." line: "from sample.lwf: 4 hosts of 1 CPU,
// 1024 MiB", "flags: ...", or "from sample.lwf, --hosts from flags: ...".
func (s siteJSON) String() string {
	src := "flags"
	if s.Source != "flags" {
		src = "from " + s.Source
		if len(s.Overridden) > 0 {
			src += ", " + strings.Join(s.Overridden, " ") + " from flags"
		}
	}
	return fmt.Sprintf("%s: %s", src, trace.Site{Hosts: s.Hosts, CPUs: s.HostCPUs, MemoryMiB: s.HostMemMiB})
}

// applySite takes the grid from the trace's site where the user gave no
// flag for it (changed says which flags were given): the site describes
// the machine the workload was written for, the flags are a deliberate
// choice.
func applySite(cfg *sim.Config, site *trace.Site, traceName string, changed func(string) bool) siteJSON {
	desc := siteJSON{Source: "flags"}
	if site != nil {
		desc.Source = traceName
		for _, f := range []struct {
			flag string
			set  func()
		}{
			{"hosts", func() { cfg.Hosts = site.Hosts }},
			{"host-cpus", func() { cfg.HostCPUs = site.CPUs }},
			{"host-memory", func() { cfg.HostMemory = model.ByteSize(site.MemoryMiB) * model.MiB }},
		} {
			if changed(f.flag) {
				desc.Overridden = append(desc.Overridden, "--"+f.flag)
			} else {
				f.set()
			}
		}
		if site.DiskMiB > 0 {
			cfg.HostDisk = model.ByteSize(site.DiskMiB) * model.MiB
		}
	}
	desc.Hosts, desc.HostCPUs, desc.HostMemMiB = cfg.Hosts, cfg.HostCPUs, int64(cfg.HostMemory/model.MiB)
	return desc
}

// leasesFileFormat is "csv" or "json" from --leases' extension ("" when
// the flag is not given).
func leasesFileFormat(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".csv", ".json":
		return ext[1:], nil
	default:
		return "", fmt.Errorf("--leases %s: unknown extension %q (want .csv or .json)", path, ext)
	}
}

func writeLeasesFile(path, format string, leases []sim.LeaseResult) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--leases: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("--leases: %w", cerr)
		}
	}()
	if format == "csv" {
		err = sim.WriteLeasesCSV(f, leases)
	} else {
		err = sim.WriteLeasesJSON(f, leases)
	}
	if err != nil {
		return fmt.Errorf("--leases %s: %w", path, err)
	}
	return nil
}

// signalCause is the cause of a run's context cancelled by a signal.
type signalCause struct{ sig os.Signal }

func (c signalCause) Error() string { return c.sig.String() + " signal received" }

// simSignals returns a context cancelled by SIGINT or SIGTERM, whose
// cause (a signalCause) says which, for the exit status. (main's context
// is cancelled by the same signals, but does not say which.)
func simSignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			cancel(signalCause{s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// simInterrupted turns a run stopped by a signal into its message on
// stderr and the shell's exit status (128 + the signal's number); other
// errors pass.
func simInterrupted(cmd *cobra.Command, ctx context.Context, err error) error {
	var in *sim.Interrupted
	if !errors.As(err, &in) {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "interrupted at virtual time %s (+%s) after %d of %d leases\n",
		in.At.Format(time.RFC3339), in.At.Sub(sim.Epoch), in.Submitted, in.Total)
	var sc signalCause
	if errors.As(context.Cause(ctx), &sc) {
		if n, ok := sc.sig.(syscall.Signal); ok {
			return exitStatus(128 + int(n))
		}
	}
	return exitStatus(130)
}

// simProgress draws a one-line progress bar on a terminal: only once a
// run has lasted a second, at most ten times a second, cleared at the end.
type simProgress struct {
	w           io.Writer
	start, last time.Time
	drawn       bool
	now         func() time.Time // the wall clock; a test's own
}

// newSimProgress returns a progress bar on w when w is standard error and
// a terminal, else nil.
func newSimProgress(w io.Writer) *simProgress {
	f, ok := w.(*os.File)
	if !ok || f != os.Stderr || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &simProgress{w: w, start: time.Now(), now: time.Now}
}

func (p *simProgress) update(pr sim.Progress) {
	t := p.now()
	if t.Sub(p.start) < time.Second || t.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.drawn = t, true
	const width = 30
	fill := 0
	if pr.Total > 0 {
		fill = width * pr.Submitted / pr.Total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d leases submitted, virtual time %s (+%s)\x1b[K",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), pr.Submitted, pr.Total,
		pr.Now.Format(time.RFC3339), pr.Now.Sub(sim.Epoch).Round(time.Second))
}

// clear erases the bar, if one was drawn (nil: none).
func (p *simProgress) clear() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// suspendMode is --suspend: true, false or serial-only.
type suspendMode struct{ on, serialOnly bool }

func (m *suspendMode) String() string {
	switch {
	case m.serialOnly:
		return "serial-only"
	case m.on:
		return "true"
	}
	return "false"
}

func (m *suspendMode) Set(s string) error {
	switch s {
	case "serial-only":
		*m = suspendMode{on: true, serialOnly: true}
	default:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true, false or serial-only")
		}
		*m = suspendMode{on: b}
	}
	return nil
}

func (m *suspendMode) Type() string { return "mode" }
