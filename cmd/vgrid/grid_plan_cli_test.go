package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

const cliGrid = `name: ${name}
params: {name: lab, workers: "2", memory: 512Mi}
duration: 2h
networks: [{name: ${name}-net}]
clusters:
  - name: ${name}-a
    networks: [{name: ${name}-net}]
    roles: [{name: head, count: 1, image: vgrid-guest, quantum: {vcpus: 1, cpu: 0.5, memory: ${memory}, disk: 1Gi}}]
  - name: ${name}-b
    networks: [{name: ${name}-net}]
    roles: [{name: w, count: ${workers}, image: vgrid-guest, quantum: {vcpus: 1, cpu: 0.5, memory: ${memory}, disk: 1Gi}, placement: spread}]
`

// cliPlane starts a control plane in a temporary directory with hosts
// named nodes registered (2 cores, 8Gi, 100Gi; no agents) and the image
// vgrid-guest; it returns the directory, its client config and an admin
// client. It stops with the test.
func cliPlane(t *testing.T, nodes ...string) (dir, cfg string, admin *client.Client) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	cp, stop := startCP(t, ctx, dir)
	t.Cleanup(stop)
	cfg = filepath.Join(dir, "client.json")
	cc, err := client.LoadConfigFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if admin, err = client.New(cc); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		_, csr := hostCSR(t, n)
		if _, err := admin.WithToken(cp.JoinToken).RegisterNode(ctx, model.Node{Name: n,
			Capacity: model.Resources{MilliCPU: 2000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}, csr); err != nil {
			t.Fatal(err)
		}
	}
	img := model.Image{Name: "vgrid-guest", Boot: "direct", DiskFormat: "raw", Disk: model.ImageFile{Path: "/dev/null", Size: 1}}
	if err := cp.Server().RegisterImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	return dir, cfg, admin
}

// vgrid plan and vgrid grid through a real control plane: a reservation
// in the way moves the grid after it; apply --plan gets exactly that
// plan; a lease submitted in between makes a plan stale; a grid that can
// never fit gets the shortfall; list, get, export, delete.
func TestGridPlanCLI(t *testing.T) {
	ctx := context.Background()
	dir, cfg, admin := cliPlane(t, "n1", "n2")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gridFile := write("grid.yaml", cliGrid)
	// Both hosts are booked whole from +1h for 2h: a 2h grid fits only
	// after that.
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	for _, n := range []string{"r1", "r2"} {
		body := fmt.Sprintf("name: %s\nimage: vgrid-guest\nquantum: {vcpus: 2, cpu: 2, memory: 512Mi, disk: 1Gi}\nduration: 2h\nlease: {kind: reservation, start: %q}\n", n, start.Format(time.RFC3339))
		if out, err := cli(t, cfg, "workspace", "create", "--wait=false", "-f", write(n+".yaml", body)); err != nil {
			t.Fatalf("reservation %s: %v\n%s", n, err, out)
		}
	}
	out, err := cli(t, cfg, "plan", "-f", gridFile)
	if err != nil || !strings.Contains(out, "fits: from") || !strings.Contains(out, "lab-b-w-1") || !strings.Contains(out, "(planned)") {
		t.Fatalf("vgrid plan: %v\n%s", err, out)
	}
	t.Logf("vgrid plan -f grid.yaml:\n%s", out)
	out, err = cli(t, cfg, "plan", "-f", gridFile, "-o", "json")
	if err != nil {
		t.Fatalf("vgrid plan -o json: %v\n%s", err, out)
	}
	var p api.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !p.Fits || p.Start.Before(start.Add(2*time.Hour)) {
		t.Fatalf("plan: fits %v from %s; the reservation ends at %s", p.Fits, p.Start, start.Add(2*time.Hour))
	}
	out, err = cli(t, cfg, "grid", "apply", "-f", gridFile, "--plan", p.ID)
	if err != nil {
		t.Fatalf("vgrid grid apply --plan: %v\n%s", err, out)
	}
	g, err := admin.GetGrid(ctx, "lab")
	if err != nil || !g.Start.Equal(p.Start) || len(g.Clusters) != 2 {
		t.Fatalf("grid after apply: %+v %v; planned from %s", g, err, p.Start)
	}
	for _, part := range p.Parts {
		st, err := admin.GetCluster(ctx, part.Name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := admin.GetLease(ctx, strings.TrimPrefix(st.Lease, "default/"))
		if err != nil {
			t.Fatalf("lease %s: %v", st.Lease, err)
		}
		var hosts []string
		for _, m := range part.Members {
			hosts = append(hosts, m.Host)
		}
		if !l.Start.Equal(part.Start) || strings.Join(l.Hosts, ",") != strings.Join(hosts, ",") {
			t.Fatalf("cluster %s's lease %+v, planned %s on %v", part.Name, l, part.Start, hosts)
		}
	}
	// A plan made stale by a lease submitted in between.
	out, err = cli(t, cfg, "plan", "-f", gridFile, "--set", "name=lab2", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var p2 api.Plan
	if err := json.Unmarshal([]byte(out), &p2); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, cfg, "workspace", "create", "--wait=false", "-f", write("be.yaml",
		"name: between\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 0.5, memory: 512Mi, disk: 1Gi}\nduration: 1h\nlease: {kind: best-effort}\n")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = cli(t, cfg, "grid", "apply", "-f", gridFile, "--set", "name=lab2", "--plan", p2.ID)
	if err == nil || !strings.Contains(err.Error(), "the calendar changed since plan "+p2.ID) {
		t.Fatalf("apply a stale plan: %v\n%s", err, out)
	}
	if _, err := admin.GetGrid(ctx, "lab2"); err == nil {
		t.Fatal("a refused grid exists")
	}
	// Never fits: the shortfall, exit status 2.
	out, err = cli(t, cfg, "plan", "-f", gridFile, "--set", "name=lab3", "--set", "memory=64Gi")
	var st exitStatus
	if !errors.As(err, &st) || st != 2 || !strings.Contains(out, "does not fit") || !strings.Contains(out, "short: memory") {
		t.Fatalf("plan of a grid that never fits: %v\n%s", err, out)
	}
	// list, export, delete.
	if out, err := cli(t, cfg, "grid", "list"); err != nil || !strings.Contains(out, "lab ") {
		t.Fatalf("grid list: %v\n%s", err, out)
	}
	out, err = cli(t, cfg, "grid", "export", "lab")
	if err != nil || !strings.Contains(out, "name: lab-b") || strings.Contains(out, "${") {
		t.Fatalf("grid export: %v\n%s", err, out)
	}
	if out, err := cli(t, cfg, "grid", "delete", "lab"); err != nil {
		t.Fatalf("grid delete: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := admin.GetGrid(ctx, "lab"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			g, _ := admin.GetGrid(ctx, "lab")
			t.Fatalf("grid lab still there 30 s after its delete: %+v", g)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
