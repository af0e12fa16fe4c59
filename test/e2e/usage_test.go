package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/guest/guesttest"
	"vgrid/internal/model"
)

// cgroupCPUSeconds reads a workspace's CPU time from its cgroup on the
// host: v1 cpuacct.usage (ns), v2 cpu.stat usage_usec.
func cgroupCPUSeconds(t *testing.T, dirs map[string]string) float64 {
	t.Helper()
	if d := dirs["cpuacct"]; d != "" {
		b, err := os.ReadFile(filepath.Join(d, "cpuacct.usage"))
		if err != nil {
			t.Fatal(err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return float64(ns) / 1e9
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cpu.stat"))
		if err != nil {
			continue
		}
		for _, ln := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(ln, "usage_usec "); ok {
				us, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return float64(us) / 1e6
			}
		}
	}
	t.Fatalf("no CPU accounting in cgroups %v", dirs)
	return 0
}

// A guest burns CPU under its cap; `vgrid usage` shows the CPU time its
// host measured, within 10% of the cgroup's own accounting read just
// before and after.
func TestUsageMatchesCgroup(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real guests")
	}
	guesttest.RequireRoot(t)
	guesttest.RequireQEMU(t)
	img := guesttest.Image(t)
	bin := vgridBin(t)
	u := startUp(t, bin, t.TempDir(), filepath.Dir(img.Disk.Path), "--usage-every", "1s")
	t.Cleanup(u.teardown)
	cl := u.client()
	p := filepath.Join(t.TempDir(), "burn.yaml")
	spec := "name: burn\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 0.5, memory: 128Mi, disk: 1Gi}\nduration: 10m\n" +
		"context:\n  user_data: |\n    #!/bin/sh\n    while :; do :; done &\n"
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	u.mustCLI("workspace", "create", "-f", p)
	ws := waitState(t, cl, "burn", model.StateRunning, 90*time.Second)
	time.Sleep(8 * time.Second)
	before := cgroupCPUSeconds(t, ws.Status.Cgroup)
	var used float64
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var ul api.UsageList
		if err := json.Unmarshal([]byte(u.mustCLI("usage", "-o", "json")), &ul); err != nil {
			t.Fatal(err)
		}
		if len(ul.Projects) == 1 && ul.Projects[0].UsedCPUSeconds >= before {
			used = ul.Projects[0].UsedCPUSeconds
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	after := cgroupCPUSeconds(t, ws.Status.Cgroup)
	t.Logf("cgroup %.2fs .. %.2fs, vgrid usage %.2fs", before, after, used)
	if used < before*0.9 || used > after*1.1 {
		t.Fatalf("vgrid usage says %.2f CPU seconds; the cgroup counted %.2f then %.2f (want within 10%%)", used, before, after)
	}
	out := u.mustCLI("lease", "get", "burn")
	if !strings.Contains(out, "Used:") || !strings.Contains(out, "CPU seconds") || !strings.Contains(out, "Reserved:") {
		t.Errorf("lease get:\n%s", out)
	}
}
