package sim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/gridplan"
	"vgrid/internal/gridspec"
	"vgrid/internal/model"
	"vgrid/internal/sim/metrics"
	"vgrid/internal/sim/trace"
)

// GridProject is the project a simulated grid's leases belong to.
const GridProject = "grid"

// GridRun is a grid tried on a modelled resource: the plan made when it
// was asked for, and the runs of the background without and with it.
type GridRun struct {
	// At is when the grid was asked for (an offset from the trace start).
	At   time.Duration
	Plan gridplan.Result
	// Base is the background alone, With the background and the grid;
	// BaseBG and WithBG summarize the background's leases only.
	Base, With     Result
	BaseBG, WithBG metrics.Summary
}

// GridParts turns a grid into the planner's parts on a modelled resource:
// each member asks its quantum (no image catalogue here: the disk it
// names, else none), the grid's volumes are placed on the hosts' disks.
func GridParts(g model.GridSpec, now time.Time) ([]gridplan.Part, []gridplan.Volume) {
	var parts []gridplan.Part
	for _, p := range gridspec.Parts(g) {
		var specs []model.WorkspaceSpec
		var spread []bool
		var lease *model.LeaseSpec
		var d model.Duration
		switch {
		case p.Cluster != nil:
			for _, m := range p.Cluster.Members() {
				specs = append(specs, m.Spec)
				spread = append(spread, m.Placement == model.PlacementSpread)
			}
			lease, d = p.Cluster.Lease, p.Cluster.Duration
		case p.Workspace != nil:
			specs, spread = []model.WorkspaceSpec{*p.Workspace}, []bool{false}
			lease, d = p.Workspace.Lease, p.Workspace.Duration
		}
		if len(specs) == 0 {
			continue
		}
		l := calendar.Lease{ID: GridProject + "/" + p.Name, Project: GridProject, Kind: calendar.Immediate, Duration: d.D(), Submitted: now}
		if lease != nil {
			if lease.Kind != "" {
				l.Kind = lease.Kind
			}
			l.Start, l.Deadline = lease.Start, lease.Deadline
		}
		var images []string
		for i, sp := range specs {
			l.Members = append(l.Members, calendar.Request{Workspace: sp.Name, Resources: sp.Quantum.Resources(), Spread: spread[i]})
			images = append(images, sp.Image)
		}
		parts = append(parts, gridplan.Part{Name: p.Name, Kind: p.Kind, Lease: l, Linked: p.Linked, Images: images})
	}
	var vols []gridplan.Volume
	for _, v := range g.Volumes {
		vols = append(vols, gridplan.Volume{Name: v.Name, Project: GridProject, Size: v.Size})
	}
	return parts, vols
}

// RunGrid replays leases on cfg's grid twice: alone (the baseline), and
// with the grid asked for at offset at, planned against the calendar as
// it is then with the same planner as the server's (the earliest window
// from then, or from the grid's dated start) and submitted as planned.
// A dated start in the grid's file is not used: at says when the grid
// is asked for, and it starts in the earliest window from then.
func RunGrid(leases []trace.Lease, cfg Config, g model.GridSpec, at time.Duration) (GridRun, error) {
	run := GridRun{At: at}
	base, err := Run(leases, cfg)
	if err != nil {
		return run, err
	}
	run.Base = base
	cfg.Inject, cfg.InjectAt = func(c *calendar.Calendar, now time.Time) ([]Injected, error) {
		parts, vols := GridParts(g, now)
		if len(parts) == 0 {
			return nil, errors.New("the grid has no cluster or workspace")
		}
		in := gridplan.Input{Parts: parts, Volumes: vols, Lead: time.Second}
		res, err := gridplan.Evaluate(c, in, now)
		if err != nil {
			return nil, err
		}
		run.Plan = res
		if !res.Fits {
			return nil, nil
		}
		var out []Injected
		for _, p := range parts {
			l := p.Lease
			if p.Linked {
				l.Kind, l.Start, l.Deadline = calendar.Reservation, res.Start, time.Time{}
			}
			cpus := 0.0
			if len(l.Members) > 0 {
				cpus = float64(l.Members[0].Resources.MilliCPU) / 1000
			}
			out = append(out, Injected{Lease: l, Project: GridProject, CPUs: cpus})
		}
		return out, nil
	}, at
	with, err := Run(leases, cfg)
	if err != nil {
		return run, err
	}
	run.With = with
	run.BaseBG = metrics.Summarize(background(base.Records), base.Capacity)
	run.WithBG = metrics.Summarize(background(with.Records), with.Capacity)
	return run, nil
}

func background(rs []metrics.Record) []metrics.Record {
	var out []metrics.Record
	for _, r := range rs {
		if r.Project != GridProject {
			out = append(out, r)
		}
	}
	return out
}

// Report writes what a user sizing a request wants to know: when the
// grid would start, where, and what it does to the background.
func (r GridRun) Report(name string, hosts int) string {
	var b strings.Builder
	p := r.Plan
	if !p.Fits {
		fmt.Fprintf(&b, "grid %s asked for at +%s: does not fit on %d hosts", name, r.At, hosts)
		if p.Shortfall != nil {
			fmt.Fprintf(&b, ": %s", p.Shortfall.Message)
		}
		b.WriteString("\n")
		return b.String()
	}
	fmt.Fprintf(&b, "grid %s asked for at +%s: starts at +%s (waits %s), ends at +%s; %d window(s) tried\n", name, r.At,
		offset(p.Start), (offset(p.Start) - r.At).Round(time.Second), offset(p.End), p.Tries)
	for _, name := range sortedKeys(p.Admissions) {
		a := p.Admissions[name]
		fmt.Fprintf(&b, "  %s: %d member(s) on %d host(s)\n", name, len(a.Hosts), len(distinctHosts(a.Hosts)))
	}
	counts := map[string]int{}
	for _, e := range p.Effects {
		counts[e.Action]++
	}
	fmt.Fprintf(&b, "planned effect on the background: %d suspended, %d migrated, %d requeued, %d delayed\n",
		counts["suspend"], counts["migrate"], counts["requeue"], counts["delay"])
	bs, ws := r.BaseBG, r.WithBG
	fmt.Fprintf(&b, "background (%d leases)          without the grid   with it        change\n", bs.Leases)
	row := func(what string, a, c float64, unit string) {
		fmt.Fprintf(&b, "  %-30s %12.2f%-4s %12.2f%-4s %+10.2f%s\n", what, a, unit, c, unit, c-a, unit)
	}
	row("mean wait", bs.MeanWaitS, ws.MeanWaitS, " s")
	row("p90 wait", bs.P90WaitS, ws.P90WaitS, " s")
	row("max wait", bs.MaxWaitS, ws.MaxWaitS, " s")
	row("mean bounded slowdown", bs.MeanBoundedSlowdown, ws.MeanBoundedSlowdown, "")
	row("utilization (whole grid)", 100*r.Base.Summary.Utilization, 100*r.With.Summary.Utilization, " %")
	row("suspensions", float64(bs.Suspensions), float64(ws.Suspensions), "")
	row("completion of the last", bs.TotalCompletionS/3600, ws.TotalCompletionS/3600, " h")
	return b.String()
}

func distinctHosts(hs []string) map[string]bool {
	m := map[string]bool{}
	for _, h := range hs {
		m[h] = true
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
