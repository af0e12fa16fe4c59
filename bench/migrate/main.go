// Command migrate measures the QEMU driver's live migration against bare
// QEMU migrating the same kind of guest, on small guests of the test image
// (built and cached the way the qemu package's tests build it,
// internal/guest/guesttest), both idle and while the guest writes memory.
//
// Two guests of the same spec run side by side. One goes through the
// driver between two "hosts" (two drivers on two state directories, with
// cgroup parents of their own): PrepareIncoming on the other host,
// MigrateOut, FinishIncoming, then Delete of what is left at the source;
// the next migration goes back. Its disk is mirrored (the driver has no
// shared storage). The other is bare QEMU: two plain qemu-system-x86_64
// processes with the same command line (qemu.Argv, the driver's own, on
// the same disk file: shared storage, nothing of the disk is copied, no
// cgroup), the destination started with -incoming defer and
// migrate-incoming tcp:127.0.0.1:0, the source told migrate over loopback
// TCP with the same downtime-limit, no bandwidth cap, auto-converge and
// return-path as the driver (so that QEMU's downtime is the same measure
// on both: until the destination has loaded the state and runs), its
// MIGRATION event "completed" awaited, then quit; the next migration goes
// back. The two alternate, K migrations each per workload. (The bare
// guest is booted by a third driver, so its first process is in that
// driver's cgroup; the processes this program starts are in none.)
//
// Workloads: "idle", and "dirty": for the length of each measured
// migration (and a warm-up before it) the guest writes memory in a loop,
// started and stopped with the same commands on both (through the guest
// agent: the driver's Exec on one side, the same protocol spoken to the
// guest agent's socket on the other), so that both guests dirty memory the
// same way and neither does while the other is measured. -writer picks
// the loop: "copy" (the default) copies 32 MiB of random data again and
// again within a tmpfs (kernel copies, 32 MiB dirtied per round); "awk"
// refills an array of 50,000 strings (user-space stores, a few MiB per
// round at the speed awk runs under TCG).
//
// After every migration the guest must still answer (the writer's stop,
// or "true") and its console must show no kernel failure (BUG, Oops,
// panic): a guest whose memory came over wrong soon oopses. -control
// first runs the dirty workload on each guest for a while without
// migrating, which must leave its kernel fine.
//
// Reported per workload and kind: min/median/max of the migration's time
// (the MigrateOut call; migrate until completed for bare), of the time end
// to end (with the destination's preparation and, for the driver,
// FinishIncoming), of QEMU's downtime, and the ratios.
//
//	go run ./bench/migrate -k 5
//
// It needs root (cgroups), qemu-system-x86_64 and the guest kernel, like
// the driver's tests.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/cgroup"
	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
)

func main() {
	k := flag.Int("k", 5, "migrations of each kind per workload")
	mem := flag.String("memory", "256Mi", "guest memory")
	cpu := flag.Float64("cpu", 0, "the driver's guests' CPU cap in cores (0: one per vCPU, the quantum's default)")
	downtime := flag.Duration("downtime", qemu.DefaultMaxDowntime, "downtime-limit of both")
	workloads := flag.String("workloads", "idle,dirty", "comma-separated: idle, dirty")
	warm := flag.Duration("warmup", 2*time.Second, "how long the dirty workload runs before a migration")
	kinds := flag.String("kinds", "driver,bare", "comma-separated: driver, bare")
	noAC := flag.Bool("no-auto-converge", false, "turn auto-converge off on both")
	modeFlag := flag.String("mode", "", "how memory goes on both: live, or paused (the guest paused for the whole copy); default: the driver's for the accelerator")
	writer := flag.String("writer", "copy", "the dirty workload: copy (kernel copies in a tmpfs) or awk (user-space stores)")
	control := flag.Duration("control", 0, "first run the dirty workload this long on each guest without migrating, and check its kernel")
	dir := flag.String("dir", "", "state directory (default: a new temporary directory, removed at the end)")
	verbose := flag.Bool("v", false, "print the driver's log")
	flag.Parse()
	cfg := config{k: *k, cpu: *cpu, downtime: *downtime, warm: *warm, dir: *dir, verbose: *verbose, noAutoConverge: *noAC, control: *control,
		mode: hypervisor.MigrateMode(*modeFlag)}
	if !cfg.mode.Valid() {
		fmt.Fprintf(os.Stderr, "migrate: -mode: %q: want %s or %s\n", *modeFlag, hypervisor.MigrateLive, hypervisor.MigratePaused)
		os.Exit(2)
	}
	for _, kd := range strings.Split(*kinds, ",") {
		if kd != "driver" && kd != "bare" {
			fmt.Fprintf(os.Stderr, "migrate: -kinds: %q: want driver or bare\n", kd)
			os.Exit(2)
		}
		cfg.kinds = append(cfg.kinds, kd)
	}
	var err error
	if cfg.memory, err = model.ParseByteSize(*mem); err != nil {
		fmt.Fprintln(os.Stderr, "migrate: -memory:", err)
		os.Exit(2)
	}
	for _, w := range strings.Split(*workloads, ",") {
		if w != "idle" && w != "dirty" {
			fmt.Fprintf(os.Stderr, "migrate: -workloads: %q: want idle or dirty\n", w)
			os.Exit(2)
		}
		cfg.workloads = append(cfg.workloads, w)
	}
	if w, ok := writers[*writer]; ok {
		writerStart = w
	} else {
		fmt.Fprintf(os.Stderr, "migrate: -writer: %q: want copy or awk\n", *writer)
		os.Exit(2)
	}
	if cfg.k < 1 {
		fmt.Fprintln(os.Stderr, "migrate: -k: want at least 1")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

type config struct {
	k         int
	memory    model.ByteSize
	cpu       float64
	downtime  time.Duration
	warm      time.Duration
	workloads []string
	kinds     []string
	dir       string
	verbose   bool
	// noAutoConverge turns auto-converge off on both.
	noAutoConverge bool
	// mode is how both copy memory ("": the driver's default).
	mode hypervisor.MigrateMode
	// control is how long the dirty workload runs first without a
	// migration (0: not at all).
	control time.Duration
}

func (c config) has(kind string) bool { return slices.Contains(c.kinds, kind) }

// benchCgroup is the cgroup parent of the benchmark's "hosts".
const benchCgroup = "vgrid-bench"

// sample is one measured migration.
type sample struct {
	migrate, endToEnd, downtime time.Duration
	memBytes                    int64
}

func run(cfg config) (err error) {
	dir, cleanup, err := benchkit.WorkDir(cfg.dir, "", "vgrid-migrate-")
	if err != nil {
		return err
	}
	defer cleanup()
	img, err := benchkit.GuestImage()
	if err != nil {
		return err
	}
	logger := benchkit.Logger(cfg.verbose)
	newDriver := func(sub string) (*qemu.Driver, error) {
		return qemu.New(qemu.Options{StateDir: filepath.Join(dir, sub), CgroupParent: benchCgroup + "/" + sub, Logger: logger})
	}
	// Each "host" has a cgroup parent of its own (the driver's guest runs
	// on both at once during a migration); they go at the end, empty.
	defer func() {
		if h, err := cgroup.Detect(); err == nil {
			for _, m := range h.Mounts() {
				for _, sub := range []string{"host-a", "host-b", "bare"} {
					_ = os.Remove(filepath.Join(m, benchCgroup, sub))
				}
			}
		}
	}()
	ctx := context.Background()
	spec := func(id string) hypervisor.InstanceSpec {
		return hypervisor.InstanceSpec{ID: id, Hostname: id, Quantum: model.Quantum{VCPUs: 1, CPU: cfg.cpu, Memory: cfg.memory}, Image: img}
	}

	// The driver's guest, on host a; host b takes it, and so on.
	hosts := [2]*qemu.Driver{}
	for i, sub := range []string{"host-a", "host-b"} {
		if hosts[i], err = newDriver(sub); err != nil {
			return err
		}
		defer hosts[i].Close()
	}
	ds := spec("mig-driver")
	if _, err := hosts[0].Start(ctx, ds); err != nil {
		return err
	}
	defer func() {
		for _, h := range hosts {
			if derr := h.Delete(context.Background(), ds.ID); derr != nil && err == nil {
				err = derr
			}
		}
	}()

	// The bare guest is booted by a driver (same disk overlay, seed and
	// argv) and then left to this program.
	handover, err := benchkit.HandOver(ctx, func() (*qemu.Driver, error) { return newDriver("bare") }, spec("mig-bare"))
	if err != nil {
		return err
	}
	if cfg.mode == "" {
		cfg.mode = qemu.DefaultMigrateMode(handover.Accel)
	}
	bare := &bareVM{h: handover, cur: handover.Paths, pid: handover.PID, downtime: cfg.downtime, noAutoConverge: cfg.noAutoConverge, mode: cfg.mode}
	defer func() {
		bare.kill()
		_ = handover.Remove()
	}()
	if err := benchkit.WaitGuest(ctx, hosts[0], ds.ID); err != nil {
		return err
	}

	capDesc := "1 core per vCPU"
	if cfg.cpu > 0 {
		capDesc = fmt.Sprintf("%.2g cores", cfg.cpu)
	}
	fmt.Printf("guest: 1 vcpu, %s, accel %s; the driver's guest capped at %s (bare: no cgroup); downtime-limit %s; memory copied %s;\n"+
		"%d migrations of each kind per workload, alternating\n\n", cfg.memory, handover.Accel, capDesc, cfg.downtime, cfg.mode, cfg.k)

	cur := 0 // the host the driver's guest is on
	if cfg.control > 0 {
		// The workload alone must not upset the guests' kernels.
		for _, g := range []struct {
			kind    string
			run     execFunc
			console func() []byte
		}{
			{"driver", driverExec(hosts[cur], ds.ID), func() []byte { c, _ := hosts[cur].ConsoleLog(ctx, ds.ID, 1<<20); return c }},
			{"bare", bare.exec, func() []byte { c, _ := os.ReadFile(bare.cur.Console); return c }},
		} {
			if !cfg.has(g.kind) {
				continue
			}
			if err := startWriter(ctx, g.run); err != nil {
				return fmt.Errorf("%s control: %w", g.kind, err)
			}
			time.Sleep(cfg.control)
			err := stopWriter(ctx, g.run)
			if m := oopsRE.FindIndex(g.console()); m != nil || err != nil {
				return fmt.Errorf("%s control: the guest failed without a migration: %v\n%s", g.kind, err, g.console())
			}
			fmt.Printf("control: the %s guest ran the dirty workload for %s without a migration: its kernel is fine\n", g.kind, cfg.control)
		}
	}
	type key struct{ workload, kind string }
	results := map[key][]sample{}
	for _, wl := range cfg.workloads {
		dirty := wl == "dirty"
		for i := 0; i < cfg.k; i++ {
			var s, b sample
			if cfg.has("driver") {
				run := func() execFunc { return driverExec(hosts[cur], ds.ID) }
				console := func() []byte { c, _ := hosts[cur].ConsoleLog(ctx, ds.ID, 1<<20); return c }
				s, err = measure(ctx, dirty, cfg.warm, run, console, func() (sample, error) {
					s, err := driverMigrate(ctx, hosts[cur], hosts[1-cur], ds, hypervisor.MigrateOptions{MaxDowntime: cfg.downtime, NoAutoConverge: cfg.noAutoConverge, Mode: cfg.mode})
					if err == nil {
						cur = 1 - cur
					}
					return s, err
				})
				if err != nil {
					return fmt.Errorf("driver, %s migration %d: %w", wl, i+1, err)
				}
				results[key{wl, "driver"}] = append(results[key{wl, "driver"}], s)
			}
			if cfg.has("bare") {
				run := func() execFunc { return bare.exec }
				console := func() []byte { c, _ := os.ReadFile(bare.cur.Console); return c }
				b, err = measure(ctx, dirty, cfg.warm, run, console, func() (sample, error) { return bare.migrate(ctx) })
				if err != nil {
					return fmt.Errorf("bare, %s migration %d: %w", wl, i+1, err)
				}
				results[key{wl, "bare"}] = append(results[key{wl, "bare"}], b)
			}
			fmt.Printf("%-5s %d: driver migrate %8s end-to-end %8s downtime %6s (%5.1f MiB) | bare migrate %8s end-to-end %8s downtime %6s (%5.1f MiB)\n",
				wl, i+1, benchkit.MS(s.migrate), benchkit.MS(s.endToEnd), benchkit.MS(s.downtime), benchkit.MiB(s.memBytes),
				benchkit.MS(b.migrate), benchkit.MS(b.endToEnd), benchkit.MS(b.downtime), benchkit.MiB(b.memBytes))
			time.Sleep(500 * time.Millisecond)
		}
	}
	// The guests went on through all of it.
	if cfg.has("driver") {
		if err := benchkit.WaitGuest(ctx, hosts[cur], ds.ID); err != nil {
			return err
		}
	}
	if cfg.has("bare") {
		if st, err := bare.status(); err != nil || st != "running" {
			return fmt.Errorf("bare guest after the migrations: %s, %v", st, err)
		}
	}

	fmt.Println()
	fmt.Printf("%-6s %-7s %-26s %-26s %-24s %9s\n", "", "", "migrate min/med/max ms", "end-to-end min/med/max ms",
		"downtime min/med/max ms", "sent MiB")
	for _, wl := range cfg.workloads {
		for _, kind := range cfg.kinds {
			ss := results[key{wl, kind}]
			var mig, e2e, down []time.Duration
			var sent []int64
			for _, s := range ss {
				mig, e2e, down = append(mig, s.migrate), append(e2e, s.endToEnd), append(down, s.downtime)
				sent = append(sent, s.memBytes)
			}
			fmt.Printf("%-6s %-7s %-26s %-26s %-24s %9.1f\n", wl, kind, triple(mig), triple(e2e), triple(down), benchkit.MiB(benchkit.Median64(sent)))
		}
		d, b := results[key{wl, "driver"}], results[key{wl, "bare"}]
		if len(d) == 0 || len(b) == 0 {
			continue
		}
		get := func(ss []sample, f func(sample) time.Duration) [3]time.Duration {
			var xs []time.Duration
			for _, s := range ss {
				xs = append(xs, f(s))
			}
			return benchkit.Stats(xs)
		}
		dm, bm := get(d, func(s sample) time.Duration { return s.migrate }), get(b, func(s sample) time.Duration { return s.migrate })
		de, be := get(d, func(s sample) time.Duration { return s.endToEnd }), get(b, func(s sample) time.Duration { return s.endToEnd })
		dd, bd := get(d, func(s sample) time.Duration { return s.downtime }), get(b, func(s sample) time.Duration { return s.downtime })
		fmt.Printf("%-6s driver/bare (median): migrate %.2fx, end-to-end %.2fx, downtime %s (driver - bare: %+.1f ms)\n",
			wl, ratio(dm[1], bm[1]), ratio(de[1], be[1]), ratioStr(dd[1], bd[1]), float64(dd[1]-bd[1])/float64(time.Millisecond))
	}
	return nil
}

// oopsRE finds a guest kernel's report of its own failure on its console.
var oopsRE = regexp.MustCompile(`(?m)(BUG: |Oops: |Kernel panic|general protection fault|kernel BUG at)`)

// measure runs one migration (with the dirty workload around it when
// dirty) and then checks that the guest's kernel did not fail: a guest
// whose memory came over wrong soon oopses.
func measure(ctx context.Context, dirty bool, warm time.Duration, run func() execFunc, console func() []byte, migrate func() (sample, error)) (sample, error) {
	if dirty {
		if err := startWriter(ctx, run()); err != nil {
			return sample{}, fmt.Errorf("start the writer: %w", err)
		}
		time.Sleep(warm)
	}
	s, err := migrate()
	if err != nil {
		return sample{}, err
	}
	if dirty {
		err = stopWriter(ctx, run())
	} else {
		_, err = run()(ctx, "true")
	}
	con := console()
	if m := oopsRE.FindIndex(con); m != nil {
		return sample{}, fmt.Errorf("the guest's kernel failed after the migration:\n%s", con[m[0]:min(len(con), m[0]+2000)])
	}
	if err != nil {
		return sample{}, fmt.Errorf("the guest after the migration: %w; console:\n%s", err, con[max(0, len(con)-2000):])
	}
	return s, nil
}

// driverMigrate moves the driver's guest from one host to the other and
// deletes what is left at the source.
func driverMigrate(ctx context.Context, from, to *qemu.Driver, spec hypervisor.InstanceSpec, opt hypervisor.MigrateOptions) (sample, error) {
	t0 := time.Now()
	ep, err := to.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		return sample{}, err
	}
	res, err := from.MigrateOut(ctx, spec.ID, ep, opt, nil)
	if err != nil {
		to.Delete(ctx, spec.ID)
		return sample{}, err
	}
	if _, err := to.FinishIncoming(ctx, spec.ID); err != nil {
		return sample{}, err
	}
	e2e := time.Since(t0)
	if err := from.Delete(ctx, spec.ID); err != nil {
		return sample{}, err
	}
	return sample{migrate: res.Total, endToEnd: e2e, downtime: res.Downtime, memBytes: res.MemoryBytes}, nil
}

// execFunc runs a command in a guest and returns its standard output.
type execFunc func(ctx context.Context, argv ...string) (string, error)

func driverExec(d *qemu.Driver, id string) execFunc {
	return func(ctx context.Context, argv ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, execTimeout)
		defer cancel()
		var out strings.Builder
		var res hypervisor.ExecResult
		var err error
		// Right after FinishIncoming the agent's channel may still be
		// connecting.
		for deadline := time.Now().Add(10 * time.Second); ; {
			res, err = d.Exec(ctx, id, hypervisor.ExecRequest{Argv: argv, Timeout: time.Minute}, func(stream string, b []byte) error {
				if stream == hypervisor.StreamStdout {
					out.Write(b)
				}
				return nil
			})
			if !errors.Is(err, hypervisor.ErrGuestNotReady) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%v: exit %d %s", argv, res.ExitCode, res.Message)
		}
		return out.String(), err
	}
}

// The dirty workloads run in the background until a stop file appears;
// the loop marks its end with another. "copy": 32 MiB of random data,
// copied again and again within a tmpfs (the kernel's copies: every copy
// dirties 32 MiB of guest memory). "awk": an awk program that fills an
// array of 50,000 strings again and again (user-space stores into its
// heap: a few MiB rewritten per round, at the speed awk runs).
var writers = map[string]string{
	"copy": `mkdir -p /tmp/mw && (grep -q ' /tmp/mw ' /proc/mounts || mount -t tmpfs -o size=96m tmpfs /tmp/mw) &&
[ -f /tmp/mw/r ] || dd if=/dev/urandom of=/tmp/mw/r bs=1M count=32 2>/dev/null
rm -f /tmp/mw/stop /tmp/mw/ended
setsid sh -c 'while [ ! -e /tmp/mw/stop ]; do cp /tmp/mw/r /tmp/mw/w; done; touch /tmp/mw/ended' </dev/null >/dev/null 2>&1 &`,
	"awk": `mkdir -p /tmp/mw && rm -f /tmp/mw/stop /tmp/mw/ended && cat > /tmp/mw/w.awk <<'AWK'
BEGIN { f = "/tmp/mw/stop"; while ((getline l < f) < 0) { for (i = 0; i < 50000; i++) a[i] = i "-" rand() "-" i } }
AWK
setsid sh -c 'awk -f /tmp/mw/w.awk; touch /tmp/mw/ended' </dev/null >/dev/null 2>&1 &`,
}

const writerStop = `touch /tmp/mw/stop; i=0; while [ ! -e /tmp/mw/ended ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; [ -e /tmp/mw/ended ]`

// writerStart is the chosen dirty workload's start (-writer).
var writerStart = writers["copy"]

func startWriter(ctx context.Context, run execFunc) error {
	_, err := run(ctx, "sh", "-c", writerStart)
	return err
}

func stopWriter(ctx context.Context, run execFunc) error {
	_, err := run(ctx, "sh", "-c", writerStop)
	return err
}

// migrationTimeout bounds a bare migration.
const migrationTimeout = 5 * time.Minute

// execTimeout bounds a command in a guest (a guest that failed never
// answers).
const execTimeout = 90 * time.Second

// bareVM is a guest migrated by hand between two processes on one disk.
type bareVM struct {
	h        *benchkit.Handover // h.Paths: where the driver booted it, its disk and seed
	cur      qemu.Paths         // the process that runs it now
	side     int
	pid      int
	qmp      *benchkit.QMP
	downtime time.Duration
	// noAutoConverge turns auto-converge off.
	noAutoConverge bool
	// mode: MigratePaused stops the guest before migrate and continues it
	// at the destination once it has arrived.
	mode hypervisor.MigrateMode
}

// paths are the files of side i: the home disk and seed (shared storage),
// and sockets, pidfile, console and log of its own.
func (b *bareVM) paths(i int) (qemu.Paths, error) {
	if i == 0 {
		return b.h.Paths, nil
	}
	dir := b.h.Paths.Dir + "-b"
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return qemu.Paths{}, err
	}
	p := b.h.Paths
	p.Dir, p.SockDir = dir, dir
	p.Spec, p.State, p.Intent = filepath.Join(dir, "spec.json"), filepath.Join(dir, "state.json"), filepath.Join(dir, "intent.json")
	p.Console, p.PIDFile, p.Log = filepath.Join(dir, "console.log"), filepath.Join(dir, "qemu.pid"), filepath.Join(dir, "qemu.log")
	p.QMP, p.Agent = filepath.Join(dir, "qmp.sock"), filepath.Join(dir, "agent.sock")
	return p, nil
}

// migrate moves the guest to the other side.
func (b *bareVM) migrate(ctx context.Context) (sample, error) {
	if b.qmp == nil {
		// The first time: the driver's connection was just closed.
		c, err := benchkit.DialQMP(b.cur.QMP)
		if err != nil {
			return sample{}, err
		}
		b.qmp = c
	}
	to, err := b.paths(1 - b.side)
	if err != nil {
		return sample{}, err
	}
	benchkit.RemoveRuntimeFiles(to)
	srcPidfd, err := unix.PidfdOpen(b.pid, 0)
	if err != nil {
		return sample{}, err
	}
	defer unix.Close(srcPidfd)

	t0 := time.Now()
	if err := benchkit.RunQEMU(b.h.Command(to, "-incoming", "defer")); err != nil {
		return sample{}, err
	}
	dstPID, err := benchkit.ReadPID(to.PIDFile)
	if err != nil {
		return sample{}, err
	}
	dst, err := benchkit.DialQMP(to.QMP)
	if err != nil {
		return sample{}, err
	}
	fail := func(err error) (sample, error) {
		dst.Close()
		syscall.Kill(dstPID, syscall.SIGKILL)
		return sample{}, err
	}
	if err := dst.EnableMigrationEvents(); err != nil {
		return fail(err)
	}
	if err := dst.Run("migrate-incoming", map[string]any{"uri": "tcp:127.0.0.1:0"}); err != nil {
		return fail(err)
	}
	var in struct {
		SocketAddress []struct {
			Port string `json:"port"`
		} `json:"socket-address"`
	}
	if err := dst.Query("query-migrate", &in); err != nil || len(in.SocketAddress) == 0 {
		return fail(fmt.Errorf("the destination's port: %v", err))
	}
	c := b.qmp
	// return-path as the driver: the source's "completed" (and QEMU's
	// downtime) then waits until the destination has loaded the state and
	// runs the guest; without it QEMU stops counting the downtime when it
	// has sent the last bytes, before the destination runs (up to 15 ms
	// less here, measured with the STOP and RESUME events).
	caps := []map[string]any{{"capability": "events", "state": true}, {"capability": "auto-converge", "state": !b.noAutoConverge},
		{"capability": "return-path", "state": true}}
	if err := c.Run("migrate-set-capabilities", map[string]any{"capabilities": caps}); err != nil {
		return fail(err)
	}
	params := map[string]any{"downtime-limit": b.downtime.Milliseconds(), "max-bandwidth": int64(64 << 30)}
	if err := c.Run("migrate-set-parameters", params); err != nil {
		return fail(err)
	}
	c.DrainEvents()
	t1 := time.Now()
	if b.mode == hypervisor.MigratePaused {
		if err := c.Run("stop", nil); err != nil {
			return fail(err)
		}
	}
	if err := c.Run("migrate", map[string]any{"uri": "tcp:127.0.0.1:" + in.SocketAddress[0].Port}); err != nil {
		return fail(err)
	}
	if err := c.WaitMigration(ctx, migrationTimeout); err != nil {
		return fail(err)
	}
	migrated := time.Since(t1)
	if b.mode == hypervisor.MigratePaused {
		// The guest arrives paused (the source's run state): continued
		// at once, as the driver's destination does.
		if err := dst.Run("cont", nil); err != nil {
			return fail(err)
		}
	}
	e2e := time.Since(t0)
	var info struct {
		TotalMS    int64 `json:"total-time"`
		DowntimeMS int64 `json:"downtime"`
		RAM        struct {
			Transferred int64 `json:"transferred"`
		} `json:"ram"`
	}
	// QEMU says completed a moment before it fills in the times.
	for deadline := time.Now().Add(2 * time.Second); ; {
		if err := c.Query("query-migrate", &info); err != nil {
			return fail(err)
		}
		if info.TotalMS > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_ = c.Run("quit", nil)
	if err := benchkit.WaitPidfd(srcPidfd, 10*time.Second); err != nil {
		return fail(err)
	}
	c.Close()
	b.qmp, b.pid, b.cur, b.side = dst, dstPID, to, 1-b.side
	// The destination runs the guest by itself once it has loaded it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := b.status()
		if err != nil {
			return sample{}, err
		}
		if st == "running" {
			break
		}
		if time.Now().After(deadline) {
			return sample{}, fmt.Errorf("the destination is %s after the migration", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	down := time.Duration(info.DowntimeMS) * time.Millisecond
	if b.mode == hypervisor.MigratePaused {
		// Paused from the stop until completed, as the driver counts.
		down = migrated
	}
	return sample{migrate: migrated, endToEnd: e2e, downtime: down, memBytes: info.RAM.Transferred}, nil
}

func (b *bareVM) status() (string, error) { return b.qmp.Status() }

// exec runs a command in the bare guest through its agent's socket, with
// the guest agent protocol (what the driver's Exec speaks).
func (b *bareVM) exec(ctx context.Context, argv ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", b.cur.Agent)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(execTimeout))
	idb := make([]byte, 8)
	_, _ = rand.Read(idb)
	id := "bench-" + hex.EncodeToString(idb)
	req, err := json.Marshal(proto.Message{Type: proto.TypeExec, ID: id, Exec: &proto.ExecRequest{Argv: argv, TimeoutS: 60}})
	if err != nil {
		return "", err
	}
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return "", err
	}
	var out strings.Builder
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m proto.Message
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.ID != id {
			continue
		}
		switch m.Type {
		case proto.TypeOutput:
			if m.Stream == proto.StreamStdout {
				out.Write(m.Data)
			}
		case proto.TypeExit:
			if m.ExitCode == nil || *m.ExitCode != 0 {
				return out.String(), fmt.Errorf("%v: exit %v %s", argv, m.ExitCode, m.Message)
			}
			return out.String(), nil
		}
	}
	return out.String(), fmt.Errorf("%v: the guest agent's connection ended: %v", argv, sc.Err())
}

func (b *bareVM) kill() {
	if b.qmp != nil {
		b.qmp.Close()
	}
	for _, p := range []qemu.Paths{b.h.Paths, b.cur} {
		if pid, err := benchkit.ReadPID(p.PIDFile); err == nil && benchkit.QEMUAlive(pid, p.Dir+"/") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(100 * time.Millisecond)
}

func triple(ds []time.Duration) string {
	s := benchkit.Stats(ds)
	f := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 1, 64) }
	return f(s[0]) + "/" + f(s[1]) + "/" + f(s[2])
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return a.Seconds() / b.Seconds()
}

func ratioStr(a, b time.Duration) string {
	if b <= 0 {
		return "n/a (bare 0 ms)"
	}
	return fmt.Sprintf("%.2fx", ratio(a, b))
}
