package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/store/bolt"
)

// families is one scrape, parsed.
type families map[string]*dto.MetricFamily

// scrapeMetrics GETs url with token ("" for none) and returns the status
// and, for a 200, the parsed families.
func scrapeMetrics(t *testing.T, hc *http.Client, url, token string) (int, families) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return resp.StatusCode, fs
}

// matches says whether m has every label of want.
func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// sum adds up the values of name's series that have the labels of want
// (a histogram's sample count); ok is false if there is none.
func (fs families) sum(name string, want map[string]string) (float64, bool) {
	f := fs[name]
	if f == nil {
		return 0, false
	}
	var s float64
	found := false
	for _, m := range f.GetMetric() {
		if !matches(m, want) {
			continue
		}
		found = true
		switch {
		case m.Gauge != nil:
			s += m.Gauge.GetValue()
		case m.Counter != nil:
			s += m.Counter.GetValue()
		case m.Histogram != nil:
			s += float64(m.Histogram.GetSampleCount())
		}
	}
	return s, found
}

func (fs families) must(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := fs.sum(name, want)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, want)
	}
	return v
}

// TestMetricsEndToEnd runs a control plane over bolt with an agent on the
// fake driver, a small workload of every lease kind (one preempted, one
// stopped), and reads /metrics as Prometheus would.
func TestMetricsEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: st, Logger: discardLogger(), ReconcileEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs, _, caPEM := serveTLS(t, srv, srv.Handler(), nil)
	t.Cleanup(func() { hs.Close(); st.Close() })
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-runDone }()

	admin, err := srv.Bootstrap(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	user, err := srv.CreateToken(ctx, "default", RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	join, err := srv.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Server: hs.URL, Token: admin, CACert: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv}
	e.addImage("vgrid-guest")

	// The process-wide histograms count every test's events: compare
	// with what they had before.
	hc := hs.Client()
	url := hs.URL + "/metrics"
	_, before := scrapeMetrics(t, hc, url, admin)

	drv := fake.New(t.TempDir())
	ag, err := agent.New(agent.Config{
		Server:  client.Config{Server: hs.URL, Token: join, CACert: caPEM},
		DataDir: t.TempDir(),
		Node:    model.Node{Name: "h1", Accel: "tcg", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}},
		Driver:  drv, Logger: discardLogger(), Resync: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	agDone := make(chan struct{})
	go func() { defer close(agDone); _ = ag.Run(ctx) }()
	defer func() { cancel(); <-agDone }()

	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("host ready", func() bool {
		ns, err := cl.Nodes(ctx)
		return err == nil && len(ns) == 1 && ns[0].Ready
	})
	state := func(name string, want model.State) {
		t.Helper()
		eventually(name+" "+string(want), func() bool {
			w, err := cl.GetWorkspace(ctx, name)
			return err == nil && w.Status.State == want
		})
	}
	create := func(name, cpu, mem, lease string) {
		t.Helper()
		s := fmt.Sprintf("name: %s\nimage: vgrid-guest\nquantum: {vcpus: 3, cpu: %s, memory: %s, disk: 1Gi}\nduration: 1h\n", name, cpu, mem)
		if lease != "" {
			s += "lease: " + lease + "\n"
		}
		if _, err := cl.CreateWorkspace(ctx, []byte(s)); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}

	// 4 cores, filled by three lease kinds.
	create("be", "3", "1Gi", "{kind: best-effort}")
	state("be", model.StateRunning)
	create("imm", "0.5", "512Mi", "")
	create("dl", "0.5", "512Mi", fmt.Sprintf("{kind: deadline, deadline: %q}", time.Now().Add(3*time.Hour).UTC().Format(time.RFC3339)))
	for _, n := range []string{"imm", "dl"} {
		state(n, model.StateRunning)
	}

	_, mid := scrapeMetrics(t, hc, url, admin)
	for _, k := range []string{"best-effort", "immediate", "deadline"} {
		if v := mid.must(t, "vgrid_leases", map[string]string{"kind": k, "state": "running"}); v != 1 {
			t.Errorf("vgrid_leases{kind=%s,state=running} = %v, want 1", k, v)
		}
	}
	// Booked now: 3+0.5+0.5 of 4 cores, 1Gi+2×512Mi of 8Gi.
	if v := mid.must(t, "vgrid_calendar_booked_ratio", map[string]string{"resource": "cpu", "window": "now"}); v != 1 {
		t.Errorf("cpu booked now = %v, want 1", v)
	}
	if v := mid.must(t, "vgrid_calendar_booked_ratio", map[string]string{"resource": "memory", "window": "now"}); math.Abs(v-2.0/8) > 1e-9 {
		t.Errorf("memory booked now = %v, want %v", v, 2.0/8)
	}
	// Over the next hour: the leases end a little before its end (they
	// began a few seconds ago).
	if v := mid.must(t, "vgrid_calendar_booked_ratio", map[string]string{"resource": "cpu", "window": "1h"}); v < 0.95 || v > 1 {
		t.Errorf("cpu booked over the next hour = %v, want in [0.95, 1]", v)
	}

	// A reservation that needs the best-effort lease's room: that one is
	// suspended, and the reservation started by the reconciler a little
	// after its due time. Then one is stopped.
	create("res", "1", "512Mi", fmt.Sprintf("{kind: reservation, start: %q}", time.Now().Add(3*time.Second).UTC().Format(time.RFC3339)))
	state("be", model.StateSuspended)
	state("res", model.StateRunning)
	if _, err := cl.StopWorkspace(ctx, "imm"); err != nil {
		t.Fatal(err)
	}
	state("imm", model.StateStopped)
	// A request the mux has no route for.
	if resp, err := hc.Get(hs.URL + "/nowhere/at/all"); err == nil {
		resp.Body.Close()
	}

	// No token: 401; a user's token: 403.
	if code, _ := scrapeMetrics(t, hc, url, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := scrapeMetrics(t, hc, url, user); code != http.StatusForbidden {
		t.Errorf("user token: %d, want 403", code)
	}
	time.Sleep(300 * time.Millisecond) // a heartbeat or so
	code, after := scrapeMetrics(t, hc, url, admin)
	if code != http.StatusOK {
		t.Fatalf("admin token: %d", code)
	}

	// Requests, by route pattern and code.
	if v := after.must(t, "vgrid_http_request_duration_seconds", map[string]string{"route": "POST /api/v1/workspaces", "code": "201"}); v != 4 {
		t.Errorf("POST /api/v1/workspaces 201: %v requests, want 4", v)
	}
	if v, _ := after.sum("vgrid_http_request_duration_seconds", map[string]string{"route": "GET /metrics", "code": "401"}); v != 1 {
		t.Errorf("GET /metrics 401: %v requests, want 1", v)
	}
	if v, _ := after.sum("vgrid_http_request_duration_seconds", map[string]string{"route": "GET /metrics", "code": "403"}); v != 1 {
		t.Errorf("GET /metrics 403: %v requests, want 1", v)
	}
	if v := after.must(t, "vgrid_http_request_duration_seconds", map[string]string{"route": "GET /api/v1/workspaces/{name}", "code": "200"}); v < 5 {
		t.Errorf("GET /api/v1/workspaces/{name}: %v requests, want at least 5", v)
	}
	if v := after.must(t, "vgrid_http_request_duration_seconds", map[string]string{"route": "unmatched", "code": "404"}); v != 1 {
		t.Errorf("unmatched 404: %v requests, want 1", v)
	}
	if v := after.must(t, "vgrid_http_request_duration_seconds", map[string]string{"route": "PUT /api/v1/nodes/{node}/heartbeat"}); v < 1 {
		t.Errorf("no heartbeat request counted")
	}
	for _, m := range after["vgrid_http_request_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && (strings.Contains(l.GetValue(), "/be") || strings.Contains(l.GetValue(), "/h1")) {
				t.Errorf("a raw path is a route label: %q", l.GetValue())
			}
		}
	}

	// Leases by kind and state.
	for _, c := range []struct {
		kind, state string
		want        float64
	}{
		{"immediate", "running", 0}, {"immediate", "done", 1}, {"best-effort", "suspended", 1},
		{"deadline", "running", 1}, {"reservation", "running", 1}, {"reservation", "queued", 0},
	} {
		if v := after.must(t, "vgrid_leases", map[string]string{"kind": c.kind, "state": c.state}); v != c.want {
			t.Errorf("vgrid_leases{kind=%s,state=%s} = %v, want %v", c.kind, c.state, v, c.want)
		}
	}
	if v := after.must(t, "vgrid_leases", nil); v != 4 {
		t.Errorf("%v leases in all, want 4", v)
	}
	// Booked now: dl 0.5 + res 1 of 4 (be saved, imm over).
	if v := after.must(t, "vgrid_calendar_booked_ratio", map[string]string{"resource": "cpu", "window": "now"}); v != 0.375 {
		t.Errorf("cpu booked now = %v, want 0.375", v)
	}
	for _, r := range []string{"cpu", "memory", "disk"} {
		for _, w := range []string{"now", "1h"} {
			if v := after.must(t, "vgrid_calendar_booked_ratio", map[string]string{"resource": r, "window": w}); v <= 0 || v > 1 {
				t.Errorf("booked %s %s = %v, want in (0, 1]", r, w, v)
			}
		}
	}

	// Hosts and heartbeats.
	if v := after.must(t, "vgrid_node_heartbeat_age_seconds", map[string]string{"node": "h1"}); v < 0 || v > 3 {
		t.Errorf("heartbeat age %v s, want under 3", v)
	}
	if v := after.must(t, "vgrid_nodes", map[string]string{"state": "Ready"}); v != 1 {
		t.Errorf("%v hosts Ready, want 1", v)
	}
	hb0, _ := before.sum("vgrid_heartbeats_total", map[string]string{"node": "h1"})
	if v := after.must(t, "vgrid_heartbeats_total", map[string]string{"node": "h1"}); v-hb0 < 2 {
		t.Errorf("%v heartbeats counted, want at least 2", v-hb0)
	}

	// Decisions, from the process-wide histograms: one admission and one
	// placement per create, by kind.
	for kind, n := range map[string]float64{"immediate": 1, "best-effort": 1, "deadline": 1, "reservation": 1} {
		for _, name := range []string{"vgrid_lease_admission_duration_seconds", "vgrid_calendar_placement_duration_seconds"} {
			b, _ := before.sum(name, map[string]string{"kind": kind})
			if v := after.must(t, name, map[string]string{"kind": kind}); v-b != n {
				t.Errorf("%s{kind=%s}: %v more, want %v", name, kind, v-b, n)
			}
		}
	}
	lag0, _ := before.sum("vgrid_reconcile_lag_seconds", map[string]string{"action": "start"})
	if v := after.must(t, "vgrid_reconcile_lag_seconds", map[string]string{"action": "start"}); v-lag0 < 1 {
		t.Errorf("the reservation's start is not in the reconcile lag")
	}
	sus0, _ := before.sum("vgrid_workspace_suspend_duration_seconds", map[string]string{"node": "h1"})
	if v := after.must(t, "vgrid_workspace_suspend_duration_seconds", map[string]string{"node": "h1"}); v-sus0 != 1 {
		t.Errorf("%v suspensions timed, want 1", v-sus0)
	}
	if v := after.must(t, "vgrid_leader", nil); v != 1 {
		t.Errorf("vgrid_leader = %v on a single control plane, want 1", v)
	}
	after.must(t, "vgrid_leadership_changes_total", nil)
	after.must(t, "go_goroutines", nil)

	// The reservation cancelled: the suspended best-effort lease resumes,
	// and its resume is timed; every guest's boot was.
	if _, err := cl.CancelLease(ctx, "res"); err != nil {
		t.Fatal(err)
	}
	state("be", model.StateRunning)
	_, last := scrapeMetrics(t, hc, url, admin)
	res0, _ := before.sum("vgrid_workspace_resume_duration_seconds", map[string]string{"node": "h1"})
	if v := last.must(t, "vgrid_workspace_resume_duration_seconds", map[string]string{"node": "h1"}); v-res0 != 1 {
		t.Errorf("%v resumes timed, want 1", v-res0)
	}
	boot0, _ := before.sum("vgrid_workspace_boot_duration_seconds", map[string]string{"node": "h1"})
	if v := last.must(t, "vgrid_workspace_boot_duration_seconds", map[string]string{"node": "h1"}); v-boot0 < 4 {
		t.Errorf("%v boots timed, want at least 4 (be, imm, dl, res)", v-boot0)
	}
}
