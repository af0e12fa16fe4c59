package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/server"
	"vgrid/internal/store/bolt"
)

// rig is a control plane on TLS plus an agent with a fake driver.
type rig struct {
	t        testing.TB
	srv      *server.Server
	hs       *httptest.Server
	user     *client.Client
	join     string
	ca       string
	dataDir  string
	stateDir string
	drv      *fake.Driver
	cancel   context.CancelFunc
	done     chan struct{}
	// reports has every report the agent sent; agentCfg, if set, adjusts
	// the agent's configuration; agent is the one running.
	reports  *reportLog
	agentCfg func(*Config)
	agent    *Agent
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRig(t testing.TB) *rig { t.Helper(); return newRigWith(t, nil) }

// newRigWith lets a test adjust the control plane's configuration (e.g. its
// clock) before it starts.
func newRigWith(t testing.TB, adjust func(*server.Config)) *rig {
	t.Helper()
	return newRigAgent(t, adjust, nil)
}

// newRigAgent also lets a test adjust the agent's configuration.
func newRigAgent(t testing.TB, adjust func(*server.Config), agentCfg func(*Config)) *rig {
	t.Helper()
	return newRigCerts(t, adjust, agentCfg, 0)
}

// newRigCerts also sets the lifetime of the hosts' certificates (0: the
// default).
func newRigCerts(t testing.TB, adjust func(*server.Config), agentCfg func(*Config), certTTL time.Duration) *rig {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Logger: quiet()}
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// TLS as the control plane has it: its CA signs the server's and the
	// hosts' certificates, and the listener asks for client certificates
	// (verified at the server's clock).
	files, err := server.EnsureTLS(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetNodeCA(files, certTTL); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := server.ServerTLSConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.Time = cfg.Now
	reports := &reportLog{}
	hs := httptest.NewUnstartedServer(reports.wrap(srv.Handler()))
	hs.TLS = tlsCfg
	hs.StartTLS()
	t.Cleanup(func() { hs.Close(); st.Close() })
	ctx := context.Background()
	admin, err := srv.Bootstrap(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	join, err := srv.CreateToken(ctx, "default", server.RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CACert)
	if err != nil {
		t.Fatal(err)
	}
	ca := string(caPEM)
	user, err := client.New(client.Config{Server: hs.URL, Token: admin, CACert: ca})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, srv: srv, hs: hs, user: user, join: join, ca: ca, dataDir: t.TempDir(), stateDir: t.TempDir(),
		reports: reports, agentCfg: agentCfg}
	r.addImage()
	r.drv = fake.New(r.stateDir)
	r.startAgent()
	t.Cleanup(r.stopAgent)
	return r
}

func (r *rig) addImage() {
	dir := r.t.TempDir()
	file := func(n string) *model.ImageFile {
		p := filepath.Join(dir, n)
		data := []byte(strings.Repeat("content of "+n, 1000))
		os.WriteFile(p, data, 0o644)
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}
	}
	img := model.Image{Name: "vgrid-guest", Boot: "direct", Disk: *file("rootfs.img"), DiskFormat: "raw",
		Kernel: file("vmlinux"), Initrd: file("initrd.img"), MinDisk: 256 * model.MiB}
	if err := r.srv.RegisterImage(context.Background(), img); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) startAgent() {
	cfg := Config{
		Server:  client.Config{Server: r.hs.URL, Token: r.join, CACert: r.ca},
		DataDir: r.dataDir,
		Node:    model.Node{Name: "h1", Accel: "tcg", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}},
		Driver:  r.drv, Logger: quiet(), Resync: 200 * time.Millisecond, Heartbeat: time.Second,
	}
	if r.agentCfg != nil {
		r.agentCfg(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() { defer close(r.done); _ = a.Run(ctx) }()
	// Wait for the node to be registered and ready.
	r.eventually("node registered", func() bool {
		nodes, err := r.user.Nodes(context.Background())
		return err == nil && len(nodes) == 1 && nodes[0].Ready
	})
}

func (r *rig) stopAgent() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("timed out waiting for %s", what)
}

func (r *rig) waitState(name string, want model.State) model.Workspace {
	r.t.Helper()
	var w model.Workspace
	r.eventually(name+" "+string(want), func() bool {
		var err error
		w, err = r.user.GetWorkspace(context.Background(), name)
		return err == nil && w.Status.State == want
	})
	return w
}

const spec = "name: w1\nimage: vgrid-guest\nquantum: {vcpus: 2, cpu: 0.5, memory: 512Mi, disk: 1Gi}\nduration: 1h\ncontext: {hostname: box}\n"

func TestAgentRunsStopsStartsDeletes(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	if g := w.Status.Guest; g == nil || g.VCPUs != 2 {
		t.Fatalf("guest report %+v, want 2 vcpus", g)
	}
	tm := w.Status.Timings
	if tm.AgentReceived.IsZero() || tm.ProcessStarted.IsZero() || tm.GuestReady.IsZero() {
		t.Fatalf("timings not all recorded: %+v", tm)
	}
	if tm.AgentReceived.Before(tm.Created) || tm.ProcessStarted.Before(tm.AgentReceived) {
		t.Fatalf("timings out of order: %+v", tm)
	}
	inst, err := r.drv.Get(ctx, w.ID)
	if err != nil || inst.State != hypervisor.InstanceRunning {
		t.Fatalf("driver: %+v %v", inst, err)
	}
	// The image files are in the cache under their SHA-256, read-only.
	cached, _ := filepath.Glob(filepath.Join(r.dataDir, "images", "*"))
	if len(cached) != 3 {
		t.Fatalf("image cache has %d files, want 3", len(cached))
	}
	if _, err := r.user.StopWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateStopped)
	if inst, _ := r.drv.Get(ctx, w.ID); inst.State != hypervisor.InstanceStopped {
		t.Fatalf("driver still has it %s", inst.State)
	}
	if _, err := r.user.StartWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	w2 := r.waitState("w1", model.StateRunning)
	if w2.Status.Generation != 2 || w2.Status.PID == w.Status.PID {
		t.Fatalf("restart: generation %d pid %d (was %d)", w2.Status.Generation, w2.Status.PID, w.Status.PID)
	}
	if err := r.user.DeleteWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	r.eventually("w1 gone", func() bool {
		_, err := r.user.GetWorkspace(ctx, "w1")
		return client.IsNotFound(err)
	})
	if _, err := r.drv.Get(ctx, w.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("driver still knows the instance: %v", err)
	}
}

func TestAgentRestartAdoptsWithoutRestarting(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	r.stopAgent()
	r.drv.Close()
	// A new agent process: a new driver on the same host state, same data dir.
	r.drv = fake.New(r.stateDir)
	r.startAgent()
	time.Sleep(600 * time.Millisecond) // a few resyncs
	w2 := r.waitState("w1", model.StateRunning)
	if w2.Status.PID != w.Status.PID || w2.Status.Generation != 1 {
		t.Fatalf("after agent restart: pid %d gen %d, want the same pid %d, gen 1", w2.Status.PID, w2.Status.Generation, w.Status.PID)
	}
}

func TestAgentReportsCrashAndStartFailure(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	r.drv.Crash(w.ID, "killed by the kernel OOM killer")
	w = r.waitState("w1", model.StateStopped)
	if w.Desired != model.DesiredStopped || !strings.Contains(w.Status.Reason, "OOM") {
		t.Fatalf("after crash: desired %s reason %q", w.Desired, w.Status.Reason)
	}
	// It stays stopped: the agent does not restart a guest that died.
	time.Sleep(500 * time.Millisecond)
	if inst, _ := r.drv.Get(ctx, w.ID); inst.State != hypervisor.InstanceStopped {
		t.Fatalf("the agent restarted a crashed guest")
	}

	r.drv.SetFaults(fake.Faults{StartErr: errors.New("qemu: could not open disk")})
	if _, err := r.user.CreateWorkspace(ctx, []byte(strings.Replace(spec, "w1", "w2", 1))); err != nil {
		t.Fatal(err)
	}
	w = r.waitState("w2", model.StateFailed)
	if !strings.Contains(w.Status.Reason, "could not open disk") {
		t.Fatalf("failed reason %q", w.Status.Reason)
	}
}

// BenchmarkCreateToProcessStart measures the control plane plus agent
// overhead from the API call to the driver's Start, with the fake driver
// (so no QEMU exec is counted; bench/startlatency measures the real thing).
func BenchmarkCreateToProcessStart(b *testing.B) {
	r := newRig(b)
	r.srv.SetRateLimit(server.RateLimit{Disabled: true}) // it polls every 200 µs
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := "b" + strconv.Itoa(i)
		if _, err := r.user.CreateWorkspace(ctx, []byte(strings.Replace(spec, "name: w1", "name: "+name, 1))); err != nil {
			b.Fatal(err)
		}
		for {
			w, err := r.user.GetWorkspace(ctx, name)
			if err != nil {
				b.Fatal(err)
			}
			if w.Status.State == model.StateRunning {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		b.StopTimer()
		_ = r.user.DeleteWorkspace(ctx, name)
		b.StartTimer()
	}
}
