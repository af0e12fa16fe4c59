package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// The crash tests run this test binary again as an agent (crashChild) that
// starts a suspend or a resume and is killed with SIGKILL at a named point
// of it (crashPoint), as `vgrid up` killed mid-suspend: then a new Driver
// on the same directory must leave the guest running or properly
// suspended, never paused, with no partial files.

// Environment of crashChild.
const (
	crashAtEnv   = "VGRID_TEST_CRASH_AT"
	crashDirEnv  = "VGRID_TEST_CRASH_DIR"
	crashSpecEnv = "VGRID_TEST_CRASH_SPEC"
	crashReached = "CRASH-POINT-REACHED"
)

// crashChild is the agent of crashAt: a driver on the directory that
// suspends (suspend-* points) or starts the instance, and waits to be
// killed at the point. It returns only if the point is never reached.
func crashChild() int {
	at := os.Getenv(crashAtEnv)
	var spec hypervisor.InstanceSpec
	if err := json.Unmarshal([]byte(os.Getenv(crashSpecEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "spec:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d, err := New(Options{StateDir: os.Getenv(crashDirEnv), CgroupParent: testCgroupParent, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	crashPoint = func(name string) {
		if name == at {
			fmt.Println(crashReached)
			time.Sleep(time.Hour) // killed here
		}
	}
	ctx := context.Background()
	if strings.HasPrefix(at, "suspend-") {
		_, err = d.Suspend(ctx, spec.ID)
	} else {
		_, err = d.Start(ctx, spec)
	}
	fmt.Fprintf(os.Stderr, "returned without reaching %s: %v\n", at, err)
	return 3
}

// crashAt runs crashChild on dir and kills it (SIGKILL) at point at.
func crashAt(t *testing.T, dir string, spec hypervisor.InstanceSpec, at string) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashAtEnv+"="+at, crashDirEnv+"="+dir, crashSpecEnv+"="+string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == crashReached {
				reached <- true
				return
			}
		}
		reached <- false
	}()
	ok := false
	select {
	case ok = <-reached:
	case <-time.After(60 * time.Second):
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
	if !ok {
		t.Fatalf("the agent did not reach %s; its log:\n%s", at, stderr.String())
	}
	t.Logf("agent killed at %s", at)
}

// qemuPIDs scans /proc for QEMU processes whose command line names the
// instance directory of p (the shell that execs QEMU, and zombies, are not
// counted).
func qemuPIDs(t *testing.T, p Paths) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(b, []byte(p.Dir+"/")) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "qemu") {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// noPartialFiles checks that no save, temporary save or intent is left.
func noPartialFiles(t *testing.T, p Paths, stateWanted bool) {
	t.Helper()
	if _, err := os.Stat(memStatePath(p)); (err == nil) != stateWanted {
		t.Errorf("%s: got %v, want present=%v", memStateFile, err, stateWanted)
	}
	for _, f := range []string{memStatePath(p) + ".tmp", p.Intent} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", filepath.Base(f), err)
		}
	}
}

// qmpStatus asks the instance's QEMU for its run state.
func qmpStatus(t *testing.T, d *Driver, id string) string {
	t.Helper()
	d.mu.Lock()
	v := d.vms[id]
	d.mu.Unlock()
	if v == nil {
		t.Fatalf("%s is not watched", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := v.qmpClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	return st.Status
}

// TestAgentKilledMidSuspend kills the agent (a process of its own) at each
// point of a suspend and of a resume, and checks what a new Driver on the
// same directory makes of it: the guest runs (QMP says running, its
// counter goes on, its disk is writable) in the same process, or it is
// properly suspended (a complete state file, no process) and resumes with
// its memory; never paused, never with partial files left.
func TestAgentKilledMidSuspend(t *testing.T) {
	dir, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("crash", img)
	spec.Quantum.Memory = 128 * model.MiB
	spec.Context = &model.Context{UserData: tickScript}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	first := hypervisortest.WaitGuest(t, d, spec.ID)
	waitTicks(t, d, spec.ID, 1, hypervisortest.GuestTimeout)
	p := d.paths(spec.ID)
	d.Close() // the agent is another process from now on
	pid := in.PID

	steps := []struct {
		at   string
		want hypervisor.InstanceState
	}{
		{"suspend-migrating", hypervisor.InstanceRunning}, // QEMU still saving, or done
		{"suspend-migrated", hypervisor.InstanceRunning},  // saved in the temporary file, guest postmigrate
		{"suspend-saved", hypervisor.InstanceRunning},     // renamed into place, not recorded, QEMU alive
		{"suspend-quit", hypervisor.InstanceSuspended},    // QEMU gone, not recorded (unless the watcher did)
		{"resume-loaded", hypervisor.InstanceRunning},     // state loaded, guest not continued
		{"suspend-exited", hypervisor.InstanceSuspended},  // QEMU gone, recorded, the file maybe not yet fsynced
		{"resume-launched", hypervisor.InstanceSuspended}, // QEMU waits for its state
		{"resume-loaded", hypervisor.InstanceRunning},     // state loaded, guest not continued
	}
	last := 0 // the last tick the guest was seen to count
	for _, step := range steps {
		if b := ticks(t, d, spec.ID); len(b) > 0 {
			last = b[len(b)-1]
		}
		crashAt(t, dir, spec, step.at)
		t0 := time.Now()
		d2 := newTestDriver(t, dir)
		t.Logf("%s: the new driver settled it in %s", step.at, time.Since(t0).Round(time.Millisecond))
		got, err := d2.Get(ctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Settling may go on at the driver's next look.
		for deadline := time.Now().Add(10 * time.Second); got.State != step.want && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			if got, err = d2.Get(ctx, spec.ID); err != nil {
				t.Fatal(err)
			}
		}
		if got.State != step.want {
			t.Fatalf("%s: got %s (%+v), want %s", step.at, got.State, got, step.want)
		}
		procs := 0
		switch step.want {
		case hypervisor.InstanceRunning:
			procs = 1
			if st := qmpStatus(t, d2, spec.ID); st != "running" {
				t.Fatalf("%s: qemu says %q, want running", step.at, st)
			}
			if step.at != "resume-loaded" && got.PID != pid {
				t.Errorf("%s: pid %d, want the same process %d (undone, not restarted)", step.at, got.PID, pid)
			}
			pid = got.PID
			// In its group under the quantum's cap (a resumed QEMU joins
			// its group while it loads: recoverResume sees to it).
			if g, err := d2.cg.Load(d2.opts.CgroupParent, spec.ID); err != nil {
				t.Errorf("%s: cgroup: %v", step.at, err)
			} else {
				procs, _ := g.Procs()
				want := d2.limits(got.Accel, spec.Quantum).Quota()
				if q, _, _ := g.CPUMax(); q != want || len(procs) != 1 || procs[0] != pid {
					t.Errorf("%s: cgroup quota %d, procs %v; want %d and [%d]", step.at, q, procs, want, pid)
				}
			}
			noPartialFiles(t, p, false)
			// The guest counts on (and writes its disk), from where it was.
			n := len(ticks(t, d2, spec.ID))
			after := waitTicks(t, d2, spec.ID, n+1, 30*time.Second)
			if after[0] > last+3 || after[len(after)-1] <= last {
				t.Errorf("%s: ticks %v, want them to go on from %d", step.at, after, last)
			}
			if log, _ := d2.ConsoleLog(ctx, spec.ID, 1<<20); bytes.Contains(log, []byte("I/O error")) {
				t.Errorf("%s: the guest cannot write its disk:\n%s", step.at, log)
			}
		case hypervisor.InstanceSuspended:
			fi, err := os.Stat(memStatePath(p))
			if err != nil || got.Saved == nil || got.Saved.Bytes != fi.Size() || got.PID != 0 {
				t.Fatalf("%s: got %+v, state file %v; want suspended with the file's size", step.at, got, err)
			}
			noPartialFiles(t, p, true)
		}
		if pids := qemuPIDs(t, p); len(pids) != procs {
			t.Errorf("%s: qemu processes %v, want %d", step.at, pids, procs)
		}
		d2.Close()
		d = d2
	}
	// The guest that was saved, "resumed" twice by agents that died, and
	// resumed at last, is the one that booted.
	d3 := newTestDriver(t, dir)
	g := hypervisortest.WaitGuest(t, d3, spec.ID)
	if g.Guest.UptimeS <= first.Guest.UptimeS || g.Guest.Hostname != first.Guest.Hostname {
		t.Errorf("guest after it all: %+v, want the first one's uptime (%.2fs) gone on", g.Guest, first.Guest.UptimeS)
	}
	if err := d3.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestOrphanQEMU removes a running instance's directory: Start must not
// run a second QEMU beside the first, a new driver must list the orphan,
// and Delete must kill it though nothing of it is left on disk.
func TestOrphanQEMU(t *testing.T) {
	dir, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("orphan", img)
	spec.Quantum.Memory = 128 * model.MiB
	p := d.paths(spec.ID)
	one := func(want int) {
		t.Helper()
		if got := qemuPIDs(t, p); len(got) != 1 || got[0] != want {
			t.Fatalf("qemu processes of %s: got %v, want just %d", spec.ID, got, want)
		}
	}
	removeDir := func() {
		t.Helper()
		if err := os.RemoveAll(p.Dir); err != nil {
			t.Fatal(err)
		}
	}
	in1, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	one(in1.PID)

	// The same driver, which watches the first process.
	removeDir()
	in2, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in2.PID == in1.PID {
		t.Fatalf("Start after the directory was removed: got the old pid %d", in1.PID)
	}
	one(in2.PID)

	// A new driver lists the orphan, does not Get it, and leaves it be.
	removeDir()
	d.Close()
	d2 := newTestDriver(t, dir)
	insts, err := d2.List(ctx)
	if err != nil || len(insts) != 1 || insts[0].ID != spec.ID || insts[0].PID != in2.PID || insts[0].State != hypervisor.InstanceRunning {
		t.Fatalf("List with an orphan: got %+v, %v, want %s running as pid %d", insts, err, spec.ID, in2.PID)
	}
	if _, err := d2.Get(ctx, spec.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get of an orphan: got %v, want ErrNotFound", err)
	}
	one(in2.PID)
	if err := d2.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if got := qemuPIDs(t, p); len(got) != 0 {
		t.Fatalf("after Delete of the orphan: qemu processes %v", got)
	}
	if _, err := d2.cg.Load(testCgroupParent, spec.ID); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup after Delete: got %v, want it removed", err)
	}

	// A driver that never watched the orphan starts the instance afresh.
	in3, err := d2.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	removeDir()
	d2.Close()
	d3 := newTestDriver(t, dir)
	in4, err := d3.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in4.PID == in3.PID {
		t.Fatalf("Start on a new driver: got the orphan's pid %d", in3.PID)
	}
	one(in4.PID)
	if err := d3.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if got := qemuPIDs(t, p); len(got) != 0 {
		t.Errorf("after Delete: qemu processes %v", got)
	}
	if insts, err := d3.List(ctx); err != nil || len(insts) != 0 {
		t.Errorf("List after Delete: got %+v, %v, want nothing", insts, err)
	}
}
