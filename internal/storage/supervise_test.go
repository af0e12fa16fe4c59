package storage

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRestartBackoff: while the daemon cannot come back (its TLS files
// are gone), the supervisor keeps trying with a growing delay, logging each
// failure, and serves the exports again once it can.
func TestRestartBackoff(t *testing.T) {
	f := newFixture(t)
	d := f.start(t)
	ctx := ctxT(t)
	if err := d.Create(ctx, "v", MiB); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Export(ctx, "v", false); err != nil {
		t.Fatal(err)
	}
	f.client.with(t).mustIO("v", false, "write -P 0x42 0 64k", "flush")
	old := d.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Its TLS files gone, the next incarnations cannot start (the port
	// stays the supervisor's, so clients wait on it).
	tlsDir := filepath.Join(f.cfg.Dir, "tls")
	if err := os.Rename(tlsDir, tlsDir+".away"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // tries at about 0.2, 0.6 and 1.4 s fail
	if pid := d.PID(); pid != 0 {
		t.Fatalf("daemon up (pid %d) without its TLS files", pid)
	}
	fails := strings.Count(f.log.String(), "restart failed")
	if fails < 2 || fails > 4 {
		t.Errorf("%d failed restarts logged in 1.5 s, want 2 to 4 (backoff 0.2, 0.4, 0.8 s)", fails)
	}
	if err := os.Rename(tlsDir+".away", tlsDir); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for d.PID() == 0 {
		if time.Since(freed) > maxBackoff+2*time.Second {
			t.Fatalf("not back %v after its TLS files came back", time.Since(freed))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.Restarts() != 1 {
		t.Errorf("restarts %d, want 1", d.Restarts())
	}
	f.client.with(t).mustIO("v", true, "read -P 0x42 0 64k")
}

// TestStartKillsStaleDaemon: a daemon a crashed predecessor left running
// (same directory, holding the port) is killed, and the new one serves.
func TestStartKillsStaleDaemon(t *testing.T) {
	f := newFixture(t)
	run := filepath.Join(f.cfg.Dir, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(f.cfg.Dir, "run", "qmp.sock")
	pidFile := filepath.Join(run, "qsd.pid")
	host, port, _ := net.SplitHostPort(f.cfg.Listen)
	stale := exec.Command("qemu-storage-daemon",
		"--chardev", "socket,id=qmp0,path="+sock+",server=on,wait=off",
		"--monitor", "chardev=qmp0,mode=control", "--pidfile", pidFile,
		"--nbd-server", "addr.type=inet,addr.host="+host+",addr.port="+port)
	if err := stale.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { stale.Wait(); close(exited) }()
	t.Cleanup(func() { stale.Process.Kill(); <-exited })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(stale.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stale daemon wrote no pid file")
		}
	}
	d := f.start(t)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the stale daemon is still running")
	}
	if d.PID() == stale.Process.Pid || d.PID() == 0 {
		t.Fatalf("pid %d", d.PID())
	}
	ctx := ctxT(t)
	if err := d.Create(ctx, "v", MiB); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Export(ctx, "v", false); err != nil {
		t.Fatal(err)
	}
	f.client.with(t).mustIO("v", false, "write -P 1 0 4k")
}

// TestOneDaemonPerDir: a second Start on a directory in use is refused.
func TestOneDaemonPerDir(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	cfg := f.cfg
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t))
	d, err := Start(ctxT(t), cfg)
	if err == nil {
		d.Close()
		t.Fatal("second daemon started on the same directory")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error %v", err)
	}
}
