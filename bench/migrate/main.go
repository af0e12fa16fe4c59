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
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/cgroup"
	"vgrid/internal/guest/guesttest"
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
	writer := flag.String("writer", "copy", "the dirty workload: copy (kernel copies in a tmpfs) or awk (user-space stores)")
	control := flag.Duration("control", 0, "first run the dirty workload this long on each guest without migrating, and check its kernel")
	dir := flag.String("dir", "", "state directory (default: a new temporary directory, removed at the end)")
	verbose := flag.Bool("v", false, "print the driver's log")
	flag.Parse()
	cfg := config{k: *k, cpu: *cpu, downtime: *downtime, warm: *warm, dir: *dir, verbose: *verbose, noAutoConverge: *noAC, control: *control}
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
	if cfg.dir == "" {
		if cfg.dir, err = os.MkdirTemp("", "vgrid-migrate-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.dir)
	}
	img, err := guestImage()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if cfg.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	newDriver := func(sub string) (*qemu.Driver, error) {
		return qemu.New(qemu.Options{StateDir: filepath.Join(cfg.dir, sub), CgroupParent: benchCgroup + "/" + sub, Logger: logger})
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
	// argv) and then left to this program: its driver is closed, which
	// frees QEMU's one QMP connection.
	bareDrv, err := newDriver("bare")
	if err != nil {
		return err
	}
	bs := spec("mig-bare")
	if _, err := bareDrv.Start(ctx, bs); err != nil {
		bareDrv.Close()
		return err
	}
	for _, w := range []struct {
		d  *qemu.Driver
		id string
	}{{hosts[0], ds.ID}, {bareDrv, bs.ID}} {
		if err := waitGuest(ctx, w.d, w.id); err != nil {
			bareDrv.Close()
			return err
		}
	}
	in, err := bareDrv.Get(ctx, bs.ID)
	if err != nil {
		bareDrv.Close()
		return err
	}
	bare := &bareVM{spec: bs, home: bareDrv.Paths(bs.ID), accel: in.Accel, pid: in.PID, downtime: cfg.downtime, noAutoConverge: cfg.noAutoConverge}
	bare.cur = bare.home
	bareDrv.Close()
	defer func() {
		bare.kill()
		if d, derr := newDriver("bare"); derr == nil {
			d.Delete(context.Background(), bs.ID)
			d.Close()
		}
	}()
	if bare.qemu, err = exec.LookPath("qemu-system-x86_64"); err != nil {
		return err
	}
	if bare.tscKHz, err = qemu.TSCkHz(); err != nil && bare.accel == qemu.AccelTCG {
		return err
	}

	capDesc := "1 core per vCPU"
	if cfg.cpu > 0 {
		capDesc = fmt.Sprintf("%.2g cores", cfg.cpu)
	}
	fmt.Printf("guest: 1 vcpu, %s, accel %s; the driver's guest capped at %s (bare: no cgroup); downtime-limit %s;\n"+
		"%d migrations of each kind per workload, alternating\n\n", cfg.memory, in.Accel, capDesc, cfg.downtime, cfg.k)

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
					s, err := driverMigrate(ctx, hosts[cur], hosts[1-cur], ds, cfg.downtime, cfg.noAutoConverge)
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
				wl, i+1, ms(s.migrate), ms(s.endToEnd), ms(s.downtime), mib(s.memBytes),
				ms(b.migrate), ms(b.endToEnd), ms(b.downtime), mib(b.memBytes))
			time.Sleep(500 * time.Millisecond)
		}
	}
	// The guests went on through all of it.
	if cfg.has("driver") {
		if err := waitGuest(ctx, hosts[cur], ds.ID); err != nil {
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
			fmt.Printf("%-6s %-7s %-26s %-26s %-24s %9.1f\n", wl, kind, triple(mig), triple(e2e), triple(down), mib(median64(sent)))
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
			return stats(xs)
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
func driverMigrate(ctx context.Context, from, to *qemu.Driver, spec hypervisor.InstanceSpec, downtime time.Duration, noAC bool) (sample, error) {
	t0 := time.Now()
	ep, err := to.PrepareIncoming(ctx, spec, "127.0.0.1:0")
	if err != nil {
		return sample{}, err
	}
	res, err := from.MigrateOut(ctx, spec.ID, ep, hypervisor.MigrateOptions{MaxDowntime: downtime, NoAutoConverge: noAC}, nil)
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

// execTimeout bounds a command in a guest (a guest that failed never
// answers).
const execTimeout = 90 * time.Second

// bareVM is a guest migrated by hand between two processes on one disk.
type bareVM struct {
	spec     hypervisor.InstanceSpec
	home     qemu.Paths // where the driver booted it: its disk and seed
	cur      qemu.Paths // the process that runs it now
	side     int
	accel    string
	tscKHz   int64
	qemu     string
	pid      int
	qmp      *qmpConn
	downtime time.Duration
	// noAutoConverge turns auto-converge off.
	noAutoConverge bool
}

// paths are the files of side i: the home disk and seed (shared storage),
// and sockets, pidfile, console and log of its own.
func (b *bareVM) paths(i int) (qemu.Paths, error) {
	if i == 0 {
		return b.home, nil
	}
	dir := b.home.Dir + "-b"
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return qemu.Paths{}, err
	}
	p := b.home
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
		c, err := dialQMP(b.cur.QMP)
		if err != nil {
			return sample{}, err
		}
		b.qmp = c
	}
	to, err := b.paths(1 - b.side)
	if err != nil {
		return sample{}, err
	}
	for _, s := range []string{to.PIDFile, to.QMP, to.Agent} {
		os.Remove(s)
	}
	srcPidfd, err := unix.PidfdOpen(b.pid, 0)
	if err != nil {
		return sample{}, err
	}
	defer unix.Close(srcPidfd)

	t0 := time.Now()
	cmd := exec.Command(b.qemu, append(qemu.Argv(b.spec, to, b.accel, b.tscKHz), "-incoming", "defer")...)
	cmd.Dir = to.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return sample{}, fmt.Errorf("qemu: %w: %s", err, out)
	}
	pidb, err := os.ReadFile(to.PIDFile)
	if err != nil {
		return sample{}, err
	}
	dstPID, err := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if err != nil {
		return sample{}, err
	}
	dst, err := dialQMP(to.QMP)
	if err != nil {
		return sample{}, err
	}
	fail := func(err error) (sample, error) {
		dst.close()
		syscall.Kill(dstPID, syscall.SIGKILL)
		return sample{}, err
	}
	if err := dst.run("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}}}); err != nil {
		return fail(err)
	}
	if err := dst.run("migrate-incoming", map[string]any{"uri": "tcp:127.0.0.1:0"}); err != nil {
		return fail(err)
	}
	var in struct {
		SocketAddress []struct {
			Port string `json:"port"`
		} `json:"socket-address"`
	}
	if err := dst.query("query-migrate", &in); err != nil || len(in.SocketAddress) == 0 {
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
	if err := c.run("migrate-set-capabilities", map[string]any{"capabilities": caps}); err != nil {
		return fail(err)
	}
	params := map[string]any{"downtime-limit": b.downtime.Milliseconds(), "max-bandwidth": int64(64 << 30)}
	if err := c.run("migrate-set-parameters", params); err != nil {
		return fail(err)
	}
	c.drainEvents()
	t1 := time.Now()
	if err := c.run("migrate", map[string]any{"uri": "tcp:127.0.0.1:" + in.SocketAddress[0].Port}); err != nil {
		return fail(err)
	}
	if err := c.waitMigration(ctx); err != nil {
		return fail(err)
	}
	migrated := time.Since(t1)
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
		if err := c.query("query-migrate", &info); err != nil {
			return fail(err)
		}
		if info.TotalMS > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_ = c.run("quit", nil)
	if err := waitPidfd(srcPidfd, 10*time.Second); err != nil {
		return fail(err)
	}
	c.close()
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
	return sample{migrate: migrated, endToEnd: e2e, downtime: time.Duration(info.DowntimeMS) * time.Millisecond,
		memBytes: info.RAM.Transferred}, nil
}

func (b *bareVM) status() (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	err := b.qmp.query("query-status", &st)
	return st.Status, err
}

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
		b.qmp.close()
	}
	for _, p := range []qemu.Paths{b.home, b.cur} {
		pidb, err := os.ReadFile(p.PIDFile)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(pidb)))
		if err != nil || pid <= 0 {
			continue
		}
		if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(cmdline), p.Dir+"/") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(100 * time.Millisecond)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", d.Seconds()*1000) }
func mib(n int64) float64       { return float64(n) / (1 << 20) }

func triple(ds []time.Duration) string {
	s := stats(ds)
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

// stats returns min, median and max.
func stats(ds []time.Duration) [3]time.Duration {
	if len(ds) == 0 {
		return [3]time.Duration{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return [3]time.Duration{s[0], med, s[len(s)-1]}
}

func median64(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func waitGuest(ctx context.Context, d *qemu.Driver, id string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		in, err := d.Get(ctx, id)
		if err != nil {
			return err
		}
		if in.Guest != nil {
			return nil
		}
		if in.State == hypervisor.InstanceStopped {
			return fmt.Errorf("%s stopped: %s", id, in.ExitReason)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no guest report", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// guestImage builds (or finds in its cache) the tests' guest image.
func guestImage() (hypervisor.LocalImage, error) {
	tb := &mainTB{}
	var img model.Image
	func() {
		defer func() {
			if r := recover(); r != nil && r != errStopTB {
				panic(r)
			}
		}()
		guesttest.RequireQEMU(tb)
		img = guesttest.Image(tb)
	}()
	if tb.failed != "" {
		return hypervisor.LocalImage{}, errors.New(tb.failed)
	}
	li := hypervisor.LocalImage{Name: img.Name, Boot: img.Boot, Disk: img.Disk.Path, DiskFormat: img.DiskFormat,
		Cmdline: img.Cmdline, MinDisk: img.MinDisk}
	if img.Kernel != nil {
		li.Kernel = img.Kernel.Path
	}
	if img.Initrd != nil {
		li.Initrd = img.Initrd.Path
	}
	return li, nil
}

// mainTB is the part of testing.TB that guesttest uses, outside a test.
type mainTB struct {
	testing.TB // not set: a method not below would panic
	failed     string
}

var errStopTB = errors.New("stop")

func (t *mainTB) Helper()                           {}
func (t *mainTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *mainTB) Fatal(args ...any)                 { t.failed = fmt.Sprint(args...); panic(errStopTB) }
func (t *mainTB) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }
func (t *mainTB) Skipf(format string, args ...any) {
	t.Fatal("cannot run: " + fmt.Sprintf(format, args...))
}
func (t *mainTB) Skip(args ...any) { t.Fatal("cannot run: " + fmt.Sprint(args...)) }

// waitPidfd waits until the process of pidfd has exited.
func waitPidfd(pidfd int, timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("qemu did not exit")
		}
		return nil
	}
}

// qmpConn is a minimal QMP client: one command at a time, MIGRATION
// events queued.
type qmpConn struct {
	conn    *net.UnixConn
	replies chan map[string]json.RawMessage
	events  chan string
	once    sync.Once
}

func dialQMP(path string) (*qmpConn, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	c := &qmpConn{conn: conn, replies: make(chan map[string]json.RawMessage, 1), events: make(chan string, 64)}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, err
	}
	go c.read(r)
	if err := c.run("qmp_capabilities", nil); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *qmpConn) read(r *bufio.Reader) {
	defer close(c.replies)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if ev, ok := m["event"]; ok {
			if string(ev) == `"MIGRATION"` {
				var d struct {
					Status string `json:"status"`
				}
				_ = json.Unmarshal(m["data"], &d)
				select {
				case c.events <- d.Status:
				default:
				}
			}
			continue
		}
		c.replies <- m
	}
}

func (c *qmpConn) drainEvents() {
	for {
		select {
		case <-c.events:
		default:
			return
		}
	}
}

// query runs a command without arguments and decodes its return.
func (c *qmpConn) query(cmd string, out any) error {
	return c.do(cmd, nil, out)
}

func (c *qmpConn) run(cmd string, args any) error { return c.do(cmd, args, nil) }

func (c *qmpConn) do(cmd string, args, out any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return err
	}
	m, ok := <-c.replies
	if !ok {
		if cmd == "quit" {
			return nil
		}
		return fmt.Errorf("%s: qmp connection closed", cmd)
	}
	if e, ok := m["error"]; ok {
		return fmt.Errorf("%s: %s", cmd, e)
	}
	if out != nil {
		return json.Unmarshal(m["return"], out)
	}
	return nil
}

// waitMigration waits for the MIGRATION event "completed".
func (c *qmpConn) waitMigration(ctx context.Context) error {
	timer := time.NewTimer(5 * time.Minute)
	defer timer.Stop()
	for {
		select {
		case s := <-c.events:
			switch s {
			case "completed":
				return nil
			case "failed", "cancelled":
				return errors.New("migration " + s)
			}
		case <-timer.C:
			return errors.New("migration did not complete")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *qmpConn) close() { c.once.Do(func() { c.conn.Close() }) }
