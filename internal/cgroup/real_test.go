package cgroup

import (
	"vgrid/internal/guest/guesttest"

	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// hostGroup creates a group in this host's real cgroup filesystem under a
// parent of its own, and removes both when the test ends.
func hostGroup(t *testing.T, l Limits) *Group {
	t.Helper()
	if os.Geteuid() != 0 {
		guesttest.Skip(t, "needs root to create cgroups")
	}
	h, err := Detect()
	if err != nil {
		guesttest.Skip(t, "no cgroups: %v", err)
	}
	parent := fmt.Sprintf("vgrid-test-%d", os.Getpid())
	g, err := h.New(parent, "g", l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Delete(); err != nil {
			t.Error(err)
		}
		for _, d := range g.Paths() {
			_ = os.Remove(filepath.Dir(d))
		}
	})
	return g
}

func TestHostLimits(t *testing.T) {
	g := hostGroup(t, Limits{CPUCores: 0.25, MemoryBytes: 64 << 20, Pids: 32})
	if q, p, err := g.CPUMax(); err != nil || q != 25000 || p != 100000 {
		t.Errorf("CPUMax: got %d/%d, %v, want 25000/100000", q, p, err)
	}
	if m, err := g.MemoryLimit(); err != nil || m != 64<<20 {
		t.Errorf("MemoryLimit: got %d, %v, want %d", m, err, 64<<20)
	}
	// Up, down and off again: the memsw ordering must hold each way.
	for _, mem := range []int64{256 << 20, 32 << 20, 0, 128 << 20} {
		if err := g.Update(Limits{CPUCores: 1, MemoryBytes: mem}); err != nil {
			t.Fatalf("update to %d: %v", mem, err)
		}
		if m, err := g.MemoryLimit(); err != nil || m != mem {
			t.Errorf("after update: got %d, %v, want %d", m, err, mem)
		}
	}
	if q, _, _ := g.CPUMax(); q != 100000 {
		t.Errorf("quota after update: got %d, want 100000", q)
	}
}

// TestHostCPUCap runs a busy loop that joins the group before it execs and
// checks that it gets the capped share of a core.
func TestHostCPUCap(t *testing.T) {
	g := hostGroup(t, Limits{CPUCores: 0.2, MemoryBytes: 64 << 20})
	args := append([]string{"-c", `for f; do echo $$ > "$f"; done; exec sh -c 'while :; do :; done'`, "join"}, g.ProcsFiles()...)
	cmd := exec.Command("/bin/sh", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until the loop is in every directory.
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs, _ := g.Procs()
		if len(procs) == 1 && procs[0] == cmd.Process.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process did not join: %v", procs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	u0, err := g.CPUUsage()
	if err != nil {
		t.Fatal(err)
	}
	p0, th0, _ := g.Throttled()
	t0 := time.Now()
	time.Sleep(2 * time.Second)
	u1, _ := g.CPUUsage()
	share := float64(u1-u0) / float64(time.Since(t0))
	p1, th1, err := g.Throttled()
	if err != nil || th1 == 0 || p1 == 0 {
		t.Errorf("Throttled: got %d/%d, %v, want both > 0", p1, th1, err)
	}
	// The cap holds whatever else runs. That the loop gets all of it
	// holds only when the machine has room: in the periods where the cap
	// bound it (throttled); on a machine busy with other work (a test run
	// on 2 cores, load 4) it may get less, and the lower bound says
	// nothing then.
	bound := float64(th1-th0) / float64(max(p1-p0, 1))
	t.Logf("measured %.3f cores at a cap of 0.2 (throttled in %.0f%% of the periods)", share, 100*bound)
	if share > 0.24 {
		t.Errorf("got %.3f cores, want at most 0.2 + 20%%", share)
	}
	if bound >= 0.8 && share < 0.16 {
		t.Errorf("got %.3f cores though the cap bound it in %.0f%% of the periods, want 0.2 - 20%%", share, 100*bound)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if err := g.Delete(); err != nil {
		t.Fatalf("delete after the task exited: %v", err)
	}
	if _, err := os.Stat(g.Paths()[CPU]); !os.IsNotExist(err) {
		t.Errorf("cpu dir still there: %v", err)
	}
}

// TestHostCPUSeconds runs a capped busy loop in a group and checks that the
// group's counter grows while it runs, outlives the task, and agrees with
// the CPU time the kernel accounted to the task itself (its rusage).
func TestHostCPUSeconds(t *testing.T) {
	g := hostGroup(t, Limits{CPUCores: 0.5, MemoryBytes: 64 << 20})
	if s, err := g.CPUSeconds(); err != nil || s != 0 {
		t.Errorf("new group: got %v s, %v, want 0", s, err)
	}
	args := append([]string{"-c", `for f; do echo $$ > "$f"; done; exec sh -c 'while :; do :; done'`, "join"}, g.ProcsFiles()...)
	cmd := exec.Command("/bin/sh", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(500 * time.Millisecond)
	s0, err := g.CPUSeconds()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	s1, err := g.CPUSeconds()
	if err != nil {
		t.Fatal(err)
	}
	if s0 <= 0 || s1 <= s0 {
		t.Errorf("while spinning: got %v s then %v s, want a growing counter", s0, s1)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	task := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	final, err := g.CPUSeconds()
	if err != nil {
		t.Fatalf("after the task exited: %v", err)
	}
	t.Logf("group counter %.3f s after the task exited; the task's own rusage %.3f s", final, task)
	if final < s1 {
		t.Errorf("counter went back from %v s to %v s", s1, final)
	}
	if d := final - task; d > 0.1*task+0.02 || d < -0.1*task-0.02 {
		t.Errorf("group counter %.3f s, task rusage %.3f s: more than 10%% apart", final, task)
	}
	if u, _ := g.CPUUsage(); u.Seconds() != final {
		t.Errorf("CPUUsage %v disagrees with CPUSeconds %v", u, final)
	}
}

// Join moves a running process (all its threads) into the group.
func TestHostJoin(t *testing.T) {
	g := hostGroup(t, Limits{CPUCores: 0.5, MemoryBytes: 64 << 20})
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if procs, _ := g.Procs(); len(procs) != 0 {
		t.Fatalf("before Join: %v", procs)
	}
	if err := g.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	procs, err := g.Procs()
	if err != nil || len(procs) != 1 || procs[0] != cmd.Process.Pid {
		t.Fatalf("after Join: %v %v, want [%d]", procs, err, cmd.Process.Pid)
	}
	for _, f := range g.ProcsFiles() {
		b, err := os.ReadFile(f)
		if err != nil || string(b) != fmt.Sprintf("%d\n", cmd.Process.Pid) {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
	if err := g.Join(0); err == nil {
		t.Error("Join(0): no error")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := g.Join(cmd.Process.Pid); err == nil {
		t.Error("Join of a process that is gone: no error")
	}
}
