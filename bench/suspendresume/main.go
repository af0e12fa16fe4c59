// Command suspendresume measures the QEMU driver's suspend and resume
// against the bare mechanism they are made of, on small guests of the test
// image (built and cached the way the qemu package's tests build it,
// internal/guest/guesttest).
//
// Two guests of the same spec run side by side: one driven by the driver
// (Suspend, then Start, which resumes it), the other by hand with the
// same QMP commands and the tightest waits: for the save, stop,
// migrate-set-parameters (bandwidth), getfd and migrate "fd:" into a file,
// the MIGRATION event "completed", quit, and the process's end (pidfd);
// for the restore, QEMU started with the driver's own argv (qemu.Argv,
// -daemonize) plus -incoming defer, getfd, migrate-incoming "fd:", the
// MIGRATION event "completed", cont. The two alternate, K times each, in
// one run, and the harness prints min/median/max of each and the ratios.
//
//	go run ./bench/suspendresume -k 10
//
// It needs root (cgroups), qemu-system-x86_64 and the guest kernel, like
// the driver's tests.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/guest/guesttest"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
)

func main() {
	k := flag.Int("k", 10, "suspend+resume cycles of each kind")
	mem := flag.String("memory", "128Mi", "guest memory")
	settle := flag.Duration("settle", time.Second, "how long a guest runs between a resume and the next suspend")
	dir := flag.String("dir", "", "state directory (default: a new temporary directory, removed at the end)")
	verbose := flag.Bool("v", false, "print the driver's log")
	flag.Parse()
	if err := run(*k, *mem, *settle, *dir, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "suspendresume:", err)
		os.Exit(1)
	}
}

func run(k int, memory string, settle time.Duration, dir string, verbose bool) (err error) {
	mem, err := model.ParseByteSize(memory)
	if err != nil {
		return fmt.Errorf("-memory: %w", err)
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "vgrid-suspendresume-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	img, err := guestImage()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	newDriver := func(sub string) (*qemu.Driver, error) {
		return qemu.New(qemu.Options{StateDir: filepath.Join(dir, sub), CgroupParent: "vgrid-bench", Logger: logger})
	}
	drv, err := newDriver("driver")
	if err != nil {
		return err
	}
	defer drv.Close()
	bareDrv, err := newDriver("bare")
	if err != nil {
		return err
	}
	ctx := context.Background()
	spec := func(id string) hypervisor.InstanceSpec {
		return hypervisor.InstanceSpec{ID: id, Hostname: id, Quantum: model.Quantum{VCPUs: 1, Memory: mem}, Image: img}
	}
	ds, bs := spec("sr-driver"), spec("sr-bare")
	// Both guests are booted by the driver (same disk overlay, seed and
	// argv); the bare one is then left to this program: its driver is
	// closed, which frees QEMU's one QMP connection.
	if _, err := drv.Start(ctx, ds); err != nil {
		return err
	}
	defer func() {
		if derr := drv.Delete(context.Background(), ds.ID); derr != nil && err == nil {
			err = derr
		}
	}()
	if _, err := bareDrv.Start(ctx, bs); err != nil {
		bareDrv.Close()
		return err
	}
	for _, w := range []struct {
		d  *qemu.Driver
		id string
	}{{drv, ds.ID}, {bareDrv, bs.ID}} {
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
	bare := &bareVM{p: bareDrv.Paths(bs.ID), spec: bs, accel: in.Accel, pid: in.PID, verbose: verbose}
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

	fmt.Printf("guest: 1 vcpu, %s, accel %s; %d cycles of each, alternating; %s between a resume and the next suspend\n",
		mem, in.Accel, k, settle)
	var dSus, dRes, bSus, bRes []time.Duration
	var dBytes, bBytes []int64
	time.Sleep(settle)
	for i := 0; i < k; i++ {
		// The driver: Suspend, then Start (a resume).
		t0 := time.Now()
		res, err := drv.Suspend(ctx, ds.ID)
		if err != nil {
			return fmt.Errorf("driver suspend: %w", err)
		}
		sus := time.Since(t0)
		t1 := time.Now()
		if _, err := drv.Start(ctx, ds); err != nil {
			return fmt.Errorf("driver resume: %w", err)
		}
		resu := time.Since(t1)
		dSus, dRes, dBytes = append(dSus, sus), append(dRes, resu), append(dBytes, res.Bytes)
		time.Sleep(settle)

		// By hand.
		bsus, n, err := bare.suspend(ctx)
		if err != nil {
			return fmt.Errorf("bare suspend: %w", err)
		}
		bres, err := bare.resume(ctx)
		if err != nil {
			return fmt.Errorf("bare resume: %w", err)
		}
		bSus, bRes, bBytes = append(bSus, bsus), append(bRes, bres), append(bBytes, n)
		fmt.Printf("cycle %2d: driver suspend %7s resume %7s (%.1f MiB) | bare suspend %7s resume %7s (%.1f MiB)\n", i+1,
			ms(sus), ms(resu), mib(res.Bytes), ms(bsus), ms(bres), mib(n))
		time.Sleep(settle)
	}
	// The driver's guest must still be the same guest (no reboot).
	if err := waitGuest(ctx, drv, ds.ID); err != nil {
		return err
	}

	fmt.Println()
	fmt.Printf("%-16s %9s %9s %9s %10s\n", "", "min", "median", "max", "state MiB")
	row := func(name string, ds []time.Duration, bs []int64) {
		s := stats(ds)
		fmt.Printf("%-16s %9s %9s %9s %10.1f\n", name, ms(s[0]), ms(s[1]), ms(s[2]), mib(median64(bs)))
	}
	row("driver suspend", dSus, dBytes)
	row("bare suspend", bSus, bBytes)
	row("driver resume", dRes, dBytes)
	row("bare resume", bRes, bBytes)
	ratio := func(a, b []time.Duration) string {
		sa, sb := stats(a), stats(b)
		return fmt.Sprintf("%.2fx (median), %.2fx (min)", sa[1].Seconds()/sb[1].Seconds(), sa[0].Seconds()/sb[0].Seconds())
	}
	fmt.Printf("\nsuspend: driver/bare %s\nresume:  driver/bare %s\n", ratio(dSus, bSus), ratio(dRes, bRes))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", d.Seconds()*1000) }
func mib(n int64) float64       { return float64(n) / (1 << 20) }

// stats returns min, median and max.
func stats(ds []time.Duration) [3]time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return [3]time.Duration{s[0], med, s[len(s)-1]}
}

func median64(xs []int64) int64 {
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

// bareVM is a guest driven by hand.
type bareVM struct {
	p       qemu.Paths
	spec    hypervisor.InstanceSpec
	accel   string
	tscKHz  int64
	qemu    string
	pid     int
	qmp     *qmpConn
	verbose bool
}

func (b *bareVM) statePath() string { return filepath.Join(b.p.Dir, "bare.state") }

// suspend saves the guest into a file and ends its QEMU.
func (b *bareVM) suspend(ctx context.Context) (time.Duration, int64, error) {
	f, err := os.OpenFile(b.statePath(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	pidfd, err := unix.PidfdOpen(b.pid, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(pidfd)
	t0 := time.Now()
	if b.qmp == nil {
		// The first time: the driver's connection was just closed.
		if b.qmp, err = dialQMP(b.p.QMP); err != nil {
			return 0, 0, err
		}
	}
	c := b.qmp
	err = c.run("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}}}, -1)
	if err == nil {
		err = c.run("stop", nil, -1)
	}
	if err == nil {
		err = c.run("migrate-set-parameters", map[string]any{"max-bandwidth": int64(64 << 30)}, -1)
	}
	if err == nil {
		err = c.run("getfd", map[string]any{"fdname": "bare"}, int(f.Fd()))
	}
	if err == nil {
		err = c.run("migrate", map[string]any{"uri": "fd:bare"}, -1)
	}
	if err == nil {
		err = c.waitMigration(ctx)
	}
	if err == nil {
		_ = c.run("quit", nil, -1) // the reply may be lost as QEMU exits
		err = waitPidfd(pidfd, 10*time.Second)
	}
	took := time.Since(t0)
	c.close()
	b.qmp = nil
	if err != nil {
		return 0, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return took, fi.Size(), nil
}

// resume starts QEMU on the saved state and continues the guest.
func (b *bareVM) resume(ctx context.Context) (time.Duration, error) {
	f, err := os.Open(b.statePath())
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, s := range []string{b.p.PIDFile, b.p.QMP, b.p.Agent} {
		os.Remove(s)
	}
	args := append(qemu.Argv(b.spec, b.p, b.accel, b.tscKHz), "-incoming", "defer")
	t0 := time.Now()
	cmd := exec.Command(b.qemu, args...)
	cmd.Dir = b.p.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("qemu: %w: %s", err, out)
	}
	launched := time.Now()
	pidb, err := os.ReadFile(b.p.PIDFile)
	if err != nil {
		return 0, err
	}
	if b.pid, err = strconv.Atoi(strings.TrimSpace(string(pidb))); err != nil {
		return 0, err
	}
	c, err := dialQMP(b.p.QMP)
	if err != nil {
		return 0, err
	}
	b.qmp = c
	err = c.run("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}}}, -1)
	if err == nil {
		err = c.run("getfd", map[string]any{"fdname": "bare"}, int(f.Fd()))
	}
	if err == nil {
		err = c.run("migrate-incoming", map[string]any{"uri": "fd:bare"}, -1)
	}
	if err == nil {
		err = c.waitMigration(ctx)
	}
	if err == nil {
		err = c.run("cont", nil, -1)
	}
	took := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if b.verbose {
		fmt.Fprintf(os.Stderr, "bare resume: qemu daemonized after %s\n", ms(launched.Sub(t0)))
	}
	// cont must have run the guest (not merely set autostart).
	var st struct {
		Status string `json:"status"`
	}
	if err := c.query("query-status", &st); err != nil {
		return 0, err
	}
	if st.Status != "running" {
		return 0, fmt.Errorf("after cont the guest is %s", st.Status)
	}
	return took, nil
}

func (b *bareVM) kill() {
	if b.qmp != nil {
		b.qmp.close()
	}
	if b.pid > 0 {
		if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(b.pid) + "/cmdline"); err == nil && strings.Contains(string(cmdline), b.p.Dir) {
			syscall.Kill(b.pid, syscall.SIGKILL)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

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

// qmpConn is a minimal QMP client: one command at a time, events queued.
type qmpConn struct {
	conn    *net.UnixConn
	replies chan map[string]json.RawMessage
	events  chan string // MIGRATION statuses
	once    sync.Once
}

func dialQMP(path string) (*qmpConn, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	c := &qmpConn{conn: conn, replies: make(chan map[string]json.RawMessage, 1), events: make(chan string, 16)}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, err
	}
	go c.read(r)
	if err := c.run("qmp_capabilities", nil, -1); err != nil {
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

// query runs a command without arguments and decodes its return.
func (c *qmpConn) query(cmd string, out any) error {
	b, _ := json.Marshal(map[string]any{"execute": cmd})
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return err
	}
	m, ok := <-c.replies
	if !ok {
		return io.ErrUnexpectedEOF
	}
	if e, ok := m["error"]; ok {
		return fmt.Errorf("%s: %s", cmd, e)
	}
	return json.Unmarshal(m["return"], out)
}

func (c *qmpConn) run(cmd string, args any, fd int) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	b = append(b, '\n')
	var err error
	if fd >= 0 {
		_, _, err = c.conn.WriteMsgUnix(b, unix.UnixRights(fd), nil)
	} else {
		_, err = c.conn.Write(b)
	}
	if err != nil {
		return err
	}
	m, ok := <-c.replies
	if !ok {
		if cmd == "quit" {
			return nil
		}
		return io.ErrUnexpectedEOF
	}
	if e, ok := m["error"]; ok {
		return fmt.Errorf("%s: %s", cmd, e)
	}
	return nil
}

// waitMigration waits for the MIGRATION event "completed".
func (c *qmpConn) waitMigration(ctx context.Context) error {
	timer := time.NewTimer(time.Minute)
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
