package agent

import (
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/metrics"
	"vgrid/internal/model"
)

// scrapeAgent serves GET /metrics from the agent's handler, as `vgrid
// agent --metrics-listen` does, and parses it.
func scrapeAgent(t *testing.T, a *Agent) map[string]*dto.MetricFamily {
	t.Helper()
	h, err := metrics.AgentHandler(a.MetricsCollector())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fs
}

// workspaceValue is the value of name for workspace id (ok false if the
// scrape has none).
func workspaceValue(fs map[string]*dto.MetricFamily, name, id string) (float64, bool) {
	for _, m := range fs[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "id" && l.GetValue() == id {
				if m.Counter != nil {
					return m.Counter.GetValue(), true
				}
				return m.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

func TestMetricsOfWorkspaces(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	if err := r.drv.SetCPUSeconds(w.ID, 12.5); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.WriteDisk(w.ID, make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	fs := scrapeAgent(t, r.agent)
	for _, c := range []struct {
		name string
		want float64
	}{
		{"vgrid_workspace_cpu_seconds_total", 12.5},
		{"vgrid_workspace_memory_bytes", float64(512*model.MiB) / 4}, // the fake's figure
		{"vgrid_workspace_disk_written_bytes_total", 3000},
		{"vgrid_workspace_disk_read_bytes_total", 0},
		{"vgrid_workspace_disk_allocated_bytes", 3000},
	} {
		v, ok := workspaceValue(fs, c.name, w.ID)
		if !ok || v != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.name, v, ok, c.want)
		}
	}
	m := fs["vgrid_workspace_cpu_seconds_total"].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["workspace"] != "w1" || labels["project"] != "default" || labels["id"] != w.ID {
		t.Errorf("labels %v, want workspace w1, project default, id %s", labels, w.ID)
	}
	if _, ok := fs["vgrid_workspace_network_receive_bytes_total"]; ok {
		t.Errorf("network bytes for a workspace without overlay NICs")
	}
	if fs["go_goroutines"] == nil {
		t.Errorf("no Go runtime metrics")
	}

	// Stopped: no process to count, its disk still there.
	if _, err := r.user.StopWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateStopped)
	fs = scrapeAgent(t, r.agent)
	if v, ok := workspaceValue(fs, "vgrid_workspace_cpu_seconds_total", w.ID); ok {
		t.Errorf("a stopped workspace has cpu seconds %v", v)
	}
	if v, ok := workspaceValue(fs, "vgrid_workspace_disk_allocated_bytes", w.ID); !ok || v != 3000 {
		t.Errorf("stopped workspace's disk: %v (present %v), want 3000", v, ok)
	}
}

// TestMetricsTapCounters reads a workspace's network bytes from its taps'
// counters (a directory standing for /sys/class/net), from the guest's
// side: what a tap transmits the guest received.
func TestMetricsTapCounters(t *testing.T) {
	drv := fake.New(t.TempDir())
	a, err := New(Config{Driver: drv, DataDir: t.TempDir(), Logger: quiet(),
		Node: model.Node{Name: "h9", Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB, Disk: model.GiB}}})
	if err != nil {
		t.Fatal(err)
	}
	img := hypervisor.LocalImage{Name: "img", Boot: "direct", Disk: "/img/disk", DiskFormat: "raw", Kernel: "/img/vmlinux"}
	if _, err := drv.Start(context.Background(), hypervisortest.Spec("w-net", img)); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.assigned["w-net"] = model.Workspace{ID: "w-net", Project: "p", Spec: model.WorkspaceSpec{Name: "net"}, NICs: make([]model.NIC, 2)}
	a.mu.Unlock()

	dir := t.TempDir()
	old := sysClassNet
	sysClassNet = dir
	t.Cleanup(func() { sysClassNet = old })
	for i, c := range [][2]string{{"100", "1000"}, {"20", "3000\n"}} {
		st := filepath.Join(dir, tapName("w-net", i), "statistics")
		if err := os.MkdirAll(st, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(st, "rx_bytes"), []byte(c[0]), 0o644)
		os.WriteFile(filepath.Join(st, "tx_bytes"), []byte(c[1]), 0o644)
	}
	fs := scrapeAgent(t, a)
	if v, ok := workspaceValue(fs, "vgrid_workspace_network_receive_bytes_total", "w-net"); !ok || v != 4000 {
		t.Errorf("received %v (present %v), want 4000: the taps' transmit counters", v, ok)
	}
	if v, ok := workspaceValue(fs, "vgrid_workspace_network_transmit_bytes_total", "w-net"); !ok || v != 120 {
		t.Errorf("sent %v (present %v), want 120: the taps' receive counters", v, ok)
	}
	// A workspace the driver does not have is left out, not an error.
	a.mu.Lock()
	a.assigned["w-none"] = model.Workspace{ID: "w-none", Project: "p", Spec: model.WorkspaceSpec{Name: "none"}}
	a.mu.Unlock()
	fs = scrapeAgent(t, a)
	if _, ok := workspaceValue(fs, "vgrid_workspace_disk_allocated_bytes", "w-none"); ok {
		t.Errorf("a workspace not started here has metrics")
	}
}

// histCount is the sample count of the histogram name with labels (a
// subset of its labels) in g, summed over the matching series.
func histCount(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue series
				}
			}
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}
