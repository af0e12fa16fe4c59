package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
)

// reportLog records the reports an agent sends to the control plane.
type reportLog struct {
	mu   sync.Mutex
	reps []sentAt
}

type sentAt struct {
	at time.Time
	r  api.AgentReport
}

// wrap records each report (PUT .../status) on its way to h.
func (l *reportLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/status") {
			b, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(b))
			var r api.AgentReport
			if json.Unmarshal(b, &r) == nil {
				l.mu.Lock()
				l.reps = append(l.reps, sentAt{time.Now(), r})
				l.mu.Unlock()
			}
		}
		h.ServeHTTP(w, req)
	})
}

// since returns the reports about id sent from the n-th report on.
func (l *reportLog) since(n int, id string) []sentAt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sentAt
	for _, s := range l.reps[min(n, len(l.reps)):] {
		if s.r.ID == id {
			out = append(out, s)
		}
	}
	return out
}

func (l *reportLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reps)
}

// waitReport waits for a report about id, sent from the n-th report on,
// that satisfies ok, and returns it.
func (r *rig) waitReport(what string, n int, id string, ok func(api.AgentReport) bool) api.AgentReport {
	r.t.Helper()
	var got api.AgentReport
	r.eventually(what, func() bool {
		for _, s := range r.reports.since(n, id) {
			if ok(s.r) {
				got = s.r
				return true
			}
		}
		return false
	})
	return got
}

// The CPU counter of a workspace's process reaches the control plane: at
// once with a report sent for another reason, on its own when it moved
// enough and at most once per UsageEvery, and finally with the report
// that the process ended (stopped, crashed, suspended).
func TestAgentReportsCPUSeconds(t *testing.T) {
	const every = 500 * time.Millisecond
	r := newRigAgent(t, nil, func(c *Config) { c.UsageEvery = every })
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	id := w.ID

	// Refreshed while it runs, though nothing else changed.
	n := r.reports.len()
	if err := r.drv.SetCPUSeconds(id, 1.25); err != nil {
		t.Fatal(err)
	}
	rep := r.waitReport("report of 1.25 s", n, id, func(a api.AgentReport) bool { return a.CPUSeconds == 1.25 })
	if rep.State != model.StateRunning || rep.PID != w.Status.PID {
		t.Errorf("CPU refresh: got %+v, want running as pid %d", rep, w.Status.PID)
	}

	// A move below usageMinDelta is not worth a report of its own.
	n = r.reports.len()
	if err := r.drv.SetCPUSeconds(id, 1.25+usageMinDelta/2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * every)
	if got := r.reports.since(n, id); len(got) != 0 {
		t.Errorf("a move of %.3f s: got %d reports (%+v), want none", usageMinDelta/2, len(got), got[0].r)
	}

	// A counter that moves all the time gets one report per UsageEvery
	// (plus up to a resync of slack), no more.
	n = r.reports.len()
	stop := make(chan struct{})
	spun := make(chan float64)
	go func() {
		cpu := 2.0
		for {
			select {
			case <-stop:
				spun <- cpu
				return
			case <-time.After(10 * time.Millisecond):
				cpu += 0.1
				_ = r.drv.SetCPUSeconds(id, cpu)
			}
		}
	}()
	const window = 3 * time.Second
	time.Sleep(window)
	close(stop)
	last := <-spun
	got := r.reports.since(n, id)
	t.Logf("%d reports in %s with the counter moving every 10 ms (UsageEvery %s)", len(got), window, every)
	if max := int(window/every) + 1; len(got) > max || len(got) < 2 {
		t.Errorf("got %d reports in %s, want 2..%d", len(got), window, max)
	}
	for i := 1; i < len(got); i++ {
		if gap := got[i].at.Sub(got[i-1].at); gap < every/2 {
			t.Errorf("reports %d and %d only %s apart, want about %s", i-1, i, gap, every)
		}
		if got[i].r.CPUSeconds <= got[i-1].r.CPUSeconds {
			t.Errorf("report %d: counter %v after %v, want it growing", i, got[i].r.CPUSeconds, got[i-1].r.CPUSeconds)
		}
	}

	// Stopped: the final value, at once (not held back by UsageEvery).
	n = r.reports.len()
	if _, err := r.user.StopWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	rep = r.waitReport("stopped report", n, id, func(a api.AgentReport) bool { return a.State == model.StateStopped })
	if rep.CPUSeconds != last {
		t.Errorf("stopped report: got %v CPU seconds, want the final %v", rep.CPUSeconds, last)
	}

	// Started again: a new process, counting from 0.
	n = r.reports.len()
	if _, err := r.user.StartWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	w = r.waitState("w1", model.StateRunning)
	for _, s := range r.reports.since(n, id) {
		if s.r.State != model.StateStopped && s.r.CPUSeconds != 0 {
			t.Errorf("report of the new process: got %v CPU seconds, want 0: %+v", s.r.CPUSeconds, s.r)
		}
	}
	if err := r.drv.SetCPUSeconds(id, 0.75); err != nil {
		t.Fatal(err)
	}
	r.waitReport("report of 0.75 s", n, id, func(a api.AgentReport) bool { return a.CPUSeconds == 0.75 })

	// Suspended (as the calendar's preemption does): the final value.
	if err := r.drv.SetCPUSeconds(id, 0.875); err != nil {
		t.Fatal(err)
	}
	n = r.reports.len()
	r.agent.async(ctx, w, r.agent.suspend)
	rep = r.waitReport("suspended report", n, id, func(a api.AgentReport) bool { return a.State == model.StateSuspended })
	if rep.CPUSeconds != 0.875 {
		t.Errorf("suspended report: got %v CPU seconds, want 0.875", rep.CPUSeconds)
	}
	// Desired is still running: the agent resumes it, a new process (the
	// store may still say Running from before the suspension: wait for the
	// driver's instance).
	r.eventually("the agent resumes it", func() bool { return r.drv.SetCPUSeconds(id, 4) == nil })

	// Crashed: the driver saw the end; the final value comes with it.
	n = r.reports.len()
	if err := r.drv.Crash(id, "qemu died"); err != nil {
		t.Fatal(err)
	}
	rep = r.waitReport("crash report", n, id, func(a api.AgentReport) bool { return a.State == model.StateStopped })
	if rep.CPUSeconds != 4 {
		t.Errorf("crash report: got %v CPU seconds, want 4", rep.CPUSeconds)
	}
}

// A driver that does not know a process's final counter: the last one read
// of that same process stands in, never one of another process.
func TestCPUSecondsFallback(t *testing.T) {
	d := fake.New(t.TempDir())
	defer d.Close()
	a, err := New(Config{Driver: d, DataDir: t.TempDir(), Logger: quiet(),
		Node: model.Node{Name: "h1", Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB, Disk: model.GiB}}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	running := hypervisor.Instance{State: hypervisor.InstanceRunning, StartedAt: t0, CPUSeconds: 3.5}
	if got := a.cpuSeconds("x", running, model.StateRunning); got != 3.5 {
		t.Errorf("running: got %v, want 3.5", got)
	}
	tests := []struct {
		name string
		in   hypervisor.Instance
		st   model.State
		want float64
	}{
		{"final known", hypervisor.Instance{State: hypervisor.InstanceStopped, StartedAt: t0, FinalCPUSeconds: 3.75}, model.StateStopped, 3.75},
		{"final unknown", hypervisor.Instance{State: hypervisor.InstanceStopped, StartedAt: t0}, model.StateStopped, 3.5},
		{"suspended, final unknown", hypervisor.Instance{State: hypervisor.InstanceSuspended, StartedAt: t0}, model.StateSuspended, 3.5},
		{"another process", hypervisor.Instance{State: hypervisor.InstanceStopped, StartedAt: t0.Add(time.Second)}, model.StateStopped, 0},
		{"process unknown", hypervisor.Instance{State: hypervisor.InstanceStopped}, model.StateStopped, 0},
	}
	for _, tt := range tests {
		if got := a.cpuSeconds("x", tt.in, tt.st); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := a.cpuSeconds("y", hypervisor.Instance{State: hypervisor.InstanceStopped, StartedAt: t0}, model.StateStopped); got != 0 {
		t.Errorf("another workspace: got %v, want 0", got)
	}
}
