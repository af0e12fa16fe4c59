package hypervisortest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
)

// GuestProbe lets the live-migration tests look into a running guest: its
// boot (a guest that moved live did not reboot) and a file on its disk
// that lines are appended to (writes made before and during the move are
// there after it).
type GuestProbe struct {
	// BootID returns an identifier of the guest's current boot (a
	// rebooted guest has another one).
	BootID func(ctx context.Context, d hypervisor.Driver, id string) (string, error)
	// Append has the guest of running instance id append line to a file
	// on its disk and returns once the line is on the disk (synced). An
	// error says it may not be: the guest was unreachable or failed.
	Append func(ctx context.Context, d hypervisor.Driver, id, line string) error
	// Lines returns the lines of that file (none when it does not exist).
	Lines func(ctx context.Context, d hypervisor.Driver, id string) ([]string, error)
}

// WithGuestProbe makes the live-migration tests check the guest's boot and
// disk with p (without it they check its uptime only).
func WithGuestProbe(p GuestProbe) Option { return func(c *config) { c.guest = &p } }

// ExecGuestProbe is a GuestProbe for guests with a POSIX shell, through
// Driver.Exec: /proc/sys/kernel/random/boot_id, and lines appended to
// /root/vgrid-migrate-probe followed by sync.
func ExecGuestProbe() GuestProbe {
	const file = "/root/vgrid-migrate-probe"
	run := func(ctx context.Context, d hypervisor.Driver, id string, argv ...string) (string, error) {
		var out strings.Builder
		res, err := d.Exec(ctx, id, hypervisor.ExecRequest{Argv: argv, Timeout: 20 * time.Second}, func(stream string, data []byte) error {
			if stream == hypervisor.StreamStdout {
				out.Write(data)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if res.ExitCode != 0 {
			return out.String(), fmt.Errorf("%v: exit code %d %s", argv, res.ExitCode, res.Message)
		}
		return out.String(), nil
	}
	return GuestProbe{
		BootID: func(ctx context.Context, d hypervisor.Driver, id string) (string, error) {
			s, err := run(ctx, d, id, "cat", "/proc/sys/kernel/random/boot_id")
			return strings.TrimSpace(s), err
		},
		Append: func(ctx context.Context, d hypervisor.Driver, id, line string) error {
			_, err := run(ctx, d, id, "sh", "-c", `echo "$1" >> `+file+` && sync`, "sh", line)
			return err
		},
		Lines: func(ctx context.Context, d hypervisor.Driver, id string) ([]string, error) {
			s, err := run(ctx, d, id, "sh", "-c", "cat "+file+" 2>/dev/null; true")
			if err != nil {
				return nil, err
			}
			return strings.Fields(s), nil
		},
	}
}

// migrateListen is where the destinations of the suite listen.
const migrateListen = "127.0.0.1:0"

// testLiveMigrate moves a running guest live from a driver on one state
// directory to a driver on another: prepared there, moved while a writer
// appends to its disk, finished; the guest goes on (uptime, boot ID),
// every write it acknowledged is on the destination's disk, and the
// source's process is gone.
func testLiveMigrate(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, c config) {
	ctx := Context(t)
	stateA, dA := setup(t, newDriver)
	_, dB := setup(t, newDriver)
	imgA, imgB := hostImage(t, img, t.TempDir()), hostImage(t, img, t.TempDir())
	id := "live-1"
	spec := Spec(id, imgA)
	specB := spec
	specB.Image = imgB

	if _, err := dA.MigrateOut(ctx, id, hypervisor.MigrationEndpoint{Memory: "127.0.0.1:1", Disk: "nbd://127.0.0.1:2/root"},
		hypervisor.MigrateOptions{}, nil); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("MigrateOut of an unknown instance: got %v, want ErrNotFound", err)
	}
	if _, err := dB.FinishIncoming(ctx, id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("FinishIncoming of an unknown instance: got %v, want ErrNotFound", err)
	}
	if _, err := dA.MigrateOut(ctx, id, hypervisor.MigrationEndpoint{Memory: "127.0.0.1:1", Disk: "nbd://127.0.0.1:2/root"},
		hypervisor.MigrateOptions{Mode: "sideways"}, nil); !errors.Is(err, hypervisor.ErrInvalid) || !strings.Contains(err.Error(), "sideways") {
		t.Errorf("MigrateOut in an unknown mode: got %v, want ErrInvalid naming the mode", err)
	}

	ep := prepareIncoming(t, dB, specB)
	if again, err := dB.PrepareIncoming(ctx, specB, migrateListen); err != nil || again != ep {
		t.Errorf("second PrepareIncoming: got %+v, %v, want the same %+v", again, err, ep)
	}
	if _, err := dB.Start(ctx, specB); !errors.Is(err, hypervisor.ErrIncoming) {
		t.Errorf("Start of an incoming instance: got %v, want ErrIncoming", err)
	}
	if _, err := dB.Suspend(ctx, id); !errors.Is(err, hypervisor.ErrIncoming) {
		t.Errorf("Suspend of an incoming instance: got %v, want ErrIncoming", err)
	}
	if _, err := dB.FinishIncoming(ctx, id); err == nil {
		t.Errorf("FinishIncoming before the guest came: got nil, want an error")
	}
	if insts, err := dB.List(ctx); err != nil || len(insts) != 1 || insts[0].ID != id || insts[0].State != hypervisor.InstancePaused {
		t.Errorf("List of the destination: got %+v, %v, want %s paused", insts, err, id)
	}

	if _, err := dA.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := dA.PrepareIncoming(ctx, spec, migrateListen); !errors.Is(err, hypervisor.ErrExists) {
		t.Errorf("PrepareIncoming of an instance the host runs: got %v, want ErrExists", err)
	}
	before := WaitGuest(t, dA, id)
	var boot string
	if c.guest != nil {
		var err error
		if boot, err = c.guest.BootID(ctx, dA, id); err != nil || boot == "" {
			t.Fatalf("boot ID before the move: got %q, %v", boot, err)
		}
		if err := c.guest.Append(ctx, dA, id, "before"); err != nil {
			t.Fatalf("write before the move: %v", err)
		}
	}
	time.Sleep(uptimeRun)

	// A writer appends to the guest's disk until the source's guest can no
	// longer answer; each line it was told is on the disk must arrive.
	w := startWriter(t, c.guest, dA, id)
	var prog progressLog
	res, err := dA.MigrateOut(ctx, id, ep, hypervisor.MigrateOptions{}, prog.add)
	acked := w.stop()
	if err != nil {
		t.Fatalf("MigrateOut: %v", err)
	}
	t.Logf("migrated in %s, downtime %s, memory %d bytes, disk %d bytes; %d progress reports; %d writes acknowledged",
		res.Total.Round(time.Millisecond), res.Downtime, res.MemoryBytes, res.DiskBytes, len(prog.all()), len(acked))
	if res.Total <= 0 || res.Downtime <= 0 || res.Downtime > res.Total || res.MemoryBytes <= 0 || res.DiskBytes < 0 {
		t.Errorf("MigrateOut: got %+v, want a total, a downtime within it, memory sent", res)
	}
	prog.check(t)

	// The source's process is gone; its files stay until Delete.
	got, err := dA.Get(ctx, id)
	if err != nil || got.State != hypervisor.InstanceStopped || got.PID != 0 || got.ExitReason == "" || got.Guest != nil {
		t.Errorf("source after the move: got %+v, %v, want stopped, no process or guest, a reason", got, err)
	}
	if c.realPIDs && !processGone(before.PID) {
		t.Errorf("process %d still runs on the source after the move", before.PID)
	}
	if _, err := dA.Exec(ctx, id, hypervisor.ExecRequest{Argv: []string{"true"}}, discard); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Exec on the source after the move: got %v, want ErrNotRunning", err)
	}

	in, err := dB.FinishIncoming(ctx, id)
	if err != nil {
		t.Fatalf("FinishIncoming: %v", err)
	}
	if in.State != hypervisor.InstanceRunning || in.PID <= 0 || in.ExitReason != "" {
		t.Errorf("FinishIncoming: got %+v, want running with a PID and no exit reason", in)
	}
	if again, err := dB.FinishIncoming(ctx, id); err != nil || again.State != hypervisor.InstanceRunning || again.PID != in.PID {
		t.Errorf("second FinishIncoming: got %+v, %v, want the same running instance", again, err)
	}
	after := WaitGuest(t, dB, id)
	checkGuest(t, after, spec)
	wentOn(t, c, dB, id, "moved", before, after, boot)
	if c.guest != nil {
		lines, err := c.guest.Lines(ctx, dB, id)
		if err != nil {
			t.Fatalf("read the guest's file after the move: %v", err)
		}
		for _, want := range append([]string{"before"}, acked...) {
			if !slices.Contains(lines, want) {
				t.Errorf("the moved guest's disk lacks %q, which the guest wrote on the source (it has %d lines)", want, len(lines))
			}
		}
		if err := c.guest.Append(ctx, dB, id, "after"); err != nil {
			t.Errorf("write after the move: %v", err)
		}
	}

	if err := dA.Delete(ctx, id); err != nil {
		t.Fatalf("Delete on the source: %v", err)
	}
	if _, err := dA.Get(ctx, id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get on the source after Delete: got %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(stateA, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance directory on the source after Delete: got %v, want it gone", err)
	}
	if err := dB.Delete(ctx, id); err != nil {
		t.Fatalf("Delete on the destination: %v", err)
	}
}

// testLiveMigrateFail cancels a live migration midway and then migrates to
// an endpoint that is gone: each time the guest runs on at the source,
// the same guest, its disk writable; a migration after both succeeds.
func testLiveMigrateFail(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, c config) {
	ctx := Context(t)
	_, dA := setup(t, newDriver)
	_, dB := setup(t, newDriver)
	imgA, imgB := hostImage(t, img, t.TempDir()), hostImage(t, img, t.TempDir())
	id := "live-2"
	spec := Spec(id, imgA)
	specB := spec
	specB.Image = imgB
	if _, err := dA.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	before := WaitGuest(t, dA, id)
	var boot string
	if c.guest != nil {
		var err error
		if boot, err = c.guest.BootID(ctx, dA, id); err != nil {
			t.Fatal(err)
		}
	}
	// stillThere checks that the guest runs on at the source, unmoved.
	stillThere := func(what string) {
		t.Helper()
		in, err := dA.Get(ctx, id)
		if err != nil || in.State != hypervisor.InstanceRunning || in.PID != before.PID {
			t.Fatalf("after %s: got %+v, %v, want the guest running on the source as pid %d", what, in, err, before.PID)
		}
		g := WaitGuest(t, dA, id)
		if g.Guest.UptimeS < before.Guest.UptimeS {
			t.Errorf("after %s: uptime %.2fs, less than the %.2fs before", what, g.Guest.UptimeS, before.Guest.UptimeS)
		}
		if c.guest != nil {
			if b, err := c.guest.BootID(ctx, dA, id); err != nil || b != boot {
				t.Errorf("after %s: boot ID %q, %v, want %q", what, b, err, boot)
			}
			if err := c.guest.Append(ctx, dA, id, "after-"+strings.ReplaceAll(what, " ", "-")); err != nil {
				t.Errorf("after %s: the guest cannot write its disk: %v", what, err)
			}
		}
	}

	// Cancelled while memory goes (slowly: a small bandwidth cap).
	ep := prepareIncoming(t, dB, specB)
	cctx, cancel := context.WithCancel(ctx)
	var prog progressLog
	_, err := dA.MigrateOut(cctx, id, ep, hypervisor.MigrateOptions{Bandwidth: 4 << 20}, func(p hypervisor.MigrationProgress) {
		prog.add(p)
		if p.Phase == "memory" {
			cancel()
		}
	})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("MigrateOut cancelled: got %v, want context.Canceled", err)
	}
	t.Logf("cancelled: %v", err)
	stillThere("a cancelled migration")
	if err := dB.Delete(ctx, id); err != nil {
		t.Fatalf("Delete on the destination: %v", err)
	}
	if _, err := dB.Get(ctx, id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get on the destination after Delete: got %v, want ErrNotFound", err)
	}

	// To an endpoint nobody serves any more.
	if _, err := dA.MigrateOut(ctx, id, ep, hypervisor.MigrateOptions{}, nil); err == nil {
		t.Fatal("MigrateOut to a dead endpoint: got nil, want an error")
	} else {
		t.Logf("dead endpoint: %v", err)
	}
	stillThere("a migration to a dead endpoint")

	// And then it moves.
	ep = prepareIncoming(t, dB, specB)
	res, err := dA.MigrateOut(ctx, id, ep, hypervisor.MigrateOptions{MaxDowntime: 300 * time.Millisecond, NoAutoConverge: true}, nil)
	if err != nil {
		t.Fatalf("MigrateOut after the failures: %v", err)
	}
	t.Logf("migrated after the failures in %s, downtime %s", res.Total.Round(time.Millisecond), res.Downtime)
	if _, err := dB.FinishIncoming(ctx, id); err != nil {
		t.Fatalf("FinishIncoming: %v", err)
	}
	WaitGuest(t, dB, id)
	if c.guest != nil {
		lines, err := c.guest.Lines(ctx, dB, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"after-a-cancelled-migration", "after-a-migration-to-a-dead-endpoint"} {
			if !slices.Contains(lines, want) {
				t.Errorf("the moved guest's disk lacks %q (has %v)", want, lines)
			}
		}
	}
	for _, d := range []hypervisor.Driver{dA, dB} {
		if err := d.Delete(ctx, id); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
}

// prepareIncoming prepares id on d and checks the endpoint and how the
// instance looks while it waits.
func prepareIncoming(t *testing.T, d hypervisor.Driver, spec hypervisor.InstanceSpec) hypervisor.MigrationEndpoint {
	t.Helper()
	ctx := Context(t)
	ep, err := d.PrepareIncoming(ctx, spec, migrateListen)
	if err != nil {
		t.Fatalf("PrepareIncoming: %v", err)
	}
	if !strings.HasPrefix(ep.Memory, "127.0.0.1:") || !strings.HasPrefix(ep.Disk, "nbd://127.0.0.1:") || ep.Memory == "127.0.0.1:0" {
		t.Errorf("PrepareIncoming: got endpoint %+v, want 127.0.0.1:port and nbd://127.0.0.1:port/export", ep)
	}
	in, err := d.Get(ctx, spec.ID)
	if err != nil || in.State != hypervisor.InstancePaused || in.ExitReason != "incoming" || in.PID <= 0 || in.Guest != nil {
		t.Errorf("Get of an incoming instance: got %+v, %v, want paused, ExitReason incoming, a PID, no guest", in, err)
	}
	if _, err := d.Exec(ctx, spec.ID, hypervisor.ExecRequest{Argv: []string{"true"}}, discard); !errors.Is(err, hypervisor.ErrIncoming) {
		t.Errorf("Exec in an incoming instance: got %v, want ErrIncoming", err)
	}
	return ep
}

// writer appends numbered lines to a guest's disk until stopped or until
// the guest no longer answers.
type writer struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked []string
}

func startWriter(t *testing.T, p *GuestProbe, d hypervisor.Driver, id string) *writer {
	w := &writer{stopc: make(chan struct{}), done: make(chan struct{})}
	if p == nil {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		for i := 1; ; i++ {
			select {
			case <-w.stopc:
				return
			default:
			}
			line := fmt.Sprintf("during-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := p.Append(ctx, d, id, line)
			cancel()
			if err != nil {
				t.Logf("writer stopped at %s: %v", line, err)
				return
			}
			w.mu.Lock()
			w.acked = append(w.acked, line)
			w.mu.Unlock()
		}
	}()
	return w
}

// stop stops the writer and returns the lines the guest acknowledged.
func (w *writer) stop() []string {
	close(w.stopc)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// progressLog collects the progress reports of a migration.
type progressLog struct {
	mu   sync.Mutex
	reps []hypervisor.MigrationProgress
}

func (l *progressLog) add(p hypervisor.MigrationProgress) {
	l.mu.Lock()
	l.reps = append(l.reps, p)
	l.mu.Unlock()
}

func (l *progressLog) all() []hypervisor.MigrationProgress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reps)
}

// check checks the reports of a completed migration: phases among disk,
// memory and switchover, in that order, memory and switchover seen, the
// counts never negative.
func (l *progressLog) check(t *testing.T) {
	t.Helper()
	order := map[string]int{"disk": 0, "memory": 1, "switchover": 2}
	reps := l.all()
	last, seen := -1, map[string]bool{}
	for i, p := range reps {
		o, ok := order[p.Phase]
		if !ok {
			t.Errorf("progress %d: phase %q, want disk, memory or switchover", i, p.Phase)
			continue
		}
		if o < last {
			t.Errorf("progress %d: phase %s after %v", i, p.Phase, reps[i-1].Phase)
		}
		last, seen[p.Phase] = o, true
		if p.DiskTotal < 0 || p.DiskDone < 0 || p.DiskDone > p.DiskTotal || p.MemoryTotal < 0 || p.MemoryTransferred < 0 ||
			p.MemoryRemaining < 0 || p.DirtyRate < 0 || p.Passes < 0 {
			t.Errorf("progress %d: got %+v, want counts in range", i, p)
		}
	}
	if !seen["memory"] || !seen["switchover"] {
		t.Errorf("progress: got phases %v, want memory and switchover among them", reps)
	}
	if len(reps) > 0 {
		t.Logf("progress: %d reports, first %+v, last %+v", len(reps), reps[0], reps[len(reps)-1])
	}
}
