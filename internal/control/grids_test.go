package control

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/gridplan"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store/bolt"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the grid plans")

// testGrid is two clusters sharing a network and a dataset volume (read
// by both), the grid's window 1 h.
const testGrid = `name: lab
params:
  workers: "2"
  cores: "0.5"
  memory: 512Mi
duration: 1h
networks:
  - {name: lab-net, subnet: 10.77.0.0/24}
volumes:
  - {name: dataset, size: 1Gi}
clusters:
  - name: prep
    networks: [{name: lab-net}]
    roles:
      - {name: loader, count: 1, image: img, quantum: {vcpus: 1, cpu: ${cores}, memory: ${memory}}, volumes: [{name: dataset, mount: /data, read_only: true}]}
  - name: compute
    networks: [{name: lab-net}]
    roles:
      - {name: worker, count: ${workers}, image: img, quantum: {vcpus: 1, cpu: ${cores}, memory: ${memory}}, placement: spread, volumes: [{name: dataset, mount: /data, read_only: true}]}
`

// createIn creates a 2-vCPU workspace of cpu cores for 2h in project.
func createIn(t *testing.T, ctl *Controller, project, name, cpu, lease string) model.Workspace {
	t.Helper()
	y := fmt.Sprintf("name: %s\nimage: img\nquantum: {vcpus: 2, cpu: %s, memory: 512Mi, disk: 1Gi}\nduration: 2h\n", name, cpu)
	if lease != "" {
		y += "lease: " + lease + "\n"
	}
	sp, err := spec.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	w, err := ctl.CreateWorkspace(context.Background(), project, sp)
	if err != nil {
		t.Fatalf("create %s/%s: %v", project, name, err)
	}
	return w
}

var planID = regexp.MustCompile(`plan-[0-9a-f]{16}`)

// golden compares a plan's text with testdata/plans/NAME.golden.
func golden(t *testing.T, name string, p api.Plan) {
	t.Helper()
	got := planID.ReplaceAllString(gridplan.Text(p, 72), "plan-ID")
	path := filepath.Join("testdata", "plans", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s ./internal/control -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("plan %s:\n%s\nwant (%s):\n%s", name, got, path, want)
	}
}

// planUnchanged plans and checks that the store did not change.
func planUnchanged(t *testing.T, ctl *Controller, project string, req api.GridsPost) api.Plan {
	t.Helper()
	ctx := context.Background()
	ctl.mu.Lock()
	c, err := ctl.calendarLocked(ctx) // restored from the store on first use
	if err != nil {
		t.Fatal(err)
	}
	calRev := c.Revision()
	ctl.mu.Unlock()
	rev0, err := ctl.store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ctl.PlanGrid(ctx, project, req, false)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if rev1, _ := ctl.store.Revision(ctx); rev1 != rev0 {
		t.Fatalf("planning changed the store: revision %d, then %d", rev0, rev1)
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.cal.Revision() != calRev {
		t.Fatalf("planning changed the calendar: revision %d, then %d", calRev, ctl.cal.Revision())
	}
	return p
}

func TestGridPlanAndApply(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	// Another project's reservation takes every host's CPU from +20m for
	// 2h: a 1h grid cannot start before it ends.
	for _, h := range []string{"r1", "r2", "r3"} {
		createIn(t, ctl, "q", h, "2", "{kind: reservation, start: 2026-12-02T10:20:00Z}")
	}
	req := api.GridsPost{Spec: testGrid}
	p := planUnchanged(t, ctl, "p", req)
	golden(t, "reservation-in-the-way", p)
	if !p.Fits || p.Start.Before(time.Date(2026, 12, 2, 12, 20, 0, 0, time.UTC)) {
		t.Fatalf("plan: fits %v from %s, want after the reservation's end", p.Fits, p.Start)
	}

	// Carried out by its ID: exactly that plan.
	req.Plan = p.ID
	g, err := ctl.CreateGrid(ctx, "p", req)
	if err != nil {
		t.Fatalf("apply the plan: %v", err)
	}
	if !g.Start.Equal(p.Start) || len(g.Clusters) != 2 || len(g.Networks) != 1 || len(g.Volumes) != 1 {
		t.Fatalf("grid %+v, planned from %s", g, p.Start)
	}
	for _, part := range p.Parts {
		st, err := ctl.Cluster(ctx, "p", part.Name)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := ctl.cal.Get(st.Lease)
		if !ok || !v.Start.Equal(part.Start) || strings.Join(v.Hosts, ",") != strings.Join(plannedHosts(part), ",") {
			t.Fatalf("cluster %s: lease %+v, planned %s on %v", part.Name, v, part.Start, plannedHosts(part))
		}
	}

	// A second grid (other names) planned, then another lease submitted:
	// the plan is refused, saying the calendar changed.
	req2 := api.GridsPost{Spec: strings.NewReplacer("name: lab", "name: lab2", "lab-net", "lab2-net", "10.77.", "10.78.", "dataset", "dataset2",
		"name: prep", "name: prep2", "name: compute", "name: compute2").Replace(testGrid)}
	p2 := planUnchanged(t, ctl, "p", req2)
	createWS(t, ctl, "between", "0.5", "{kind: best-effort}")
	req2.Plan = p2.ID
	_, err = ctl.CreateGrid(ctx, "p", req2)
	if err == nil || !strings.Contains(err.Error(), "the calendar changed since plan") {
		t.Fatalf("apply a stale plan: %v, want a refusal saying the calendar changed", err)
	}
	if _, err := ctl.Grid(ctx, "p", "lab2"); !isNotFound(err) {
		t.Fatalf("the refused grid exists: %v", err)
	}

	// A grid that never fits gets the shortfall.
	p3 := planUnchanged(t, ctl, "p", api.GridsPost{Spec: req2.Spec, Set: []string{"memory=6Gi"}})
	golden(t, "never-fits", p3)
	if p3.Fits || p3.Shortfall == nil || p3.Shortfall.Resource != "memory" {
		t.Fatalf("plan of 6Gi members on 4Gi hosts: %+v", p3.Shortfall)
	}
	_, err = ctl.CreateGrid(ctx, "p", api.GridsPost{Spec: req2.Spec, Set: []string{"memory=6Gi"}})
	var ce *Error
	if !errors.As(err, &ce) || ce.Kind != KindConflict || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("apply a grid that never fits: %v", err)
	}

	// Export gives a file that makes the same grid.
	b, err := ctl.ExportGrid(ctx, "p", "lab")
	if err != nil || !strings.Contains(string(b), "name: compute") {
		t.Fatalf("export: %v\n%s", err, b)
	}

	// Delete: the clusters go at once, then the volume and the network.
	if _, err := ctl.DeleteGrid(ctx, "p", "lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Cluster(ctx, "p", "prep"); err == nil {
		st, _ := ctl.Cluster(ctx, "p", "prep")
		if st.Desired != "deleted" && !strings.Contains(strings.ToLower(st.State), "delet") {
			t.Logf("prep after the grid's delete: %+v", st)
		}
	}
}

// TestGridApplyLater: an undated plan (the earliest window from now) is
// carried out at its own start when applied some seconds later, and
// refused, saying so, once its window has begun.
func TestGridApplyLater(t *testing.T) {
	ctl, clk := volEnvClock(t)
	ctx := context.Background()
	req := api.GridsPost{Spec: testGrid}
	p := planUnchanged(t, ctl, "p", req)
	if !p.Fits || !p.Start.After(clk.now()) {
		t.Fatalf("plan: fits %v from %s, now %s", p.Fits, p.Start, clk.now())
	}
	clk.add(p.Start.Sub(clk.now()) / 2)
	req.Plan = p.ID
	g, err := ctl.CreateGrid(ctx, "p", req)
	if err != nil {
		t.Fatalf("apply the plan %s later: %v", p.Start.Sub(clk.now()), err)
	}
	if !g.Start.Equal(p.Start) {
		t.Fatalf("grid from %s, planned from %s", g.Start, p.Start)
	}

	req2 := api.GridsPost{Spec: strings.NewReplacer("name: lab", "name: lab2", "lab-net", "lab2-net", "10.77.", "10.78.", "dataset", "dataset2",
		"name: prep", "name: prep2", "name: compute", "name: compute2").Replace(testGrid)}
	p2 := planUnchanged(t, ctl, "p", req2)
	clk.add(p2.Start.Sub(clk.now()))
	req2.Plan = p2.ID
	_, err = ctl.CreateGrid(ctx, "p", req2)
	if errKind(err) != KindConflict || !strings.Contains(err.Error(), "window began at") {
		t.Fatalf("apply a plan whose window began: %v, want a conflict saying so", err)
	}
}

// TestGridHalfMadeDeletedWhole: a grid whose making stopped half way,
// its undo failing with it (the replica lost its leadership after its
// first cluster), lists what it made; deleting it later deletes that.
func TestGridHalfMadeDeletedWhole(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	st := &lostStore{Store: bs, all: true, cutAfter: func(key string, value []byte) bool {
		return key == gridKey("p", "lab") && strings.Contains(string(value), `"clusters":["prep"]`)
	}}
	ctl, _ := hostsEnvOn(t, st, "h1", "h2", "h3")
	ctx := context.Background()
	for i, n := range []string{"h1", "h2"} {
		if err := ctl.SetStorageHost(ctx, n, api.StorageHost{Address: fmt.Sprintf("10.0.0.%d:10809", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ctl.CreateGrid(ctx, "p", api.GridsPost{Spec: testGrid}); !IsNotLeader(err) {
		t.Fatalf("the grid made while the replica is lost: %v, want not_leader", err)
	}
	st.lost.Store(false)
	st.cutAfter = nil
	g, err := ctl.Grid(ctx, "p", "lab")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(g.Clusters, ",") != "prep" || strings.Join(g.Networks, ",") != "lab-net" || strings.Join(g.Volumes, ",") != "dataset" {
		t.Fatalf("the half-made grid's record lists clusters %v, networks %v, volumes %v", g.Clusters, g.Networks, g.Volumes)
	}
	if _, err := ctl.DeleteGrid(ctx, "p", "lab"); err != nil {
		t.Fatal(err)
	}
	if st, err := ctl.Cluster(ctx, "p", "prep"); err == nil && st.Desired != "deleted" {
		t.Fatalf("cluster prep after the grid's delete: %+v", st)
	}
}

func TestGridPlanEffects(t *testing.T) {
	ctl := volEnv(t)
	// q's best-effort leases run on every host.
	for _, h := range []string{"b1", "b2", "b3"} {
		createIn(t, ctl, "q", h, "2", "{kind: best-effort}")
	}
	// A dated grid: at 11:00, it suspends them (masked for p).
	dated := strings.Replace(testGrid, "duration: 1h\n", "duration: 1h\nlease: {kind: reservation, start: 2026-12-02T11:00:00Z}\n", 1)
	p := planUnchanged(t, ctl, "p", api.GridsPost{Spec: dated})
	golden(t, "suspends-best-effort", p)
	if !p.Fits || !p.Start.Equal(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("dated grid: fits %v from %s", p.Fits, p.Start)
	}
	suspended := 0
	for _, e := range p.Effects {
		if e.Action == "suspend" {
			suspended++
			if e.Lease != "*" {
				t.Errorf("another project's lease shown to p: %+v", e)
			}
		}
	}
	if suspended == 0 {
		t.Fatalf("effects %+v: want the best-effort leases suspended", p.Effects)
	}
	// Immediate grid on a free calendar: now, no effects.
	ctl2 := volEnv(t)
	p2 := planUnchanged(t, ctl2, "p", api.GridsPost{Spec: strings.Replace(testGrid, "duration: 1h\n", "duration: 1h\nlease: {kind: immediate}\n", 1)})
	golden(t, "immediate-free", p2)
	if !p2.Fits || p2.Start.Sub(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)) > time.Minute || len(p2.Effects) != 0 {
		t.Fatalf("immediate grid on a free calendar: %+v", p2)
	}
}

func TestGridSpecErrors(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	tests := []struct {
		name, spec string
		sets       []string
		want       string
	}{
		{"unknown param", testGrid, []string{"wrokers=3"}, "wrokers"},
		{"unknown network", strings.Replace(testGrid, "networks: [{name: lab-net}]\n    roles:\n      - {name: worker", "networks: [{name: elsewhere}]\n    roles:\n      - {name: worker", 1), nil, "elsewhere"},
		{"best-effort grid", strings.Replace(testGrid, "duration: 1h\n", "duration: 1h\nlease: {kind: best-effort}\n", 1), nil, "lease.kind"},
		{"empty", "", nil, "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ctl.PlanGrid(ctx, "p", api.GridsPost{Spec: tt.spec, Set: tt.sets}, false)
			if err == nil || !strings.Contains(errText(err), tt.want) {
				t.Fatalf("got %v, want an error naming %q", errText(err), tt.want)
			}
		})
	}
}
