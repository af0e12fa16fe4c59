package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/guest/guesttest"
	"vgrid/internal/model"
	"vgrid/internal/netgrid"
	"vgrid/internal/netgrid/gridtest"
)

// TestGridOnOneMachine runs `vgrid up --hosts 3`: three hosts, each a
// network namespace with its own agent, and three small guests spread over
// them, each QEMU inside its host's namespace. Then the documented
// multi-machine path (docs/multi-machine.md) on the same bridge: `vgrid
// server`, a join token from `vgrid token create --role join`, and `vgrid
// agent` in a fourth namespace.
func TestGridOnOneMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real guests")
	}
	guesttest.RequireRoot(t)
	guesttest.RequireQEMU(t)
	gridtest.Require(t)
	img := guesttest.Image(t)
	imgDir := filepath.Dir(img.Disk.Path)
	start := time.Now()
	g := gridtest.Start(t, gridtest.Options{Hosts: 3, Images: []string{imgDir}, Policy: "placement: spread\n"})
	t.Logf("grid of 3 ready in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	// Three ready nodes, with the namespaces' addresses and equal shares.
	nodes, err := g.Client.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	share, err := netgrid.DefaultShare(3, g.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*gridtest.Host{}
	for _, h := range g.Hosts {
		byName[h.Name] = h
	}
	addrs := map[string]bool{}
	for _, n := range nodes {
		h := byName[n.Name]
		if h == nil || !n.Ready {
			t.Fatalf("node %s (ready %v) is not one of the grid's hosts", n.Name, n.Ready)
		}
		if n.Address != h.Address || addrs[n.Address] {
			t.Errorf("node %s: address %q, want %s (distinct)", n.Name, n.Address, h.Address)
		}
		addrs[n.Address] = true
		if n.Labels["grid-host"] != fmt.Sprint(h.Index) {
			t.Errorf("node %s: labels %v, want grid-host=%d", n.Name, n.Labels, h.Index)
		}
		if n.Capacity.MilliCPU != share.MilliCPU || n.Capacity.Memory != share.Memory {
			t.Errorf("node %s: capacity %dm %s, want the share %dm %s", n.Name, n.Capacity.MilliCPU, n.Capacity.Memory.Human(),
				share.MilliCPU, share.Memory.Human())
		}
		// Disk is free space / 3 at the agent's start: within 10% of now.
		if d := float64(n.Capacity.Disk) / float64(share.Disk); d < 0.9 || d > 1.1 {
			t.Errorf("node %s: disk %s, want about %s", n.Name, n.Capacity.Disk.Human(), share.Disk.Human())
		}
	}

	// Three small workspaces spread over the three hosts.
	specDir := t.TempDir()
	for i := 1; i <= 3; i++ {
		p := filepath.Join(specDir, fmt.Sprintf("w%d.yaml", i))
		spec := fmt.Sprintf("name: w%d\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 0.25, memory: 128Mi, disk: 1Gi}\nduration: 1h\n", i)
		if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := g.CLI("workspace", "create", "-f", p, "--wait=false"); err != nil {
			t.Fatalf("create w%d: %v\n%s\nlog:\n%s", i, err, out, g.Log())
		}
	}
	onHost := map[string]string{}
	pids := map[string]int{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("w%d", i)
		w := waitRunning(t, g, name, 150*time.Second)
		h := byName[w.Status.Node]
		if h == nil {
			t.Fatalf("%s runs on %q, not a grid host", name, w.Status.Node)
		}
		if other, ok := onHost[h.Name]; ok {
			t.Errorf("%s and %s both on %s: not spread", other, name, h.Name)
		}
		onHost[h.Name] = name
		pids[name] = w.Status.PID
		in, err := h.InNamespace(w.Status.PID)
		if err != nil || !in {
			t.Errorf("%s: QEMU pid %d is not in namespace %s (%v)", name, w.Status.PID, h.Namespace, err)
		}
		for _, o := range g.Hosts {
			if o != h {
				if in, _ := o.InNamespace(w.Status.PID); in {
					t.Errorf("%s: QEMU pid %d is in %s too", name, w.Status.PID, o.Namespace)
				}
			}
		}
	}
	t.Logf("3 guests running at %s", time.Since(start).Round(time.Millisecond))

	// A killed agent is started again by vgrid up; its guest keeps running
	// and is adopted.
	h1 := g.Hosts[0]
	old := h1.PID()
	if err := h1.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for h1.PID() == old || h1.PID() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agent of %s not restarted after kill -9; log:\n%s", h1.Name, h1.AgentLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if name, ok := onHost[h1.Name]; ok {
		w := waitRunning(t, g, name, 30*time.Second)
		if w.Status.PID != pids[name] {
			t.Errorf("%s: pid %d after the agent's restart, want the same %d", name, w.Status.PID, pids[name])
		}
	}

	// vgrid down --destroy-hosts stops vgrid up and its agents, and refuses
	// to remove namespaces where guests run, naming them.
	down := exec.Command(g.Bin, "down", "--data-dir", g.DataDir, "--destroy-hosts")
	out, err := down.CombinedOutput()
	for _, h := range g.Hosts {
		pid := pids[onHost[h.Name]]
		if err == nil || !strings.Contains(string(out), h.Namespace+": ") || !strings.Contains(string(out), fmt.Sprint(pid)) {
			t.Errorf("down --destroy-hosts with guests running: %v, want a refusal naming %s and its QEMU pid %d:\n%s", err, h.Namespace, pid, out)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); g.Running(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("vgrid up still runs after vgrid down:\n%s", out)
		}
	}
	for _, h := range g.Hosts {
		if p := h.PID(); p > 0 && pidAlive(p) {
			t.Errorf("agent of %s (pid %d) survived vgrid down", h.Name, p)
		}
		if _, err := os.Stat(netgrid.NamespacePath(h.Namespace)); err != nil {
			t.Errorf("namespace %s removed although guests run: %v", h.Namespace, err)
		}
	}
	for name, pid := range pids {
		if !pidAlive(pid) {
			t.Errorf("%s: QEMU pid %d died with vgrid down", name, pid)
		}
	}
	// vgrid up --hosts 3 again adopts them: new agents, same guests, still
	// Running after the agents' first resync.
	g.Up()
	time.Sleep(4 * time.Second)
	for name, pid := range pids {
		if w := waitRunning(t, g, name, 60*time.Second); w.Status.PID != pid || !pidAlive(pid) {
			t.Errorf("%s: pid %d after vgrid up again, want the same %d, alive", name, w.Status.PID, pid)
		}
	}

	// Freeze stops the agent and the guest of a host (state T), Thaw
	// continues them.
	h2 := g.Hosts[1]
	frozen := h2.PIDs()
	if len(frozen) < 2 {
		t.Fatalf("namespace %s holds %v, want the agent and a QEMU", h2.Namespace, frozen)
	}
	if err := h2.Freeze(); err != nil {
		t.Fatal(err)
	}
	for _, p := range frozen {
		if st := procState(p); st != "T" {
			t.Errorf("frozen %s: pid %d in state %q, want T", h2.Name, p, st)
		}
	}
	if err := h2.Thaw(); err != nil {
		t.Fatal(err)
	}
	for _, p := range frozen {
		if st := procState(p); st == "T" {
			t.Errorf("thawed %s: pid %d still stopped", h2.Name, p)
		}
	}
	t.Logf("down and up again, guests adopted, at %s", time.Since(start).Round(time.Millisecond))

	t.Run("MultiMachinePath", func(t *testing.T) { multiMachinePath(t, g, imgDir) })
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

func waitRunning(t *testing.T, g *gridtest.Grid, name string, within time.Duration) model.Workspace {
	t.Helper()
	return waitRunningOn(t, g.Client, name, within, g.Log)
}

func waitRunningOn(t *testing.T, cl *client.Client, name string, within time.Duration, log func() string) model.Workspace {
	t.Helper()
	deadline := time.Now().Add(within)
	var w model.Workspace
	var err error
	for time.Now().Before(deadline) {
		w, err = cl.GetWorkspace(context.Background(), name)
		if err == nil && w.Status.State == model.StateRunning && w.Status.PID > 0 {
			return w
		}
		if err == nil && (w.Status.State == model.StateFailed || w.Status.State == model.StateStopped) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("workspace %s: state %s (err %v), want Running within %s; status %+v\nlog:\n%s", name, w.Status.State, err, within, w.Status, log())
	return w
}

// multiMachinePath follows docs/multi-machine.md literally, with the
// grid's bridge as the network: a `vgrid server` listening on the bridge
// address, a join token made with `vgrid token create --role join`, the
// CA copied, and `vgrid agent --server URL --join-token-file F --ca F` in
// a namespace of its own.
func multiMachinePath(t *testing.T, g *gridtest.Grid, imgDir string) {
	srvDir := t.TempDir()
	// The server registers the images under <data-dir>/images (and serves
	// only regular files inside them: hard links or copies, no symlinks).
	linkImage(t, imgDir, filepath.Join(srvDir, "images", "vgrid-guest"))
	srvLog := filepath.Join(srvDir, "server.log")
	lf, err := os.Create(srvLog)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	readLog := func(p string) func() string {
		return func() string { b, _ := os.ReadFile(p); return tail(string(b), 4000) }
	}
	srv := exec.Command(g.Bin, "server", "--data-dir", srvDir, "--listen", g.Net.BridgeIP().String()+":0", "--write-config=false")
	srv.Stdout, srv.Stderr = lf, lf
	srv.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopProc := func(c *exec.Cmd) {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	t.Cleanup(func() { stopProc(srv) })
	cfgPath := filepath.Join(srvDir, "client.json")
	var cl *client.Client
	for deadline := time.Now().Add(30 * time.Second); cl == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("vgrid server did not start; log:\n%s", readLog(srvLog)())
		}
		cfg, err := client.LoadConfigFile(cfgPath)
		if err != nil || cfg.Token == "" {
			continue
		}
		if c, err := client.New(cfg); err == nil {
			if _, err := c.Nodes(context.Background()); err == nil {
				cl = c
			}
		}
	}
	cfg, _ := client.LoadConfigFile(cfgPath)
	if !strings.HasPrefix(cfg.Server, "https://"+g.Net.BridgeIP().String()+":") {
		t.Fatalf("server URL %s, want the bridge address", cfg.Server)
	}

	// On the server: a join token. On the host: the token file and the CA.
	cli := exec.Command(g.Bin, "--config", cfgPath, "token", "create", "--role", "join")
	cli.Env = append(os.Environ(), "VGRID_ADDR=", "VGRID_TOKEN=")
	out, err := cli.Output()
	if err != nil {
		t.Fatalf("token create --role join: %v\n%s", err, out)
	}
	hostDir := t.TempDir()
	tokFile, caFile := filepath.Join(hostDir, "join.token"), filepath.Join(hostDir, "ca.crt")
	if err := os.WriteFile(tokFile, []byte(strings.TrimSpace(string(out))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(srvDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}

	// A fourth namespace on the grid's bridge is the other machine.
	nc := g.Net
	nc.Hosts = len(g.Hosts) + 1
	hosts, err := netgrid.Setup(nc)
	if err != nil {
		t.Fatal(err)
	}
	other := hosts[len(hosts)-1]
	agentLog := filepath.Join(hostDir, "agent.log")
	alf, err := os.Create(agentLog)
	if err != nil {
		t.Fatal(err)
	}
	defer alf.Close()
	ag := exec.Command(g.Bin, "agent", "--server", cfg.Server, "--join-token-file", tokFile, "--ca", caFile,
		"--data-dir", filepath.Join(hostDir, "data"), "--node-name", "remote1", "--address", other.Address.String())
	ag.Stdout, ag.Stderr = alf, alf
	ag.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := netgrid.InNamespace(other.Namespace, ag.Start); err != nil {
		t.Fatal(err)
	}
	both := func() string { return "server:\n" + readLog(srvLog)() + "\nagent:\n" + readLog(agentLog)() }
	t.Cleanup(func() {
		_ = cl.DeleteWorkspace(context.Background(), "remote")
		for i := 0; i < 150; i++ {
			if _, err := cl.GetWorkspace(context.Background(), "remote"); client.IsNotFound(err) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		stopProc(ag)
	})

	// The node registers with its address, and runs a workspace whose QEMU
	// is in its namespace.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		nodes, err := cl.Nodes(context.Background())
		if err == nil && len(nodes) == 1 && nodes[0].Name == "remote1" && nodes[0].Ready {
			if nodes[0].Address != other.Address.String() {
				t.Errorf("node address %q, want %s", nodes[0].Address, other.Address)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote1 not ready (nodes %v, %v)\n%s", nodes, err, both())
		}
	}
	p := filepath.Join(hostDir, "remote.yaml")
	os.WriteFile(p, []byte("name: remote\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 0.25, memory: 128Mi, disk: 1Gi}\nduration: 1h\n"), 0o644)
	cli = exec.Command(g.Bin, "--config", cfgPath, "workspace", "create", "-f", p, "--wait=false")
	cli.Env = append(os.Environ(), "VGRID_ADDR=", "VGRID_TOKEN=")
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("workspace create: %v\n%s\n%s", err, out, both())
	}
	w := waitRunningOn(t, cl, "remote", 120*time.Second, both)
	if w.Status.Node != "remote1" {
		t.Errorf("remote runs on %s", w.Status.Node)
	}
	pids, _ := netgrid.PIDs(other.Namespace)
	found := false
	for _, pid := range pids {
		found = found || pid == w.Status.PID
	}
	if !found {
		t.Errorf("QEMU pid %d not in namespace %s (%v)", w.Status.PID, other.Namespace, pids)
	}
}

// linkImage puts the image directory's files into dst, hard-linked where
// it can, else copied.
func linkImage(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if os.Link(from, to) == nil {
			continue
		}
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// procState is the state letter of /proc/<pid>/stat ("" if gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}
