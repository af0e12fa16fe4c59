package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

// TestVirtualGridOnGrid carries out examples/grid.yaml on three namespace
// hosts with real guests: a dataset written by a workspace into volume
// notes; vgrid plan; vgrid grid apply --plan books exactly that plan; the
// two clusters and the monitor run together in the planned window, on
// the planned hosts, both clusters reading the dataset (a snapshot of
// notes) read-only and reaching each other on the grid's network; vgrid
// grid delete removes everything the grid made.
func TestVirtualGridOnGrid(t *testing.T) {
	begin := time.Now()
	g := startGuestGrid(t)
	ctx := context.Background()
	cl := g.Client
	example, err := filepath.Abs(filepath.Join("..", "..", "examples", "grid.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	// The dataset: a line written to notes by a workspace that is then
	// deleted (a volume has one writer, or readers only).
	if out, err := g.CLI("volume", "create", "notes", "--size", "64Mi"); err != nil {
		t.Fatalf("volume create: %v\n%s", err, out)
	}
	if _, err := cl.CreateWorkspace(ctx, volSpec("writer", "notes")); err != nil {
		t.Fatal(err)
	}
	waitState(t, cl, "writer", model.StateRunning, 3*time.Minute)
	var out string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		var code int
		out, code = execQuiet(cl, "writer", `grep -q " /data " /proc/mounts && echo dataset-line > /data/log && sync && cat /data/log`)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer: the volume never mounted: %q", out)
		}
	}
	if err := cl.DeleteWorkspace(ctx, "writer"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "writer to be deleted", func() bool { _, err := cl.GetWorkspace(ctx, "writer"); return err != nil })

	// Plan, then carry out exactly that plan.
	out, err = g.CLI("plan", "-f", example, "--set", "workers=2", "-o", "json")
	if err != nil {
		t.Fatalf("vgrid plan: %v\n%s", err, out)
	}
	var p api.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !p.Fits || len(p.Parts) != 3 {
		t.Fatalf("plan: %+v", p)
	}
	if out, err := g.CLI("grid", "apply", "-f", example, "--set", "workers=2", "--plan", p.ID); err != nil {
		t.Fatalf("vgrid grid apply --plan: %v\n%s", err, out)
	}
	planned := map[string]string{}
	for _, part := range p.Parts {
		for _, m := range part.Members {
			planned[m.Name] = m.Host
		}
	}
	for _, c := range []string{"prep", "compute"} {
		waitClusterReady(t, g, cl, c, 4*time.Minute)
	}
	mon := waitState(t, cl, "monitor", model.StateRunning, 2*time.Minute)
	var loaderAddr string
	for name, host := range planned {
		w, err := cl.GetWorkspace(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if w.Status.Node != host {
			t.Errorf("%s runs on %s, planned on %s", name, w.Status.Node, host)
		}
		if ready := w.Status.Timings.GuestReady; ready.Before(p.Start.Add(-time.Minute)) || w.Status.Lease == "" {
			t.Errorf("%s ready at %s, its window starts %s (lease %q)", name, ready, p.Start, w.Status.Lease)
		}
		if name == "prep-loader-0" && len(w.NICs) > 0 {
			loaderAddr = w.NICs[0].Address.Addr().String()
		}
	}
	t.Logf("grid lab: planned from %s, %d members on %v; monitor ready %s", p.Start.Format("15:04:05"), len(planned), planned,
		mon.Status.Timings.GuestReady.Format("15:04:05"))

	// Both clusters read the dataset, read-only; they reach each other on
	// lab-net; the monitor writes its own volume.
	for _, m := range []string{"prep-loader-0", "compute-worker-1"} {
		out, code := execIn(t, cl, m, `grep " /data " /proc/mounts | cut -d' ' -f4 | cut -d, -f1; cat /data/log; touch /data/x 2>&1 | tail -1`)
		if code != 0 || !strings.HasPrefix(out, "ro\n") || !strings.Contains(out, "dataset-line") || !strings.Contains(out, "Read-only file system") {
			t.Fatalf("%s's dataset: exit %d\n%s", m, code, out)
		}
	}
	if out, code := execIn(t, cl, "compute-worker-0", "ping -c 1 -W 5 "+loaderAddr+" | sed -n 2p"); code != 0 || !strings.Contains(out, "bytes from "+loaderAddr) {
		t.Fatalf("compute-worker-0 -> prep-loader-0 (%s): exit %d %q", loaderAddr, code, out)
	}
	if out, code := execIn(t, cl, "monitor", "echo ok > /results/x && cat /results/x"); code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("monitor's results volume: exit %d %q", code, out)
	}

	// Delete: every part, then its volumes and network.
	if out, err := g.CLI("grid", "delete", "lab"); err != nil {
		t.Fatalf("vgrid grid delete: %v\n%s", err, out)
	}
	waitFor(t, 2*time.Minute, "grid lab to be gone", func() bool { _, err := cl.GetGrid(ctx, "lab"); return err != nil })
	vols, err := cl.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if v.Name == "dataset" || v.Name == "results" {
			t.Errorf("volume %s left after the grid's delete: %+v", v.Name, v)
		}
	}
	if _, err := cl.GetNetwork(ctx, "lab-net"); err == nil {
		t.Error("network lab-net left after the grid's delete")
	}
	t.Logf("virtual grid on the grid: %s", time.Since(begin).Round(time.Second))
}
