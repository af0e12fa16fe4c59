package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

var _ hypervisor.Driver = (*Driver)(nil)

// ErrClosed is returned by a Driver's methods after Close.
var ErrClosed = errors.New("qemu driver closed")

// deleteStopTimeout is how long Delete lets a guest power off.
const deleteStopTimeout = 3 * time.Second

// Driver runs workspaces as QEMU processes on this host.
type Driver struct {
	opts    Options
	accel   string // the default accelerator
	tscKHz  int64
	cg      *cgroup.Hierarchy
	log     *slog.Logger
	changes *hypervisor.Notifier

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // watch goroutines

	locks keyedMutex // per instance: Start, Stop, Delete, Resize

	exitMu sync.Mutex // serializes recording an instance's exit

	bootID string // this boot of the host (savedTrusted)

	mu      sync.Mutex // guards vms and syncing
	vms     map[string]*vm
	syncing map[string]*syncJob // instances whose saved state syncSaved will fsync
}

// New makes a driver on opts.StateDir and adopts the instances found
// there: suspends and resumes that an earlier driver left half-done are
// settled and guests left paused continued (intent.go); running ones are
// watched again (QMP and guest agent reconnected, guest facts asked for),
// dead ones get their exit recorded. QEMU processes of this StateDir whose
// instance directory is gone are left alone but listed (List), for the
// agent to delete.
func New(opts Options) (*Driver, error) {
	if err := opts.fill(); err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	path, err := exec.LookPath(opts.QEMUPath)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	opts.QEMUPath = path
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	cg := opts.Cgroups
	if cg == nil {
		var err error
		if cg, err = cgroup.Detect(); err != nil {
			return nil, fmt.Errorf("qemu driver: %w", err)
		}
	}
	d := &Driver{opts: opts, cg: cg, log: opts.Logger, vms: map[string]*vm{}, syncing: map[string]*syncJob{}}
	d.bootID = bootID()
	d.accel = opts.Accel
	if d.accel == "auto" {
		var reason string
		d.accel, reason = DetectAccel()
		if reason != "" {
			d.log.Warn(reason)
		}
	}
	tsc, err := TSCkHz()
	if err != nil {
		d.log.Warn("guests under TCG get no tsc_early_khz and may hang at boot", "err", err)
	}
	d.tscKHz = tsc
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.changes = hypervisor.NewNotifier()
	d.adopt()
	insts, err := d.List(d.ctx)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("qemu driver: adopt: %w", err)
	}
	for _, in := range insts {
		if d.orphan(in.ID) {
			d.log.Warn("found a qemu process whose instance directory is gone", "instance", in.ID, "pid", in.PID)
			continue
		}
		switch in.State {
		case hypervisor.InstanceStopped:
		case hypervisor.InstanceSuspended:
			d.log.Info("found suspended instance", "instance", in.ID, "saved_bytes", in.Saved.Bytes)
		default:
			d.log.Info("adopted running instance", "instance", in.ID, "pid", in.PID)
		}
	}
	return d, nil
}

// Accel returns the accelerator used when a spec does not name one.
func (d *Driver) Accel() string { return d.accel }

func (d *Driver) paths(id string) Paths {
	return instancePaths(filepath.Join(d.opts.StateDir, id), d.opts.RunDir)
}

func (d *Driver) accelFor(spec hypervisor.InstanceSpec) string {
	if spec.Accel != "" {
		return spec.Accel
	}
	return d.accel
}

// limits turns a quantum into cgroup limits: the CPU cap as given, guest
// memory plus QEMU's overhead.
func (d *Driver) limits(accel string, q model.Quantum) cgroup.Limits {
	return cgroup.Limits{
		CPUCores:    q.CPUCores(),
		MemoryBytes: int64(q.Memory + d.opts.MemoryOverhead(accel, q)),
	}
}

// MemoryLimit returns the cgroup memory limit a quantum gets under accel.
func (d *Driver) MemoryLimit(accel string, q model.Quantum) model.ByteSize {
	return model.ByteSize(d.limits(accel, q).MemoryBytes)
}

func (d *Driver) closed() bool { return d.ctx.Err() != nil }

// Start implements hypervisor.Driver.
func (d *Driver) Start(ctx context.Context, spec hypervisor.InstanceSpec) (hypervisor.Instance, error) {
	if err := checkSpec(spec); err != nil {
		return hypervisor.Instance{}, err
	}
	if d.closed() {
		return hypervisor.Instance{}, ErrClosed
	}
	id := spec.ID
	defer d.locks.Lock(id)()
	p := d.paths(id)
	// A half-done suspend or resume is settled, a paused guest continued.
	d.recoverOp(ctx, id, p, true)
	if d.incomingWaiting(ctx, id, p) {
		return hypervisor.Instance{}, errIncoming("start", id) // migrate.go
	}
	pid := readPID(p.PIDFile)
	if !alive(pid, marker(p)) {
		pid = 0
	}
	// Only the process the instance's files name may run: any other QEMU
	// of this ID (its directory was removed, the pidfile lost) is killed
	// rather than a second one started beside it.
	if err := d.killStrays(id, p, pid); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("start %s: %w", id, err)
	}
	if pid > 0 {
		d.watchPID(id, p, pid)
		return d.inspect(id)
	}
	d.settle(id, p)
	if st, ok := suspendedState(p); ok {
		return d.resume(ctx, spec, p, st)
	}
	inst, err := d.start(ctx, spec, p)
	if err != nil {
		err = fmt.Errorf("start %s: %w", id, err)
		if _, serr := os.Stat(p.Spec); serr == nil {
			// Say why in Get and List, not only to this caller.
			st := runState{Accel: d.accelFor(spec), StoppedAt: time.Now(), ExitReason: err.Error()}
			d.exitMu.Lock()
			_ = writeJSON(p.State, st)
			d.exitMu.Unlock()
		}
		return hypervisor.Instance{}, err
	}
	return inst, nil
}

func (d *Driver) start(ctx context.Context, spec hypervisor.InstanceSpec, p Paths) (hypervisor.Instance, error) {
	if err := os.MkdirAll(p.Dir, 0o750); err != nil {
		return hypervisor.Instance{}, err
	}
	if err := writeJSON(p.Spec, spec); err != nil {
		return hypervisor.Instance{}, err
	}
	accel := d.accelFor(spec)
	if err := d.ensureDisk(spec, p); err != nil {
		return hypervisor.Instance{}, err
	}
	if err := d.writeSeed(spec, p); err != nil {
		return hypervisor.Instance{}, err
	}
	d.discardSaved(spec.ID, p) // a state saved before a crash, never recorded
	cg, err := d.cg.New(d.opts.CgroupParent, spec.ID, d.limits(accel, spec.Quantum))
	if err != nil {
		return hypervisor.Instance{}, err
	}
	// This run is written down before QEMU exists: an agent killed while
	// QEMU daemonizes must find the new run's start (and no record of the
	// previous run's end), not the previous run's.
	d.exitMu.Lock()
	err = writeJSON(p.State, runState{Accel: accel, StartedAt: time.Now()})
	d.exitMu.Unlock()
	if err != nil {
		d.log.Error("record start", "instance", spec.ID, "err", err)
	}
	pid, startedAt, err := d.launch(ctx, spec, p, accel, cg)
	if err != nil {
		if derr := cg.Delete(); derr != nil {
			d.log.Warn("remove cgroup", "instance", spec.ID, "err", derr)
		}
		return hypervisor.Instance{}, err
	}
	d.exitMu.Lock()
	err = writeJSON(p.State, runState{Accel: accel, PID: pid, StartedAt: startedAt})
	d.exitMu.Unlock()
	if err != nil {
		d.log.Error("record start", "instance", spec.ID, "err", err)
	}
	d.log.Info("started", "instance", spec.ID, "pid", pid, "accel", accel)
	v := d.watchPID(spec.ID, p, pid)
	// QEMU creates its QMP socket before it daemonizes, so it answers now.
	if _, err := v.qmpClient(ctx); err != nil {
		v.setStopReason("start failed: qmp did not answer")
		_ = kill(pid, marker(p))
		waitGone(pid, marker(p), 5*time.Second, nil)
		d.finish(v)
		<-v.done
		return hypervisor.Instance{}, err
	}
	// The balloon holds the guest to its quantum's memory (resize.go).
	if err := d.startBalloon(ctx, v, spec); err != nil {
		return hypervisor.Instance{}, err
	}
	d.changes.Notify(spec.ID)
	return d.inspect(spec.ID)
}

// powerdownRepeat is how often Stop presses the ACPI power button again.
const powerdownRepeat = 5 * time.Second

// Stop implements hypervisor.Driver. An unknown ID is ErrNotFound.
func (d *Driver) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if !hypervisor.ValidID(id) {
		return fmt.Errorf("stop %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return fmt.Errorf("stop %s: %w", id, hypervisor.ErrNotFound)
	}
	// A paused guest would not hear the power button.
	d.recoverOp(ctx, id, p, true)
	// Nor would a QEMU waiting for an incoming guest (migrate.go).
	if err := d.abandonIncoming(ctx, id, p); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return d.stop(ctx, id, p, timeout)
}

// stop powers the guest off: ACPI power button, then after timeout QMP
// quit, then SIGKILL. The disk stays; the cgroup goes. If ctx ends first,
// stop returns its error and leaves the guest powering off.
func (d *Driver) stop(ctx context.Context, id string, p Paths, timeout time.Duration) error {
	pid := readPID(p.PIDFile)
	m := marker(p)
	if !alive(pid, m) {
		d.settle(id, p)
		d.discardSaved(id, p)
		return nil
	}
	v := d.watchPID(id, p, pid)
	v.setStopReason("stopped")
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	c, err := v.qmpClient(qctx)
	if err == nil {
		err = c.Execute(qctx, "system_powerdown", nil, nil)
	}
	cancel()
	if err != nil {
		d.log.Warn("powerdown", "instance", id, "err", err)
	}
	// A guest that is still booting may miss the press (nothing listens to
	// the power button yet): press it again every few seconds until the
	// timeout.
	gone := false
	for deadline := time.Now().Add(timeout); !gone; {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		gone = waitGone(pid, m, min(left, powerdownRepeat), ctx.Done())
		if gone || ctx.Err() != nil || time.Until(deadline) <= 0 {
			break
		}
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if c, err := v.qmpClient(pctx); err == nil {
			_ = c.Execute(pctx, "system_powerdown", nil, nil)
		}
		pcancel()
	}
	if !gone {
		if err := ctx.Err(); err != nil {
			// The caller gave up; the guest has been asked to power off
			// and the watcher records the exit when it comes.
			return fmt.Errorf("stop %s: %w", id, err)
		}
		v.setStopReason(fmt.Sprintf("stopped: the guest did not power off within %s", timeout))
		qctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if c, err := v.qmpClient(qctx); err == nil {
			_ = c.Execute(qctx, "quit", nil, nil)
		}
		cancel()
		if !waitGone(pid, m, 2*time.Second, nil) {
			if err := kill(pid, m); err != nil {
				return fmt.Errorf("stop %s: kill qemu %d: %w", id, pid, err)
			}
			if !waitGone(pid, m, 5*time.Second, nil) {
				return fmt.Errorf("stop %s: qemu %d survived SIGKILL", id, pid)
			}
		}
	}
	d.finish(v)
	<-v.done
	return nil
}

// Delete implements hypervisor.Driver. An unknown ID is a no-op, except
// that QEMU processes of the ID are killed even when its directory is gone.
func (d *Driver) Delete(ctx context.Context, id string) error {
	if !hypervisor.ValidID(id) {
		return nil
	}
	if d.closed() {
		return ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	d.cancelSync(id)
	if _, err := os.Stat(p.Dir); err == nil {
		if err := d.abandonIncoming(ctx, id, p); err != nil { // migrate.go
			return fmt.Errorf("delete %s: %w", id, err)
		}
		if err := d.stop(ctx, id, p, deleteStopTimeout); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		if err := os.RemoveAll(p.Dir); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := d.killStrays(id, p, 0); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	d.mu.Lock()
	_, watched := d.vms[id]
	d.mu.Unlock()
	if watched {
		d.settle(id, p)
	}
	if p.SockDir != p.Dir {
		_ = os.RemoveAll(p.SockDir)
	}
	if err := d.removeCgroup(id); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	d.changes.Notify(id)
	return nil
}

// Get implements hypervisor.Driver.
func (d *Driver) Get(ctx context.Context, id string) (hypervisor.Instance, error) {
	if !hypervisor.ValidID(id) {
		return hypervisor.Instance{}, fmt.Errorf("get %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return hypervisor.Instance{}, ErrClosed
	}
	return d.look(id)
}

// List implements hypervisor.Driver: every directory in StateDir with a
// spec.json is an instance. So is an orphan: a live QEMU of this StateDir
// (proc.go) whose instance has no spec.json, its directory removed. It is
// listed running, with its PID, so that the agent can delete it; Get does
// not find it (the driver can do nothing with it but kill it), and Start
// kills it before it starts the instance afresh.
func (d *Driver) List(ctx context.Context) ([]hypervisor.Instance, error) {
	if d.closed() {
		return nil, ErrClosed
	}
	entries, err := os.ReadDir(d.opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []hypervisor.Instance
	for _, e := range entries {
		if !e.IsDir() || !hypervisor.ValidID(e.Name()) {
			continue
		}
		in, err := d.look(e.Name())
		if errors.Is(err, hypervisor.ErrNotFound) {
			continue
		}
		if err != nil {
			// One unreadable instance must not hide the others.
			d.log.Warn("skip instance", "instance", e.Name(), "err", err)
			continue
		}
		out = append(out, in)
	}
	procs, err := findProcs(d.opts.StateDir)
	if err != nil {
		d.log.Warn("look for orphan qemu processes", "err", err)
	}
	for _, pr := range procs {
		if slices.ContainsFunc(out, func(in hypervisor.Instance) bool { return in.ID == pr.ID }) {
			continue
		}
		if _, err := os.Stat(d.paths(pr.ID).Spec); err == nil {
			continue // started since the directory was read
		}
		out = append(out, hypervisor.Instance{ID: pr.ID, State: hypervisor.InstanceRunning, PID: pr.PID})
	}
	return out, nil
}

// orphan reports whether id has no spec.json (List's orphans).
func (d *Driver) orphan(id string) bool {
	_, err := os.Stat(d.paths(id).Spec)
	return errors.Is(err, os.ErrNotExist)
}

// killStrays kills the QEMU processes of id other than keep (0: all), found
// by their command lines (proc.go), and waits until they are gone. The
// caller holds the instance's lock. A stray cannot be adopted: without its
// directory the driver has neither its pidfile nor its disk (the file
// QEMU has open is unlinked), and adopting a process that a recreated
// directory's files do not describe would hide what runs.
func (d *Driver) killStrays(id string, p Paths, keep int) error {
	procs, err := findProcs(d.opts.StateDir)
	if err != nil {
		return err
	}
	m := marker(p)
	for _, pr := range procs {
		if pr.ID != id || pr.PID == keep {
			continue
		}
		d.log.Warn("killing a qemu of the instance that its files do not name", "instance", id, "pid", pr.PID)
		if err := kill(pr.PID, m); err != nil {
			return fmt.Errorf("kill qemu %d: %w", pr.PID, err)
		}
		if !waitGone(pr.PID, m, 5*time.Second, nil) {
			return fmt.Errorf("qemu %d survived SIGKILL", pr.PID)
		}
	}
	return nil
}

// inspect reads an instance's files and process. A live process is
// watched (adopted) if it is not yet; a dead one that nobody saw die gets
// its exit recorded.
func (d *Driver) inspect(id string) (hypervisor.Instance, error) { return d.inspectAs(id, true) }

// look is inspect for a caller that does not hold the instance's lock
// (Get, List): while an operation holds it, a process not up is not taken
// for one that ended. A start records its QEMU's pid only once QEMU has
// daemonized; settling meanwhile would record an exit and remove the
// cgroup the new QEMU is about to join (seen with eight members of a
// cluster starting at once while the agent listed its instances).
func (d *Driver) look(id string) (hypervisor.Instance, error) { return d.inspectAs(id, false) }

// inspectAs is the instance as its files and process show it; owner says
// the caller holds the instance's lock, so an ended process may be
// settled.
func (d *Driver) inspectAs(id string, owner bool) (hypervisor.Instance, error) {
	p := d.paths(id)
	spec, err := readSpec(p)
	if errors.Is(err, os.ErrNotExist) {
		return hypervisor.Instance{}, fmt.Errorf("%s: %w", id, hypervisor.ErrNotFound)
	}
	if err != nil {
		return hypervisor.Instance{}, err
	}
	st, err := readState(p)
	if err != nil {
		return hypervisor.Instance{}, err
	}
	in := hypervisor.Instance{ID: id, Accel: st.Accel, StartedAt: st.StartedAt, State: hypervisor.InstanceStopped}
	if in.Accel == "" {
		in.Accel = d.accelFor(spec)
	}
	if pid := readPID(p.PIDFile); alive(pid, marker(p)) {
		v := d.watchPID(id, p, pid)
		in.State, in.PID, in.Guest = hypervisor.InstanceRunning, pid, v.guestInfo()
		in.LastResume = st.LastResume.result()
		if v.isPaused() {
			in.State = hypervisor.InstancePaused
		}
		if g, err := d.cg.Load(d.opts.CgroupParent, id); err == nil {
			in.Cgroup = g.Paths()
			in.CPUSeconds = d.groupCPUSeconds(id, g)
		}
		if hasIncoming(p) {
			incomingView(&in, v) // migrate.go
		}
		return in, nil
	}
	if !st.exitRecorded() {
		if !owner && d.locks.Busy(id) {
			// A start (or a stop) is under way and settles its own end.
			in.State = hypervisor.InstanceRunning
			return in, nil
		}
		d.settle(id, p)
		if st, err = readState(p); err != nil {
			return hypervisor.Instance{}, err
		}
	}
	in.ExitReason, in.FinalCPUSeconds = st.ExitReason, st.CPUSeconds
	if hasIncoming(p) {
		incomingView(&in, nil)
	}
	if st, ok := suspendedState(p); ok {
		in.State, in.Saved = hypervisor.InstanceSuspended, st.Suspended.result()
	}
	return in, nil
}

// ConsoleLog implements hypervisor.Driver.
func (d *Driver) ConsoleLog(ctx context.Context, id string, max int) ([]byte, error) {
	if !hypervisor.ValidID(id) {
		return nil, fmt.Errorf("console %q: %w", id, hypervisor.ErrNotFound)
	}
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return nil, fmt.Errorf("console %s: %w", id, hypervisor.ErrNotFound)
	}
	b, err := tail(p.Console, max)
	if err != nil {
		return nil, fmt.Errorf("console %s: %w", id, err)
	}
	return b, nil
}

// Changes implements hypervisor.Driver. The channel is closed by Close.
func (d *Driver) Changes() <-chan string { return d.changes.C() }

// Close stops watching; guests keep running and a new Driver adopts them.
func (d *Driver) Close() error {
	d.cancel()
	d.wg.Wait()
	d.changes.Close()
	return nil
}

// watchPID returns the vm watching pid, starting to watch it if needed.
func (d *Driver) watchPID(id string, p Paths, pid int) *vm {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v := d.vms[id]; v != nil && v.pid == pid {
		return v
	} else if v != nil {
		// An earlier process of the same instance: its end no longer
		// needs recording, and it must not touch the new run's files.
		v.finished.Store(true)
		v.stop()
	}
	v := &vm{
		id: id, p: p, pid: pid,
		log:       d.log.With("instance", id),
		done:      make(chan struct{}),
		notify:    func() { d.changes.Notify(id) },
		unwatched: "qemu exited",
	}
	v.ctx, v.stop = context.WithCancel(d.ctx)
	if d.ctx.Err() != nil {
		close(v.done)
		return v
	}
	d.vms[id] = v
	d.wg.Add(1)
	go d.watch(v)
	return v
}

// settle records the exit of an instance whose process is gone, if that
// has not been done, and removes its cgroup.
func (d *Driver) settle(id string, p Paths) {
	d.mu.Lock()
	v := d.vms[id]
	d.mu.Unlock()
	if v == nil {
		v = &vm{id: id, p: p, log: d.log.With("instance", id), notify: func() { d.changes.Notify(id) },
			unwatched: "qemu exited while no driver was watching", done: make(chan struct{})}
		v.ctx, v.stop = context.WithCancel(d.ctx)
		close(v.done)
	}
	d.finish(v)
	<-v.done // a watcher finishing v at the same time is done too
}

// finish records why v's process ended (once per run), removes the cgroup
// and stops watching v. The reason, in order: what Stop said; the OOM
// killer, if the cgroup counted a kill; QEMU's SHUTDOWN event; else
// v.unwatched.
func (d *Driver) finish(v *vm) {
	if !v.finished.CompareAndSwap(false, true) {
		return
	}
	if v.pid > 0 {
		// Its threads leave the cgroup (and stop counting CPU) a little
		// after the process is seen gone.
		waitThreads(v.pid, time.Now().Add(time.Second))
	}
	// The events QEMU sent before it exited (SHUTDOWN says why) are read
	// before the reason is: its QMP connection ends once they are.
	v.mu.Lock()
	q := v.qmp
	v.mu.Unlock()
	if q != nil {
		select {
		case <-q.Done():
		case <-time.After(time.Second):
		}
	}
	d.exitMu.Lock()
	defer d.exitMu.Unlock()
	st, err := readState(v.p)
	if err != nil {
		v.log.Error("read state", "err", err)
	}
	record := err == nil && !st.exitRecorded()
	if record {
		st.StoppedAt = time.Now()
		if !st.StoppedAt.After(st.StartedAt) {
			st.StoppedAt = st.StartedAt.Add(time.Nanosecond)
		}
		// Both read the cgroup, which goes next.
		st.ExitReason = d.exitReason(v)
		st.CPUSeconds = d.finalCPUSeconds(v)
		v.mu.Lock()
		if v.suspended != nil {
			rec := *v.suspended
			rec.At, rec.Duration = st.StoppedAt, st.StoppedAt.Sub(v.suspendStart)
			st.Suspended = &rec
		}
		v.mu.Unlock()
	}
	// The cgroup goes before the exit is recorded: whoever sees the
	// instance stopped finds nothing of it left on the host.
	if err := d.removeCgroup(v.id); err != nil {
		v.log.Warn("remove cgroup", "err", err)
	}
	if record {
		if err := writeJSON(v.p.State, st); err != nil {
			v.log.Error("record exit", "err", err)
		}
		v.log.Info("instance stopped", "reason", st.ExitReason)
	}
	d.mu.Lock()
	if d.vms[v.id] == v {
		delete(d.vms, v.id)
	}
	d.mu.Unlock()
	v.stop()
	v.mu.Lock()
	v.guest = nil
	v.mu.Unlock()
	v.notify()
}

func (d *Driver) exitReason(v *vm) string {
	v.mu.Lock()
	stop, shutdown := v.stopReason, v.shutdown
	v.mu.Unlock()
	if stop != "" {
		return stop
	}
	if g, err := d.cg.Load(d.opts.CgroupParent, v.id); err == nil {
		if n, err := g.OOMKills(); err == nil && n > 0 {
			limit, _ := g.MemoryLimit()
			return fmt.Sprintf("killed by the kernel OOM killer (cgroup memory limit %s)", model.ByteSize(limit))
		}
	}
	switch shutdown {
	case "":
		return v.unwatched
	case "guest-shutdown":
		return "guest powered off"
	case "guest-reset":
		return "guest rebooted or its kernel panicked (guests run with -no-reboot)"
	case "guest-panic":
		return "guest kernel panicked"
	case "host-signal":
		return "qemu was terminated by a signal"
	case "host-qmp-quit":
		return "qemu was told to quit over qmp"
	}
	return "qemu shut down: " + shutdown
}

func (d *Driver) removeCgroup(id string) error {
	g, err := d.cg.Load(d.opts.CgroupParent, id)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return g.Delete()
}

// keyedMutex is a mutex per key; entries go away when unused.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	n int
}

// Busy reports whether key is locked or waited for.
func (k *keyedMutex) Busy(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[key] != nil
}

// Lock locks key and returns the unlock function.
func (k *keyedMutex) Lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*refMutex{}
	}
	r := k.m[key]
	if r == nil {
		r = &refMutex{}
		k.m[key] = r
	}
	r.n++
	k.mu.Unlock()
	r.Lock()
	return func() {
		r.Unlock()
		k.mu.Lock()
		if r.n--; r.n == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
