package fake

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

var _ hypervisor.Driver = (*Driver)(nil)

// ErrClosed is returned by a Driver's methods after Close.
var ErrClosed = errors.New("fake driver closed")

// Faults make a Driver misbehave. The zero value is a healthy host.
type Faults struct {
	StartErr  error // returned by Start (nothing is started)
	StopErr   error // returned by Stop (the instance keeps running)
	DeleteErr error // returned by Delete (nothing is deleted)
	ResizeErr error // returned by Resize
	// SuspendErr is returned by Suspend (the instance keeps running).
	SuspendErr error
	// PrepareIncomingErr is returned by PrepareIncoming (nothing is
	// prepared); FinishIncomingErr by FinishIncoming (the instance stays
	// incoming). MigrateErr makes MigrateOut fail once memory goes: the
	// guest runs on at the source and the destination's process ends, as
	// with a broken migration stream (migrate.go).
	PrepareIncomingErr error
	MigrateErr         error
	FinishIncomingErr  error
	// SaveErr is returned by SaveImage (nothing is written).
	SaveErr error
	// GuestDelay is how long after its start a guest reports (0: at once).
	GuestDelay time.Duration
	// NoGuest keeps guests from ever reporting.
	NoGuest bool
}

// host is a simulated machine: its instances outlive the Drivers on it.
type host struct {
	dir string // the stateDir it was made for: where Portable writes files

	mu      sync.Mutex // guards the fields below
	insts   map[string]*instance
	nextPID int
	drivers map[*Driver]bool
}

type instance struct {
	spec       hypervisor.InstanceSpec
	state      hypervisor.InstanceState
	pid        int
	startedAt  time.Time
	readyAt    time.Time // zero: the guest never reports
	exitReason string
	console    []byte
	// upBefore is the guest's uptime when this process started: 0 after
	// a boot, the uptime it was suspended at after a resume.
	upBefore   time.Duration
	saved      *hypervisor.SuspendResult // while suspended
	lastResume *hypervisor.SuspendResult // this process was resumed
	// cpu is the current process's CPU counter (SetCPUSeconds); finalCPU
	// what it was when the last process ended.
	cpu, finalCPU float64
	// disk is what the guest wrote to its disk (WriteDisk); it stays
	// through stops and resumes and moves with the instance. backing is
	// the image disk it is an overlay on.
	disk    []byte
	backing string
	// ram is the guest's RAM as its process was started (the most a
	// Resize may give it): MaxMemory, or the quantum's memory if more.
	ram model.ByteSize
	// bootID names the guest's boot: new at each boot, kept by a resume
	// and a live migration (migrate.go).
	bootID string
}

// Simulated suspend and resume costs: the saved state is a quarter of the
// guest's memory (idle guests' pages are mostly zero), written and read
// at suspendRate.
const suspendRate = 1 << 30 // bytes/s

var (
	hostsMu sync.Mutex
	hosts   = map[string]*host{}
)

// Driver is the fake. Use New.
type Driver struct {
	host    *host
	changes *hypervisor.Notifier

	mu     sync.Mutex // guards the fields below
	faults Faults
	closed bool
	timers []*time.Timer
}

// New returns a driver on the simulated host named stateDir.
func New(stateDir string) *Driver {
	hostsMu.Lock()
	h := hosts[stateDir]
	if h == nil {
		h = &host{dir: stateDir, insts: map[string]*instance{}, nextPID: 1000, drivers: map[*Driver]bool{}}
		hosts[stateDir] = h
	}
	hostsMu.Unlock()
	d := &Driver{host: h, changes: hypervisor.NewNotifier()}
	h.mu.Lock()
	h.drivers[d] = true
	h.mu.Unlock()
	return d
}

// SetFaults changes how the driver misbehaves from now on.
func (d *Driver) SetFaults(f Faults) {
	d.mu.Lock()
	d.faults = f
	d.mu.Unlock()
}

func (d *Driver) state() (Faults, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults, d.closed
}

// notifyAll tells every open driver on the host about id (as every agent
// watching the host would see the change). Called without h.mu.
func (h *host) notifyAll(id string) {
	h.mu.Lock()
	ds := make([]*Driver, 0, len(h.drivers))
	for d := range h.drivers {
		ds = append(ds, d)
	}
	h.mu.Unlock()
	for _, d := range ds {
		d.changes.Notify(id)
	}
}

// Start implements hypervisor.Driver.
func (d *Driver) Start(ctx context.Context, spec hypervisor.InstanceSpec) (hypervisor.Instance, error) {
	if err := spec.Validate(); err != nil {
		return hypervisor.Instance{}, err
	}
	f, closed := d.state()
	if closed {
		return hypervisor.Instance{}, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	in := h.insts[spec.ID]
	if waitingIncoming(in) { // migrate.go
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("start %s: %w", spec.ID, hypervisor.ErrIncoming)
	}
	if in != nil && in.state != hypervisor.InstanceStopped && in.state != hypervisor.InstanceSuspended {
		out := in.view(time.Now())
		h.mu.Unlock()
		return out, nil
	}
	if f.StartErr != nil {
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("start %s: %w", spec.ID, f.StartErr)
	}
	if in != nil && in.state == hypervisor.InstanceSuspended {
		out, err := d.resume(in, spec, f)
		h.mu.Unlock()
		if err != nil {
			return hypervisor.Instance{}, fmt.Errorf("resume %s: %w", spec.ID, err)
		}
		h.notifyAll(spec.ID)
		return out, nil
	}
	if in == nil {
		in = &instance{backing: spec.Image.Disk}
		h.insts[spec.ID] = in
	}
	now := time.Now()
	h.nextPID++
	in.spec, in.state, in.pid, in.exitReason = spec, hypervisor.InstanceRunning, h.nextPID, ""
	in.ram = max(spec.MaxMemory, spec.Quantum.Memory)
	in.startedAt = now
	in.upBefore, in.saved, in.lastResume = 0, nil, nil
	in.bootID = newBootID()
	in.cpu, in.finalCPU = 0, 0
	in.readyAt = time.Time{}
	if !f.NoGuest {
		in.readyAt = now.Add(f.GuestDelay)
	}
	in.console = fmt.Appendf(nil, "fake console of %s\nbooting with %d vcpus and %s\n", spec.ID, spec.Quantum.VCPUs, spec.Quantum.Memory)
	out := in.view(now)
	h.mu.Unlock()
	if !f.NoGuest && f.GuestDelay > 0 {
		d.mu.Lock()
		d.timers = append(d.timers, time.AfterFunc(f.GuestDelay, func() { h.notifyAll(spec.ID) }))
		d.mu.Unlock()
	}
	h.notifyAll(spec.ID)
	return out, nil
}

// Stop implements hypervisor.Driver. An unknown ID is ErrNotFound.
func (d *Driver) Stop(ctx context.Context, id string, timeout time.Duration) error {
	f, closed := d.state()
	if closed {
		return ErrClosed
	}
	if err := d.end(id, "stopped", f.StopErr); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return nil
}

// Crash ends a running instance's process as if it had died, with reason
// (e.g. "killed by the kernel OOM killer").
func (d *Driver) Crash(id, reason string) error {
	if err := d.end(id, reason, nil); err != nil {
		return fmt.Errorf("crash %s: %w", id, err)
	}
	return nil
}

func (d *Driver) end(id, reason string, fault error) error {
	h := d.host
	h.mu.Lock()
	in := h.insts[id]
	if in == nil {
		h.mu.Unlock()
		return hypervisor.ErrNotFound
	}
	if in.state == hypervisor.InstanceStopped {
		h.mu.Unlock()
		return nil
	}
	if in.state == hypervisor.InstanceSuspended {
		in.state, in.saved = hypervisor.InstanceStopped, nil
		in.exitReason = "stopped while suspended; the saved state was discarded"
		h.mu.Unlock()
		h.notifyAll(id)
		return nil
	}
	if fault != nil {
		h.mu.Unlock()
		return fault
	}
	in.state, in.pid, in.exitReason = hypervisor.InstanceStopped, 0, reason
	in.lastResume = nil
	in.finalCPU, in.cpu = in.cpu, 0
	in.console = append(in.console, "reboot: Power down\n"...)
	h.mu.Unlock()
	h.notifyAll(id)
	return nil
}

// Delete implements hypervisor.Driver.
func (d *Driver) Delete(ctx context.Context, id string) error {
	f, closed := d.state()
	if closed {
		return ErrClosed
	}
	if f.DeleteErr != nil {
		return fmt.Errorf("delete %s: %w", id, f.DeleteErr)
	}
	h := d.host
	h.mu.Lock()
	in, ok := h.insts[id]
	if ok {
		unmark(in) // migrate.go
	}
	delete(h.insts, id)
	var err error
	if dir := h.instanceDir(id); dir != "" {
		err = os.RemoveAll(dir) // the files Portable wrote
	}
	h.mu.Unlock()
	if ok {
		h.notifyAll(id)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

// Get implements hypervisor.Driver.
func (d *Driver) Get(ctx context.Context, id string) (hypervisor.Instance, error) {
	if _, closed := d.state(); closed {
		return hypervisor.Instance{}, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	if in == nil {
		return hypervisor.Instance{}, fmt.Errorf("get %q: %w", id, hypervisor.ErrNotFound)
	}
	return in.view(time.Now()), nil
}

// List implements hypervisor.Driver, in ID order.
func (d *Driver) List(ctx context.Context) ([]hypervisor.Instance, error) {
	if _, closed := d.state(); closed {
		return nil, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	out := make([]hypervisor.Instance, 0, len(h.insts))
	for _, in := range h.insts {
		out = append(out, in.view(now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Resize implements hypervisor.Driver with the rules of the real driver:
// a running guest keeps its vCPUs, gets at most the memory it started
// with (its MaxMemory, or its quantum's memory when that is more), and a
// disk never shrinks; a suspended one keeps the machine it was saved with
// (vCPUs, memory, disk); a stopped one takes anything but a smaller disk.
// A refusal wraps ErrNotInPlace and changes nothing. The guest reports
// the new quantum at once.
func (d *Driver) Resize(ctx context.Context, id string, q model.Quantum) error {
	f, closed := d.state()
	if closed {
		return ErrClosed
	}
	h := d.host
	h.mu.Lock()
	in := h.insts[id]
	if in == nil {
		h.mu.Unlock()
		return fmt.Errorf("resize %q: %w", id, hypervisor.ErrNotFound)
	}
	spec := in.spec
	spec.Quantum = q
	if err := spec.Validate(); err != nil {
		h.mu.Unlock()
		return fmt.Errorf("resize %s: %w", id, err)
	}
	if err := resizable(in, q); err != nil {
		h.mu.Unlock()
		return fmt.Errorf("resize %s: %w", id, err)
	}
	if f.ResizeErr != nil {
		h.mu.Unlock()
		return fmt.Errorf("resize %s: %w", id, f.ResizeErr)
	}
	in.spec = spec
	h.mu.Unlock()
	h.notifyAll(id)
	return nil
}

// resizable says whether in can take q in place (Resize's rules).
func resizable(in *instance, q model.Quantum) error {
	old := in.spec.Quantum
	var why []string
	if q.Disk < old.Disk {
		why = append(why, fmt.Sprintf("disk %s is smaller than its %s: a disk is never shrunk", q.Disk, old.Disk))
	}
	switch in.state {
	case hypervisor.InstanceRunning, hypervisor.InstancePaused:
		if q.VCPUs > old.VCPUs {
			why = append(why, fmt.Sprintf("no CPU hotplug: %d vCPUs needs a restart (stop and start); the guest runs with %d", q.VCPUs, old.VCPUs))
		} else if q.VCPUs < old.VCPUs {
			why = append(why, fmt.Sprintf("vCPUs are not taken from a running guest: %d vCPUs needs a restart (stop and start); the guest runs with %d", q.VCPUs, old.VCPUs))
		}
		if ram := max(in.spec.MaxMemory, in.ram, old.Memory); q.Memory > ram {
			why = append(why, fmt.Sprintf("memory %s is above the guest's maximum of %s; more needs a restart (stop and start)", q.Memory, ram))
		}
	case hypervisor.InstanceSuspended:
		if q.VCPUs != old.VCPUs || q.Memory != old.Memory || q.Disk > old.Disk {
			why = append(why, fmt.Sprintf("a suspended guest resumes as it was saved, with %d vCPUs, %s and its disk: resume it, then resize", old.VCPUs, old.Memory))
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", hypervisor.ErrNotInPlace, strings.Join(why, "; "))
	}
	return nil
}

// SetCPUSeconds sets the CPU counter of a running instance's process, as
// its cgroup would count it: Get and List report it as CPUSeconds, and when
// the process ends (Stop, Crash, Suspend) as FinalCPUSeconds. A new process
// (Start, resume) starts from 0. It does not notify Changes: a real
// driver does not either. A real counter never goes back; the fake takes
// whatever it is given, so that tests can misbehave.
func (d *Driver) SetCPUSeconds(id string, s float64) error {
	if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return fmt.Errorf("set cpu seconds of %s: %v: %w", id, s, hypervisor.ErrInvalid)
	}
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	switch {
	case in == nil:
		return fmt.Errorf("set cpu seconds of %q: %w", id, hypervisor.ErrNotFound)
	case in.state == hypervisor.InstanceStopped || in.state == hypervisor.InstanceSuspended:
		return fmt.Errorf("set cpu seconds of %s: %w", id, hypervisor.ErrNotRunning)
	}
	in.cpu = s
	return nil
}

// Quantum returns the quantum an instance has now (after any Resize).
func (d *Driver) Quantum(id string) (model.Quantum, bool) {
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	if in == nil {
		return model.Quantum{}, false
	}
	return in.spec.Quantum, true
}

// ConsoleLog implements hypervisor.Driver.
func (d *Driver) ConsoleLog(ctx context.Context, id string, max int) ([]byte, error) {
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	if in == nil {
		return nil, fmt.Errorf("console %q: %w", id, hypervisor.ErrNotFound)
	}
	b := in.console
	if max >= 0 && len(b) > max {
		b = b[len(b)-max:]
	}
	return append([]byte(nil), b...), nil
}

// Changes implements hypervisor.Driver.
func (d *Driver) Changes() <-chan string { return d.changes.C() }

// Close implements hypervisor.Driver; the host's instances stay.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	for _, t := range d.timers {
		t.Stop()
	}
	d.timers = nil
	d.mu.Unlock()
	d.host.mu.Lock()
	delete(d.host.drivers, d)
	d.host.mu.Unlock()
	d.changes.Close()
	return nil
}

// Suspend implements hypervisor.Driver: the guest's uptime stops until
// it is resumed.
func (d *Driver) Suspend(ctx context.Context, id string) (hypervisor.SuspendResult, error) {
	f, closed := d.state()
	if closed {
		return hypervisor.SuspendResult{}, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	in := h.insts[id]
	switch {
	case in == nil:
		h.mu.Unlock()
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %q: %w", id, hypervisor.ErrNotFound)
	case waitingIncoming(in): // migrate.go
		h.mu.Unlock()
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %s: %w", id, hypervisor.ErrIncoming)
	case in.state == hypervisor.InstanceSuspended:
		res := *in.saved
		h.mu.Unlock()
		return res, nil
	case in.state == hypervisor.InstanceStopped:
		h.mu.Unlock()
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %s: %w", id, hypervisor.ErrNotRunning)
	case f.SuspendErr != nil:
		h.mu.Unlock()
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %s: %w", id, f.SuspendErr)
	}
	now := time.Now()
	bytes := int64(in.spec.Quantum.Memory / 4)
	res := hypervisor.SuspendResult{Bytes: bytes, Duration: time.Duration(bytes) * time.Second / suspendRate}
	in.upBefore += now.Sub(in.startedAt)
	in.state, in.pid, in.exitReason = hypervisor.InstanceSuspended, 0, "suspended"
	in.saved, in.lastResume = &res, nil
	in.finalCPU, in.cpu = in.cpu, 0
	h.mu.Unlock()
	h.notifyAll(id)
	return res, nil
}

// resume restarts a suspended instance as a new process whose guest
// carries on (and reports at once: it needs no boot). Called with h.mu.
func (d *Driver) resume(in *instance, spec hypervisor.InstanceSpec, f Faults) (hypervisor.Instance, error) {
	old := in.spec.Quantum
	if spec.Quantum.VCPUs != old.VCPUs || spec.Quantum.Memory != old.Memory || spec.Image != in.spec.Image {
		return hypervisor.Instance{}, fmt.Errorf("%w: the machine differs from the suspended one", hypervisor.ErrInvalid)
	}
	now := time.Now()
	d.host.nextPID++
	in.spec, in.state, in.pid, in.exitReason = spec, hypervisor.InstanceRunning, d.host.nextPID, ""
	in.startedAt = now
	in.readyAt = time.Time{}
	if !f.NoGuest {
		in.readyAt = now
	}
	in.lastResume, in.saved = in.saved, nil
	in.cpu, in.finalCPU = 0, 0
	in.console = append(in.console, "(resumed)\n"...)
	return in.view(now), nil
}

// view is the Instance a driver reports at now.
func (in *instance) view(now time.Time) hypervisor.Instance {
	out := hypervisor.Instance{
		ID:         in.spec.ID,
		State:      in.state,
		PID:        in.pid,
		Accel:      "fake",
		StartedAt:  in.startedAt,
		ExitReason: in.exitReason,
	}
	switch in.state {
	case hypervisor.InstanceStopped:
		out.FinalCPUSeconds = in.finalCPU
		return out
	case hypervisor.InstanceSuspended:
		out.Saved = copyResult(in.saved)
		out.FinalCPUSeconds = in.finalCPU
		return out
	}
	out.LastResume = copyResult(in.lastResume)
	out.CPUSeconds = in.cpu
	out.Cgroup = map[string]string{"cpu": "/fake/vgrid/" + in.spec.ID, "memory": "/fake/vgrid/" + in.spec.ID}
	if !in.readyAt.IsZero() && !now.Before(in.readyAt) {
		out.Guest = guestInfo(in.spec)
		out.Guest.UptimeS = (in.upBefore + now.Sub(in.startedAt)).Seconds()
	}
	return out
}

func copyResult(r *hypervisor.SuspendResult) *hypervisor.SuspendResult {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// guestInfo is what a guest booted with spec would report.
func guestInfo(spec hypervisor.InstanceSpec) *model.GuestInfo {
	q := spec.Quantum
	host := spec.Hostname
	if spec.Context != nil && spec.Context.Hostname != "" {
		host = spec.Context.Hostname
	}
	if host == "" {
		host = spec.ID
	}
	return &model.GuestInfo{
		VCPUs:     q.VCPUs,
		MemoryMiB: q.Memory.MiB() * 95 / 100, // the kernel keeps some
		Addresses: []string{"10.0.2.15/24"},
		Hostname:  host,
		Kernel:    "fake",
		DiskBytes: int64(max(q.Disk, spec.Image.MinDisk)),
		Context:   spec.Context != nil,
		Agent:     "fake",
	}
}
