package hypervisortest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// GuestTimeout bounds how long the suite waits for a guest to report.
const GuestTimeout = 60 * time.Second

// NewDriver makes a driver whose instances live in stateDir. A driver
// made again on the same stateDir must adopt what the earlier one left
// running. It should register t.Cleanup to Close the driver; Close may be
// called more than once.
type NewDriver func(t *testing.T, stateDir string) hypervisor.Driver

// Run runs the conformance suite against the drivers newDriver makes,
// booting img. The contract it checks, beyond the interface's comments:
//   - Stop of an unknown ID returns ErrNotFound (Delete of one is a no-op);
//   - Get, Stop, ConsoleLog and Resize of an ID never started return ErrNotFound;
//   - a stopped instance has State stopped, no PID and an ExitReason;
//   - Delete removes StateDir/<id> (a driver that keeps no files has none);
//   - Suspend of an unknown ID returns ErrNotFound, of a stopped one
//     ErrNotRunning; a resumed guest reports again, with an uptime that
//     went on from before (it did not reboot);
//   - a running instance's CPUSeconds is >= 0 and never decreases from one
//     Get or List to the next; a stopped or suspended one has CPUSeconds 0
//     and a FinalCPUSeconds no less than the last CPUSeconds seen;
//   - SaveImage of a stopped instance writes a standalone qcow2 (checked
//     with qemu-img when installed) of the size it reports, consistency
//     "stopped", with progress ending at the total; onto an existing file
//     it is ErrInvalid, of an unknown ID ErrNotFound;
//   - Exec in a running guest runs the command (echo, false, cat with
//     standard input give their output and exit codes; a missing command
//     exits 127 and an empty one 126, each with a message); in a stopped
//     instance it returns ErrNotRunning, in an unknown one ErrNotFound;
//   - Portable of an unknown ID returns ErrNotFound, of a running one
//     ErrRunning; its names are clean relative paths, its paths absolute
//     files of the sizes given, none of them the image's;
//   - a stopped or suspended instance moves: its Portable files, copied
//     into a directory, are adopted by a driver on another state
//     directory whose image has its files elsewhere (the first host's
//     image and instance are then removed), stopped or suspended as it
//     was; adopting it again is ErrExists; there a stopped one boots and a
//     suspended one resumes (its guest goes on), and with WithDiskProbe
//     the guest finds on its disk what it wrote on the first host;
//   - a running guest moves live (migrate.go): PrepareIncoming on another
//     driver gives an endpoint (the same again when called again) and an
//     instance that is paused with ExitReason "incoming", which Start,
//     Suspend and Exec refuse with ErrIncoming and FinishIncoming refuses
//     before the guest came; MigrateOut reports progress (disk, memory,
//     switchover, in order) and a result with a downtime within its
//     total; the source then has no process and Exec there is
//     ErrNotRunning; FinishIncoming makes the destination running (and is
//     idempotent); the guest went on (uptime; with WithGuestProbe its boot
//     ID, and every line it acknowledged writing before and during the
//     move is on its disk); a cancelled migration (ctx) and one to an
//     endpoint that is gone leave the guest running at the source, after
//     which it still moves.
func Run(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	t.Run("InvalidSpec", func(t *testing.T) { testInvalid(t, newDriver, img) })
	t.Run("UnknownID", func(t *testing.T) { testUnknown(t, newDriver) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, newDriver, img, c) })
	t.Run("Adoption", func(t *testing.T) { testAdoption(t, newDriver, img) })
	t.Run("SuspendResume", func(t *testing.T) { testSuspend(t, newDriver, img, c) })
	t.Run("SuspendAdoption", func(t *testing.T) { testSuspendAdoption(t, newDriver, img, c) })
	t.Run("MoveStopped", func(t *testing.T) { testMove(t, newDriver, img, c, false) })
	t.Run("MoveSuspended", func(t *testing.T) { testMove(t, newDriver, img, c, true) })
	t.Run("LiveMigrate", func(t *testing.T) { testLiveMigrate(t, newDriver, img, c) })
	t.Run("LiveMigrateFail", func(t *testing.T) { testLiveMigrateFail(t, newDriver, img, c) })
}

// Option adjusts what Run checks.
type Option func(*config)

type config struct {
	realPIDs bool
	probe    *DiskProbe
	guest    *GuestProbe
}

// RealPIDs says that Instance.PID is a process on this host, so that the
// suite checks it is gone after Stop.
func RealPIDs() Option { return func(c *config) { c.realPIDs = true } }

// processGone reports whether pid has exited (a zombie counts: after
// -daemonize-style detaching, no one may reap it).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// Spec returns a small instance spec for img: 1 vCPU, 256 MiB.
func Spec(id string, img hypervisor.LocalImage) hypervisor.InstanceSpec {
	return hypervisor.InstanceSpec{
		ID:       id,
		Hostname: id,
		Quantum:  model.Quantum{VCPUs: 1, Memory: 256 * model.MiB},
		Image:    img,
		Context:  &model.Context{Env: map[string]string{"VGRID_TEST": "1"}},
	}
}

// setup makes a state directory and a driver on it, and makes sure every
// instance in it is deleted when the test ends, pass or fail (through a
// fresh driver, since the test may have closed its own).
func setup(t *testing.T, newDriver NewDriver) (string, hypervisor.Driver) {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { Cleanup(t, newDriver, dir) })
	return dir, newDriver(t, dir)
}

// Cleanup deletes every instance a driver on stateDir can see.
func Cleanup(t *testing.T, newDriver NewDriver, stateDir string) {
	t.Helper()
	d := newDriver(t, stateDir)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	insts, err := d.List(ctx)
	if err != nil {
		t.Errorf("cleanup: list: %v", err)
		return
	}
	for _, in := range insts {
		if err := d.Delete(ctx, in.ID); err != nil {
			t.Errorf("cleanup: delete %s: %v", in.ID, err)
		}
	}
}

func testInvalid(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage) {
	_, d := setup(t, newDriver)
	ctx := Context(t)
	tests := []struct {
		name   string
		mutate func(*hypervisor.InstanceSpec)
	}{
		{"uppercase id", func(s *hypervisor.InstanceSpec) { s.ID = "Bad_ID" }},
		{"path id", func(s *hypervisor.InstanceSpec) { s.ID = "../x" }},
		{"empty id", func(s *hypervisor.InstanceSpec) { s.ID = "" }},
		{"zero vcpus", func(s *hypervisor.InstanceSpec) { s.Quantum.VCPUs = 0 }},
		{"no memory", func(s *hypervisor.InstanceSpec) { s.Quantum.Memory = 0 }},
	}
	for _, tt := range tests {
		spec := Spec("invalid", img)
		tt.mutate(&spec)
		if in, err := d.Start(ctx, spec); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("%s: got %+v, %v, want ErrInvalid", tt.name, in, err)
		}
	}
	if insts, err := d.List(ctx); err != nil || len(insts) != 0 {
		t.Errorf("after invalid starts: got %v, %v, want no instances", insts, err)
	}
}

func testUnknown(t *testing.T, newDriver NewDriver) {
	_, d := setup(t, newDriver)
	ctx := Context(t)
	if _, err := d.Get(ctx, "nope"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get: got %v, want ErrNotFound", err)
	}
	if err := d.Stop(ctx, "nope", time.Second); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Stop: got %v, want ErrNotFound", err)
	}
	if _, err := d.ConsoleLog(ctx, "nope", 100); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("ConsoleLog: got %v, want ErrNotFound", err)
	}
	if err := d.Resize(ctx, "nope", model.Quantum{VCPUs: 1, Memory: 256 * model.MiB}); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Resize: got %v, want ErrNotFound", err)
	}
	if _, err := d.Suspend(ctx, "nope"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Suspend: got %v, want ErrNotFound", err)
	}
	if _, err := d.Exec(ctx, "nope", hypervisor.ExecRequest{Argv: []string{"true"}}, discard); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Exec: got %v, want ErrNotFound", err)
	}
	if _, err := d.SaveImage(ctx, "nope", filepath.Join(t.TempDir(), "nope.qcow2"), nil); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("SaveImage: got %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, "nope"); err != nil {
		t.Errorf("Delete: got %v, want nil", err)
	}
}

func discard(string, []byte) error { return nil }

// checkExec runs commands in a running guest: output, exit codes, standard
// input, a command that is not there.
func checkExec(t *testing.T, d hypervisor.Driver, id string) {
	t.Helper()
	ctx := Context(t)
	run := func(req hypervisor.ExecRequest) (stdout, stderr string, res hypervisor.ExecResult) {
		t.Helper()
		var err error
		res, err = d.Exec(ctx, id, req, func(stream string, data []byte) error {
			switch stream {
			case hypervisor.StreamStdout:
				stdout += string(data)
			case hypervisor.StreamStderr:
				stderr += string(data)
			default:
				t.Errorf("Exec %v: output on stream %q", req.Argv, stream)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Exec %v: %v", req.Argv, err)
		}
		return stdout, stderr, res
	}
	if out, _, res := run(hypervisor.ExecRequest{Argv: []string{"echo", "hello", "world"}}); out != "hello world\n" || res.ExitCode != 0 {
		t.Errorf("Exec echo: got %q, %+v", out, res)
	}
	if _, _, res := run(hypervisor.ExecRequest{Argv: []string{"false"}}); res.ExitCode != 1 {
		t.Errorf("Exec false: got %+v, want exit code 1", res)
	}
	if out, _, res := run(hypervisor.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("abc")}); out != "abc" || res.ExitCode != 0 {
		t.Errorf("Exec cat with stdin: got %q, %+v", out, res)
	}
	if _, _, res := run(hypervisor.ExecRequest{Argv: []string{"no-such-command-here"}}); res.ExitCode != 127 || res.Message == "" {
		t.Errorf("Exec of a missing command: got %+v, want 127 with a message", res)
	}
	if _, _, res := run(hypervisor.ExecRequest{}); res.ExitCode != 126 || res.Message == "" {
		t.Errorf("Exec of nothing: got %+v, want 126 with a message", res)
	}
}

func testLifecycle(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, c config) {
	stateDir, d := setup(t, newDriver)
	ctx := Context(t)
	seen := watchChanges(d)
	spec := Spec("life-1", img)

	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != spec.ID || in.State != hypervisor.InstanceRunning || in.PID <= 0 || in.StartedAt.IsZero() {
		t.Fatalf("Start: got %+v, want running with a PID and StartedAt", in)
	}
	t.Logf("started pid %d, accel %s", in.PID, in.Accel)
	seen.wait(t, spec.ID)

	in = WaitGuest(t, d, spec.ID)
	checkGuest(t, in, spec)
	cpu := checkCPUSeconds(t, d, spec.ID, in.CPUSeconds)
	checkExec(t, d, spec.ID)

	again, err := d.Start(ctx, spec)
	if err != nil || again.PID != in.PID || again.State != hypervisor.InstanceRunning {
		t.Errorf("second Start: got %+v, %v, want the same running PID %d", again, err, in.PID)
	}
	insts, err := d.List(ctx)
	if err != nil || len(insts) != 1 || insts[0].ID != spec.ID || insts[0].PID != in.PID {
		t.Errorf("List: got %+v, %v, want just %s", insts, err, spec.ID)
	}
	if log, err := d.ConsoleLog(ctx, spec.ID, 4096); err != nil || len(log) == 0 || len(log) > 4096 {
		t.Errorf("ConsoleLog: got %d bytes, %v, want 1..4096", len(log), err)
	}
	q := spec.Quantum
	q.CPU = 0.5
	if err := d.Resize(ctx, spec.ID, q); err != nil {
		t.Errorf("Resize: %v", err)
	}
	if err := d.Resize(ctx, spec.ID, model.Quantum{}); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("Resize to nothing: got %v, want ErrInvalid", err)
	}

	seen.reset()
	if err := d.Stop(ctx, spec.ID, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st, err := d.Get(ctx, spec.ID)
	if err != nil || st.State != hypervisor.InstanceStopped || st.PID != 0 || st.ExitReason == "" || st.Guest != nil {
		t.Errorf("after Stop: got %+v, %v, want stopped, no PID or guest, a reason", st, err)
	}
	t.Logf("exit reason: %s", st.ExitReason)
	checkFinalCPU(t, st, cpu)
	if c.realPIDs && !processGone(in.PID) {
		t.Errorf("process %d still runs after Stop", in.PID)
	}
	seen.wait(t, spec.ID)
	if err := d.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Errorf("second Stop: got %v, want nil", err)
	}
	if _, err := d.Exec(ctx, spec.ID, hypervisor.ExecRequest{Argv: []string{"true"}}, discard); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Exec in a stopped instance: got %v, want ErrNotRunning", err)
	}
	checkSaveStopped(t, d, spec.ID) // save.go

	// The stopped instance boots again (from the disk it kept).
	in2, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if in2.State != hypervisor.InstanceRunning || in2.PID <= 0 || !in2.StartedAt.After(in.StartedAt) {
		t.Errorf("restart: got %+v, want running, started after %v", in2, in.StartedAt)
	}
	WaitGuest(t, d, spec.ID)

	if err := d.Delete(ctx, spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := d.Get(ctx, spec.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get after Delete: got %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, spec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance directory after Delete: got %v, want it gone", err)
	}
	if err := d.Delete(ctx, spec.ID); err != nil {
		t.Errorf("second Delete: got %v, want nil", err)
	}
}

func testAdoption(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage) {
	stateDir, d := setup(t, newDriver)
	ctx := Context(t)
	spec := Spec("adopt-1", img)
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	WaitGuest(t, d, spec.ID)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	d2 := newDriver(t, stateDir)
	got, err := d2.Get(ctx, spec.ID)
	if err != nil || got.State != hypervisor.InstanceRunning || got.PID != in.PID || !got.StartedAt.Equal(in.StartedAt) {
		t.Fatalf("after adoption: got %+v, %v, want running as pid %d since %v", got, err, in.PID, in.StartedAt)
	}
	got = WaitGuest(t, d2, spec.ID)
	checkGuest(t, got, spec)
	if err := d2.Delete(ctx, spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// uptimeRun is how long a guest runs between its report and its
// suspension: long enough that a guest that rebooted on resume (and
// reports an uptime of a fresh boot) is told from one that went on.
const uptimeRun = 2 * time.Second

// suspendedWell checks a suspended instance as Get or List shows it.
func suspendedWell(t *testing.T, in hypervisor.Instance, res hypervisor.SuspendResult) {
	t.Helper()
	if in.State != hypervisor.InstanceSuspended || in.PID != 0 || in.Guest != nil || in.Saved == nil || in.Saved.Bytes != res.Bytes {
		t.Errorf("suspended instance: got %+v, want suspended, no PID or guest, Saved %+v", in, res)
	}
}

// suspend suspends id and checks the result.
func suspend(t *testing.T, d hypervisor.Driver, id string) hypervisor.SuspendResult {
	t.Helper()
	res, err := d.Suspend(context.Background(), id)
	if err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	if res.Bytes <= 0 || res.Duration <= 0 {
		t.Errorf("Suspend: got %+v, want bytes and a duration", res)
	}
	t.Logf("suspended %s: %d bytes in %s (%.0f MB/s)", id, res.Bytes, res.Duration.Round(time.Millisecond),
		float64(res.Bytes)/res.Duration.Seconds()/1e6)
	return res
}

// resume starts a suspended instance and checks that its guest went on
// (wentOn) with the same shape.
func resume(t *testing.T, c config, d hypervisor.Driver, spec hypervisor.InstanceSpec, before hypervisor.Instance, boot string) hypervisor.Instance {
	t.Helper()
	in, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if in.State != hypervisor.InstanceRunning || in.PID <= 0 || in.LastResume == nil || in.LastResume.Bytes <= 0 {
		t.Errorf("resume: got %+v, want running with a PID and LastResume", in)
	}
	if in.LastResume != nil {
		t.Logf("resumed %s: %d bytes in %s", spec.ID, in.LastResume.Bytes, in.LastResume.Duration.Round(time.Millisecond))
	}
	after := WaitGuest(t, d, spec.ID)
	g0, g1 := before.Guest, after.Guest
	if g1.VCPUs != g0.VCPUs || g1.Hostname != g0.Hostname || g1.MemoryMiB != g0.MemoryMiB {
		t.Errorf("resumed guest: got %+v, want the same as before %+v", g1, g0)
	}
	wentOn(t, c, d, spec.ID, "resumed", before, after, boot)
	return after
}

// bootOf returns the boot ID of id's guest through the config's guest
// probe, "" without one.
func bootOf(t *testing.T, c config, d hypervisor.Driver, id string) string {
	t.Helper()
	if c.guest == nil {
		return ""
	}
	boot, err := c.guest.BootID(Context(t), d, id)
	if err != nil || boot == "" {
		t.Fatalf("boot ID of %s: got %q, %v", id, boot, err)
	}
	return boot
}

// wentOn checks that the guest of id went on rather than booted afresh
// after a resume or a move ("what"). With a guest probe, its boot ID is
// boot and its uptime went forward; without one, its uptime went forward
// by most of uptimeRun, as a rebooted guest reports about the uptime of
// its first report. The uptime alone is a weak sign under load: a TCG
// guest starved of CPU counted 1.4 s of uptime over 2.2 s of wall time
// once in CI.
func wentOn(t *testing.T, c config, d hypervisor.Driver, id, what string, before, after hypervisor.Instance, boot string) {
	t.Helper()
	u0, u1 := before.Guest.UptimeS, after.Guest.UptimeS
	t.Logf("guest uptime %.2fs before, %.2fs after (%s)", u0, u1, what)
	if c.guest == nil {
		if u1 < u0+uptimeRun.Seconds()*3/4 {
			t.Errorf("%s guest's uptime: got %.2fs, want at least %.2fs + about %s (did it reboot?)", what, u1, u0, uptimeRun)
		}
		return
	}
	if u1 <= u0 {
		t.Errorf("%s guest's uptime: got %.2fs, want more than the %.2fs it had", what, u1, u0)
	}
	if b, err := c.guest.BootID(Context(t), d, id); err != nil || b != boot {
		t.Errorf("%s guest's boot ID: got %q, %v, want %q (the same boot)", what, b, err, boot)
	}
}

func testSuspend(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, c config) {
	_, d := setup(t, newDriver)
	ctx := Context(t)
	seen := watchChanges(d)
	spec := Spec("susp-1", img)
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	before := WaitGuest(t, d, spec.ID)
	time.Sleep(uptimeRun)
	boot := bootOf(t, c, d, spec.ID)
	cpu := checkCPUSeconds(t, d, spec.ID, before.CPUSeconds)

	seen.reset()
	res := suspend(t, d, spec.ID)
	seen.wait(t, spec.ID)
	got, err := d.Get(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	suspendedWell(t, got, res)
	checkFinalCPU(t, got, cpu)
	if c.realPIDs && !processGone(before.PID) {
		t.Errorf("process %d still runs after Suspend", before.PID)
	}
	if again, err := d.Suspend(ctx, spec.ID); err != nil || again != res {
		t.Errorf("second Suspend: got %+v, %v, want the same %+v", again, err, res)
	}
	insts, err := d.List(ctx)
	if err != nil || len(insts) != 1 {
		t.Fatalf("List: got %+v, %v, want one instance", insts, err)
	}
	suspendedWell(t, insts[0], res)
	if log, err := d.ConsoleLog(ctx, spec.ID, 4096); err != nil {
		t.Errorf("ConsoleLog of a suspended instance: %v", err)
	} else if len(log) > 4096 {
		t.Errorf("ConsoleLog: got %d bytes, want at most 4096", len(log))
	}
	bigger := spec
	bigger.Quantum.Memory *= 2
	if _, err := d.Start(ctx, bigger); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("resume with twice the memory: got %v, want ErrInvalid", err)
	}
	if got, err := d.Get(ctx, spec.ID); err != nil || got.State != hypervisor.InstanceSuspended {
		t.Errorf("after a refused resume: got %+v, %v, want still suspended", got, err)
	}

	seen.reset()
	after := resume(t, c, d, spec, before, boot)
	seen.wait(t, spec.ID)
	if c.realPIDs && after.PID == before.PID {
		t.Errorf("resumed process has the old PID %d", before.PID)
	}

	// Suspend again and Stop: the saved state is discarded, and the next
	// Start boots afresh.
	suspend(t, d, spec.ID)
	if err := d.Stop(ctx, spec.ID, 10*time.Second); err != nil {
		t.Fatalf("Stop of a suspended instance: %v", err)
	}
	st, err := d.Get(ctx, spec.ID)
	if err != nil || st.State != hypervisor.InstanceStopped || st.PID != 0 || st.Saved != nil || st.ExitReason == "" {
		t.Errorf("after Stop: got %+v, %v, want stopped with a reason, nothing saved", st, err)
	}
	if _, err := d.Suspend(ctx, spec.ID); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Suspend of a stopped instance: got %v, want ErrNotRunning", err)
	}
	in, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if in.LastResume != nil {
		t.Errorf("Start after Stop: got LastResume %+v, want a boot", in.LastResume)
	}
	booted := WaitGuest(t, d, spec.ID)
	if booted.Guest.UptimeS >= after.Guest.UptimeS {
		t.Errorf("boot after Stop: guest uptime %.2fs, want less than the %.2fs it had: a fresh boot", booted.Guest.UptimeS, after.Guest.UptimeS)
	}
	if err := d.Delete(ctx, spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func testSuspendAdoption(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, c config) {
	stateDir, d := setup(t, newDriver)
	ctx := Context(t)
	spec := Spec("susp-adopt", img)
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	before := WaitGuest(t, d, spec.ID)
	time.Sleep(uptimeRun)
	boot := bootOf(t, c, d, spec.ID)
	res := suspend(t, d, spec.ID)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	d2 := newDriver(t, stateDir)
	got, err := d2.Get(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	suspendedWell(t, got, res)
	resume(t, c, d2, spec, before, boot)
	if err := d2.Delete(ctx, spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := d2.Get(ctx, spec.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get after Delete: got %v, want ErrNotFound", err)
	}
}

// WaitGuest polls Get until the guest has reported, for up to GuestTimeout.
func WaitGuest(t *testing.T, d hypervisor.Driver, id string) hypervisor.Instance {
	t.Helper()
	start := time.Now()
	deadline := start.Add(GuestTimeout)
	for {
		in, err := d.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("waiting for the guest: %v", err)
		}
		if in.Guest != nil {
			t.Logf("%s: guest reported %s after the call (%s after its process started)", id,
				time.Since(start).Round(time.Millisecond), time.Since(in.StartedAt).Round(time.Millisecond))
			return in
		}
		if in.State == hypervisor.InstanceStopped {
			log, _ := d.ConsoleLog(context.Background(), id, 2048)
			t.Fatalf("%s stopped before its guest reported (%s); console:\n%s", id, in.ExitReason, log)
		}
		if time.Now().After(deadline) {
			log, _ := d.ConsoleLog(context.Background(), id, 2048)
			t.Fatalf("%s: no guest report within %s; console:\n%s", id, GuestTimeout, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuReadGap separates checkCPUSeconds' reads, so that a counter that is
// read at all has time to move.
const cpuReadGap = 200 * time.Millisecond

// checkCPUSeconds reads a running instance's CPU counter through Get,
// Get again and List, and checks that it is >= 0 and never below the
// read before (starting from prev, an earlier read of the same process).
// It returns the last value.
func checkCPUSeconds(t *testing.T, d hypervisor.Driver, id string, prev float64) float64 {
	t.Helper()
	ctx := Context(t)
	if prev < 0 {
		t.Errorf("CPUSeconds of running %s: got %v, want >= 0", id, prev)
	}
	reads := []float64{prev}
	for i := 0; i < 3; i++ {
		time.Sleep(cpuReadGap)
		var in hypervisor.Instance
		if i < 2 {
			var err error
			if in, err = d.Get(ctx, id); err != nil {
				t.Fatalf("Get: %v", err)
			}
		} else {
			insts, err := d.List(ctx)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			for _, x := range insts {
				if x.ID == id {
					in = x
				}
			}
		}
		if in.State != hypervisor.InstanceRunning {
			t.Fatalf("%s: got %+v, want running", id, in)
		}
		if in.FinalCPUSeconds != 0 {
			t.Errorf("running %s: got FinalCPUSeconds %v, want 0", id, in.FinalCPUSeconds)
		}
		last := reads[len(reads)-1]
		if in.CPUSeconds < 0 || in.CPUSeconds < last {
			t.Errorf("CPUSeconds of running %s: got %v after %v, want >= 0 and non-decreasing", id, in.CPUSeconds, last)
		}
		reads = append(reads, in.CPUSeconds)
	}
	t.Logf("%s: CPUSeconds over reads %s apart: %v", id, cpuReadGap, reads)
	return reads[len(reads)-1]
}

// checkFinalCPU checks a stopped or suspended instance's CPU figures
// against the last CPUSeconds its process had.
func checkFinalCPU(t *testing.T, in hypervisor.Instance, last float64) {
	t.Helper()
	if in.CPUSeconds != 0 {
		t.Errorf("%s %s: got CPUSeconds %v, want 0", in.State, in.ID, in.CPUSeconds)
	}
	if in.FinalCPUSeconds < last {
		t.Errorf("%s %s: got FinalCPUSeconds %v, want at least the %v it had used before", in.State, in.ID, in.FinalCPUSeconds, last)
	}
	t.Logf("%s %s: its process used %.3f s of CPU", in.State, in.ID, in.FinalCPUSeconds)
}

// checkGuest compares a guest report with the spec: the vCPU count, and
// the memory the guest sees (MemTotal is the RAM less what the kernel
// keeps, so between 70% and 100% of it).
func checkGuest(t *testing.T, in hypervisor.Instance, spec hypervisor.InstanceSpec) {
	t.Helper()
	g := in.Guest
	if g.VCPUs != spec.Quantum.VCPUs {
		t.Errorf("guest vcpus: got %d, want %d", g.VCPUs, spec.Quantum.VCPUs)
	}
	want := spec.Quantum.Memory.MiB()
	if g.MemoryMiB > want || g.MemoryMiB < want*7/10 {
		t.Errorf("guest memory: got %d MiB, want 70-100%% of %d MiB", g.MemoryMiB, want)
	}
}

// changeSet records the IDs a driver's Changes channel delivers.
type changeSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func watchChanges(d hypervisor.Driver) *changeSet {
	s := &changeSet{seen: map[string]bool{}}
	ch := d.Changes()
	go func() {
		for id := range ch {
			s.mu.Lock()
			s.seen[id] = true
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *changeSet) reset() {
	s.mu.Lock()
	s.seen = map[string]bool{}
	s.mu.Unlock()
}

func (s *changeSet) wait(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ok := s.seen[id]
		s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("Changes did not deliver %s within 10s", id)
}

// TestTimeout bounds each test of the suite, and each driver test that
// takes its context from Context: a guest that hangs (its QEMU alive, its
// kernel not) fails the test instead of holding it until the package's
// timeout, which prints nothing about where it was.
const TestTimeout = 5 * time.Minute

// Context is the context of one test: cancelled TestTimeout after the
// call (sooner if the test binary's own deadline comes first), and when
// the test's cleanups have run.
func Context(t testing.TB) context.Context {
	t.Helper()
	deadline := time.Now().Add(TestTimeout)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Add(-30*time.Second).Before(deadline) {
			deadline = td.Add(-30 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}
