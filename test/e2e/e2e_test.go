package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/guest/guesttest"
	"vgrid/internal/model"
)

// vgridBin builds the vgrid binary once per test binary.
func vgridBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.TempDir(), fmt.Sprintf("vgrid-e2e-%d", os.Getpid()))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "build", "-o", bin, "vgrid/cmd/vgrid")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vgrid: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(bin) })
	return bin
}

// up is a running `vgrid up` process.
type up struct {
	t       *testing.T
	bin     string
	dataDir string
	imgDir  string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	cfg     string
	extra   []string // more flags for vgrid up
}

func startUp(t *testing.T, bin, dataDir, imgDir string, extra ...string) *up {
	t.Helper()
	u := &up{t: t, bin: bin, dataDir: dataDir, imgDir: imgDir, cfg: filepath.Join(dataDir, "client.json"), extra: extra}
	u.start()
	return u
}

func (u *up) start() {
	u.t.Helper()
	_ = os.Remove(u.cfg)
	u.log = &bytes.Buffer{}
	u.cmd = exec.Command(u.bin, append([]string{"up", "--data-dir", u.dataDir, "--listen", "127.0.0.1:0",
		"--write-config=false", "--image", u.imgDir, "--node-name", "e2e-host"}, u.extra...)...)
	u.cmd.Stdout, u.cmd.Stderr = u.log, u.log
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := u.cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cl := u.clientOrNil(); cl != nil {
			if nodes, err := cl.Nodes(context.Background()); err == nil && len(nodes) > 0 && nodes[0].Ready {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.t.Fatalf("vgrid up did not get ready; log:\n%s", u.log)
}

func (u *up) clientOrNil() *client.Client {
	cfg, err := client.LoadConfigFile(u.cfg)
	if err != nil || cfg.Token == "" {
		return nil
	}
	cl, err := client.New(cfg)
	if err != nil {
		return nil
	}
	return cl
}

func (u *up) client() *client.Client {
	cl := u.clientOrNil()
	if cl == nil {
		u.t.Fatal("no client config")
	}
	return cl
}

// teardown deletes every workspace of this vgrid up (restarting it if a
// test left it killed), waits until they are gone, and stops it.
func (u *up) teardown() {
	if u.cmd.ProcessState != nil {
		u.start()
	}
	cl := u.client()
	list, _ := cl.ListWorkspaces(context.Background())
	for _, w := range list {
		_ = cl.DeleteWorkspace(context.Background(), w.Spec.Name)
	}
	for i := 0; i < 100; i++ {
		if l, _ := cl.ListWorkspaces(context.Background()); len(l) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	u.stop()
}

func (u *up) kill9() {
	_ = u.cmd.Process.Signal(syscall.SIGKILL)
	_ = u.cmd.Wait()
}

func (u *up) stop() {
	if u.cmd.ProcessState != nil {
		return
	}
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = u.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		u.kill9()
	}
}

// cli runs a vgrid client command against this up.
func (u *up) cli(args ...string) (string, string, error) {
	cmd := exec.Command(u.bin, append([]string{"--config", u.cfg}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "VGRID_ADDR=", "VGRID_TOKEN=")
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (u *up) mustCLI(args ...string) string {
	u.t.Helper()
	out, errOut, err := u.cli(args...)
	if err != nil {
		u.t.Fatalf("vgrid %s: %v\nstdout: %s\nstderr: %s\nvgrid up log:\n%s", strings.Join(args, " "), err, out, errOut, tail(u.log.String(), 3000))
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has state Z after the command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func waitState(t *testing.T, cl *client.Client, name string, want model.State, within time.Duration) model.Workspace {
	t.Helper()
	deadline := time.Now().Add(within)
	var w model.Workspace
	var err error
	for time.Now().Before(deadline) {
		w, err = cl.GetWorkspace(context.Background(), name)
		if err == nil && w.Status.State == want {
			return w
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("workspace %s: state %s (err %v), want %s within %s; status %+v", name, w.Status.State, err, want, within, w.Status)
	return w
}

const demoSpec = `name: demo
image: vgrid-guest
quantum:
  vcpus: 2
  cpu: 0.5
  memory: 256Mi
  disk: 1Gi
duration: 2h
context:
  hostname: demo-host
  env: {GREETING: hello}
  user_data: |
    #!/bin/sh
    echo "user-data says $GREETING" > /dev/ttyS0
`

func TestWorkspaceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real guests")
	}
	guesttest.RequireRoot(t)
	guesttest.RequireQEMU(t)
	img := guesttest.Image(t)
	bin := vgridBin(t)
	dataDir := t.TempDir()
	u := startUp(t, bin, dataDir, filepath.Dir(img.Disk.Path))
	t.Cleanup(u.teardown)
	specPath := filepath.Join(t.TempDir(), "demo.yaml")
	os.WriteFile(specPath, []byte(demoSpec), 0o644)

	// Create and wait: the CLI returns when the guest is ready.
	u.mustCLI("workspace", "create", "-f", specPath)
	raw := u.mustCLI("workspace", "get", "demo", "-o", "json")
	var w model.Workspace
	if err := json.Unmarshal([]byte(raw), &w); err != nil {
		t.Fatalf("get -o json: %v\n%s", err, raw)
	}
	var generic map[string]any
	_ = json.Unmarshal([]byte(raw), &generic)
	if st := generic["status"].(map[string]any); st["state"] != "Running" || st["guest"] == nil {
		t.Fatalf("status.state %v, status.guest %v; want Running with a guest report", st["state"], st["guest"])
	}
	g := w.Status.Guest
	if g.VCPUs != 2 {
		t.Errorf("guest reports %d vcpus, want 2", g.VCPUs)
	}
	if g.MemoryMiB > 256 || g.MemoryMiB < 256*80/100 {
		t.Errorf("guest MemTotal %d MiB, want a little under 256", g.MemoryMiB)
	}
	if len(g.Addresses) == 0 {
		t.Errorf("guest reports no address")
	}
	if g.Hostname != "demo-host" || !g.Context {
		t.Errorf("guest hostname %q context %v, want demo-host from the seed", g.Hostname, g.Context)
	}
	if g.DiskBytes != int64(model.GiB) {
		t.Errorf("guest disk %d bytes, want 1Gi", g.DiskBytes)
	}
	pid := w.Status.PID
	if !pidAlive(pid) {
		t.Fatalf("QEMU pid %d is not alive", pid)
	}
	// The quantum on the host: the cgroup around QEMU.
	checkCgroup(t, w)

	// The console shows the user-data script's line.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := u.mustCLI("workspace", "logs", "demo")
		if strings.Contains(out, "user-data says hello") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console never showed the user-data line:\n%s", tail(out, 2000))
		}
		time.Sleep(time.Second)
	}

	// A command in the guest (vgrid workspace exec): its output streams
	// back and vgrid exits with its exit code.
	out, errOut, err := u.cli("workspace", "exec", "demo", "--timeout", "30s", "--", "/bin/sh", "-c", "hostname; grep -c processor /proc/cpuinfo; exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || out != "demo-host\n2\n" {
		t.Fatalf("workspace exec: %v, stdout %q, stderr %q; want exit code 3 and demo-host, 2 processors\nvgrid up log:\n%s", err, out, errOut, tail(u.log.String(), 3000))
	}

	// A second vgrid up, on another data dir and address, runs beside the
	// first: its own store, its own (empty) workspace list.
	u2 := startUp(t, bin, t.TempDir(), filepath.Dir(img.Disk.Path))
	if out := u2.mustCLI("workspace", "list"); strings.Contains(out, "demo") {
		t.Fatalf("second vgrid up lists the first one's workspace:\n%s", out)
	}
	if out := u2.mustCLI("node", "list"); !strings.Contains(out, " Ready ") {
		t.Fatalf("second vgrid up has no ready host:\n%s", out)
	}
	u2.stop()
	if out := u.mustCLI("workspace", "list"); !strings.Contains(out, "demo") || !strings.Contains(out, "Running") {
		t.Fatalf("first vgrid up after the second stopped:\n%s", out)
	}

	// Bad input through the CLI: non-zero exit naming the field.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(demoSpec, "cpu: 0.5", "cpu: 3", 1)), 0o644)
	if _, errOut, err := u.cli("workspace", "create", "-f", bad); err == nil || !strings.Contains(errOut, "quantum.cpu") {
		t.Fatalf("bad spec: err %v, stderr %q; want a failure naming quantum.cpu", err, errOut)
	}

	// kill -9 the whole control plane + agent; the guest keeps running.
	u.kill9()
	time.Sleep(500 * time.Millisecond)
	if !pidAlive(pid) {
		t.Fatalf("QEMU pid %d died with vgrid up", pid)
	}
	u.start()
	w2 := waitState(t, u.client(), "demo", model.StateRunning, 60*time.Second)
	if w2.Status.PID != pid || w2.ID != w.ID {
		t.Fatalf("after restart: pid %d id %s, want the same QEMU pid %d id %s", w2.Status.PID, w2.ID, pid, w.ID)
	}
	if out := u.mustCLI("workspace", "list"); !strings.Contains(out, "demo") || !strings.Contains(out, "Running") {
		t.Fatalf("list after restart:\n%s", out)
	}

	// Another project's token sees nothing and touches nothing.
	tok := strings.TrimSpace(u.mustCLI("project", "create", "intruder"))
	intruder := u.client().WithToken(tok)
	ctx := context.Background()
	if l, err := intruder.ListWorkspaces(ctx); err != nil || len(l) != 0 {
		t.Fatalf("intruder lists %d (%v)", len(l), err)
	}
	if _, err := intruder.StopWorkspace(ctx, "demo"); !client.IsNotFound(err) {
		t.Fatalf("intruder stop: %v, want 404", err)
	}
	if err := intruder.DeleteWorkspace(ctx, "demo"); !client.IsNotFound(err) {
		t.Fatalf("intruder delete: %v, want 404", err)
	}
	if !pidAlive(pid) {
		t.Fatal("intruder's calls stopped the guest")
	}

	// Stop, start (same disk, new process), delete.
	u.mustCLI("workspace", "stop", "demo")
	if w3, _ := u.client().GetWorkspace(ctx, "demo"); w3.Status.State != model.StateStopped {
		t.Fatalf("after stop: %s", w3.Status.State)
	}
	waitGone(t, pid)
	u.mustCLI("workspace", "start", "demo")
	w4 := waitState(t, u.client(), "demo", model.StateRunning, 60*time.Second)
	if w4.Status.PID == pid || !pidAlive(w4.Status.PID) {
		t.Fatalf("after start: pid %d (old %d)", w4.Status.PID, pid)
	}
	u.mustCLI("workspace", "delete", "demo")
	waitGone(t, w4.Status.PID)
	if _, err := os.Stat(filepath.Join(dataDir, "instances", w.ID)); !os.IsNotExist(err) {
		t.Fatalf("instance dir still there after delete: %v", err)
	}

	// The lease is enforced: a 5 s lease is stopped by vgrid.
	short := filepath.Join(t.TempDir(), "short.yaml")
	os.WriteFile(short, []byte("name: short\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 0.5, memory: 128Mi}\nduration: 5s\n"), 0o644)
	u.mustCLI("workspace", "create", "-f", short, "--wait=false")
	ws := waitState(t, u.client(), "short", model.StateStopped, 90*time.Second)
	if !strings.Contains(ws.Status.Reason, "lease ended") {
		t.Fatalf("short stopped with reason %q, want lease ended", ws.Status.Reason)
	}
	u.mustCLI("workspace", "delete", "short")
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if !pidAlive(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("QEMU pid %d still alive", pid)
}

// checkCgroup reads the cgroup files the status names.
func checkCgroup(t *testing.T, w model.Workspace) {
	t.Helper()
	cg := w.Status.Cgroup
	if len(cg) == 0 {
		t.Fatal("status.cgroup is empty")
	}
	pidStr := strconv.Itoa(w.Status.PID)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return strings.TrimSpace(string(b))
	}
	if dir, ok := cg["cpu"]; ok && fileExists(filepath.Join(dir, "cpu.cfs_quota_us")) {
		if q := read(filepath.Join(dir, "cpu.cfs_quota_us")); q != "50000" {
			t.Errorf("cpu.cfs_quota_us = %s, want 50000 (0.5 core of a 100000 us period)", q)
		}
		if !strings.Contains("\n"+read(filepath.Join(dir, "cgroup.procs"))+"\n", "\n"+pidStr+"\n") {
			t.Errorf("QEMU pid %s is not in %s", pidStr, dir)
		}
	} else if dir, ok := cg["unified"]; ok {
		if q := read(filepath.Join(dir, "cpu.max")); q != "50000 100000" {
			t.Errorf("cpu.max = %s, want 50000 100000", q)
		}
	} else {
		t.Errorf("no cpu cgroup in %v", cg)
	}
	if dir, ok := cg["memory"]; ok && fileExists(filepath.Join(dir, "memory.limit_in_bytes")) {
		lim, _ := strconv.ParseInt(read(filepath.Join(dir, "memory.limit_in_bytes")), 10, 64)
		if lim <= int64(256*model.MiB) || lim > int64(256*model.MiB+1024*model.MiB) {
			t.Errorf("memory limit %d, want 256Mi plus a stated overhead", lim)
		}
		t.Logf("memory limit %d MiB for 256 MiB of guest memory", lim>>20)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
