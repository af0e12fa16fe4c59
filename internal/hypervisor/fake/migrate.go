package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"vgrid/internal/hypervisor"
)

// Live migration between simulated hosts. PrepareIncoming adds a paused
// instance (ExitReason "incoming", no guest) to its host and registers it
// in a table of the whole process under its endpoint: 127.0.0.1:<port>
// for memory and nbd://127.0.0.1:<port+1>/<id> for the disk, ports
// counted from 40000 (or the listen port given). MigrateOut on any other
// fake driver finds the instance there by to.Memory; an endpoint that is
// not in the table, or whose instance was deleted or ended, refuses the
// connection. The move takes simulated time (the disk's bytes, then a
// quarter of the guest's memory, at the bandwidth or migrateRate) in
// steps that report progress and watch ctx; then, under both hosts' locks
// at once, the guest leaves the source (stopped, "migrated to ...") and
// runs at the destination with what it had: its disk, its uptime, its
// boot ID and console. The downtime reported is how long that switch
// took. A cancelled or failed migration (Faults.MigrateErr) leaves the
// guest running at the source and ends the destination's process, as
// QEMU's incoming side ends. FinishIncoming clears the mark.

// migrateRate is the simulated migration bandwidth when MigrateOptions
// sets none (bytes/s), and migrateSteps how many progress steps memory
// takes.
const (
	migrateRate  = 1 << 30
	migrateSteps = 4
	// firstPort is the first port a fake endpoint gets.
	firstPort = 40000
	// incomingReason is the ExitReason of an incoming instance.
	incomingReason = "incoming"
)

// incoming is a prepared destination.
type incoming struct {
	host *host
	id   string
	ep   hypervisor.MigrationEndpoint
}

var (
	regMu sync.Mutex // innermost: taken under hosts' h.mu, never the reverse
	// endpoints maps Endpoint.Memory to its destination; incomingOf the
	// instances marked incoming (until FinishIncoming) to theirs.
	endpoints  = map[string]*incoming{}
	incomingOf = map[*instance]*incoming{}
	nextPort   = firstPort
)

// markOf returns in's incoming mark, nil if it has none. Called with h.mu.
func markOf(in *instance) *incoming {
	regMu.Lock()
	defer regMu.Unlock()
	return incomingOf[in]
}

// waitingIncoming reports whether in is an incoming instance whose guest
// has not arrived (its process waits, or ended). Called with h.mu.
func waitingIncoming(in *instance) bool {
	return in != nil && in.state != hypervisor.InstanceRunning && markOf(in) != nil
}

// unmark forgets in's incoming mark and endpoint. Called with h.mu.
func unmark(in *instance) {
	regMu.Lock()
	defer regMu.Unlock()
	if m := incomingOf[in]; m != nil {
		delete(incomingOf, in)
		if endpoints[m.ep.Memory] == m {
			delete(endpoints, m.ep.Memory)
		}
	}
}

// BootID returns the boot of the guest of instance id: set when it boots,
// kept by a resume and by a live migration (the guest did not reboot).
func (d *Driver) BootID(id string) (string, error) {
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	switch {
	case in == nil:
		return "", fmt.Errorf("boot id of %q: %w", id, hypervisor.ErrNotFound)
	case in.state != hypervisor.InstanceRunning:
		return "", fmt.Errorf("boot id of %s: %w", id, hypervisor.ErrNotRunning)
	}
	if in.bootID == "" {
		in.bootID = newBootID() // adopted from another host
	}
	return in.bootID, nil
}

func newBootID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PrepareIncoming implements hypervisor.Driver. listen must be an IP
// address (not unspecified) and a port; 0 picks the next free fake port.
func (d *Driver) PrepareIncoming(ctx context.Context, spec hypervisor.InstanceSpec, listen string) (hypervisor.MigrationEndpoint, error) {
	if err := spec.Validate(); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	ip, port, err := parseListen(listen)
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	f, closed := d.state()
	if closed {
		return hypervisor.MigrationEndpoint{}, ErrClosed
	}
	id := spec.ID
	h := d.host
	h.mu.Lock()
	if in := h.insts[id]; in != nil {
		m := markOf(in)
		switch {
		case m == nil:
			h.mu.Unlock()
			return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, hypervisor.ErrExists)
		case in.state != hypervisor.InstanceStopped:
			h.mu.Unlock()
			return m.ep, nil
		}
		// Its process ended (a failed migration): made again.
		unmark(in)
		delete(h.insts, id)
	}
	if f.PrepareIncomingErr != nil {
		h.mu.Unlock()
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, f.PrepareIncomingErr)
	}
	regMu.Lock()
	if port == 0 {
		port = nextPort
		nextPort += 2
	}
	mem := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	if endpoints[mem] != nil {
		regMu.Unlock()
		h.mu.Unlock()
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: listen %s: address already in use", id, mem)
	}
	m := &incoming{host: h, id: id, ep: hypervisor.MigrationEndpoint{
		Memory: mem,
		Disk:   "nbd://" + net.JoinHostPort(ip.String(), strconv.Itoa(port+1)) + "/" + id,
	}}
	now := time.Now()
	h.nextPID++
	in := &instance{spec: spec, state: hypervisor.InstancePaused, pid: h.nextPID, startedAt: now, exitReason: incomingReason,
		backing: spec.Image.Disk, ram: max(spec.MaxMemory, spec.Quantum.Memory), console: fmt.Appendf(nil, "fake console of %s\nwaiting for an incoming migration on %s\n", id, mem)}
	endpoints[mem], incomingOf[in] = m, m
	regMu.Unlock()
	h.insts[id] = in
	h.mu.Unlock()
	h.notifyAll(id)
	return m.ep, nil
}

// parseListen checks PrepareIncoming's listen as the real driver does.
func parseListen(listen string) (netip.Addr, int, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: %v", hypervisor.ErrInvalid, listen, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: want an IP address of this host", hypervisor.ErrInvalid, listen)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65534 {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: port %q: want 0-65534", hypervisor.ErrInvalid, listen, port)
	}
	return ip, n, nil
}

// FinishIncoming implements hypervisor.Driver.
func (d *Driver) FinishIncoming(ctx context.Context, id string) (hypervisor.Instance, error) {
	f, closed := d.state()
	if closed {
		return hypervisor.Instance{}, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	in := h.insts[id]
	switch {
	case in == nil:
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %q: %w", id, hypervisor.ErrNotFound)
	case markOf(in) == nil:
		defer h.mu.Unlock()
		if in.state == hypervisor.InstanceRunning {
			return in.view(time.Now()), nil
		}
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: not an incoming instance, and not running: %w", id, hypervisor.ErrNotRunning)
	case in.state == hypervisor.InstancePaused:
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: the guest has not arrived", id)
	case in.state != hypervisor.InstanceRunning:
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: its process ended before the guest arrived (%s)", id, in.exitReason)
	case f.FinishIncomingErr != nil:
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: %w", id, f.FinishIncomingErr)
	}
	unmark(in)
	in.exitReason = ""
	out := in.view(time.Now())
	h.mu.Unlock()
	h.notifyAll(id)
	return out, nil
}

// MigrateOut implements hypervisor.Driver (see the top of this file).
func (d *Driver) MigrateOut(ctx context.Context, id string, to hypervisor.MigrationEndpoint, opt hypervisor.MigrateOptions, progress func(hypervisor.MigrationProgress)) (hypervisor.MigrationResult, error) {
	start := time.Now()
	f, closed := d.state()
	if closed {
		return hypervisor.MigrationResult{}, ErrClosed
	}
	if opt.MaxDowntime < 0 || opt.Bandwidth < 0 {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w: max downtime and bandwidth must not be negative", id, hypervisor.ErrInvalid)
	}
	if !opt.Mode.Valid() {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w: mode %q: want %q or %q", id, hypervisor.ErrInvalid, opt.Mode, hypervisor.MigrateLive, hypervisor.MigratePaused)
	}
	if progress == nil {
		progress = func(hypervisor.MigrationProgress) {}
	}
	h := d.host
	h.mu.Lock()
	in := h.insts[id]
	var err error
	switch {
	case in == nil:
		err = fmt.Errorf("migrate %q: %w", id, hypervisor.ErrNotFound)
	case waitingIncoming(in):
		err = fmt.Errorf("migrate %s: %w", id, hypervisor.ErrIncoming)
	case in.state != hypervisor.InstanceRunning:
		err = fmt.Errorf("migrate %s (%s): %w", id, in.state, hypervisor.ErrNotRunning)
	}
	if err != nil {
		h.mu.Unlock()
		return hypervisor.MigrationResult{}, err
	}
	pid, disk, mem := in.pid, int64(len(in.disk)), int64(in.spec.Quantum.Memory)
	h.mu.Unlock()

	regMu.Lock()
	dst := endpoints[to.Memory]
	regMu.Unlock()
	if dst == nil || dst.ep.Disk != to.Disk {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s to %s: connect to the destination's disk %s: connection refused", id, to.Memory, to.Disk)
	}
	rate := opt.Bandwidth
	if rate == 0 {
		rate = migrateRate
	}
	// fail ends the destination's process, as a broken stream ends QEMU's.
	fail := func(err error) (hypervisor.MigrationResult, error) {
		dst.end("incoming migration did not complete: the source gave up")
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s to %s: %w", id, to.Memory, err)
	}
	wait := func(bytes int64) error {
		t := time.NewTimer(time.Duration(bytes) * time.Second / time.Duration(rate))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	progress(hypervisor.MigrationProgress{Phase: "disk", DiskTotal: disk})
	if err := wait(disk); err != nil {
		return fail(err)
	}
	progress(hypervisor.MigrationProgress{Phase: "disk", DiskTotal: disk, DiskDone: disk})
	// Idle guests' pages are mostly zero: a quarter of the memory goes.
	sent := int64(0)
	for i := 1; i <= migrateSteps; i++ {
		step := mem / 4 / migrateSteps
		progress(hypervisor.MigrationProgress{Phase: "memory", DiskTotal: disk, DiskDone: disk, MemoryTotal: mem,
			MemoryTransferred: sent, MemoryRemaining: mem/4 - sent, Passes: 1})
		if err := wait(step); err != nil {
			return fail(err)
		}
		if f.MigrateErr != nil {
			return fail(f.MigrateErr)
		}
		sent += step
	}
	progress(hypervisor.MigrationProgress{Phase: "switchover", DiskTotal: disk, DiskDone: disk, MemoryTotal: mem,
		MemoryTransferred: sent, Passes: 2})
	downtime, err := d.switchTo(id, pid, dst, to.Memory)
	if err != nil {
		return fail(err)
	}
	h.notifyAll(id)
	dst.host.notifyAll(dst.id)
	return hypervisor.MigrationResult{Total: time.Since(start), Downtime: downtime, MemoryBytes: sent, DiskBytes: disk}, nil
}

// end ends the destination's process if its guest has not arrived.
func (m *incoming) end(reason string) {
	h := m.host
	h.mu.Lock()
	in := h.insts[m.id]
	ended := in != nil && markOf(in) == m && in.state == hypervisor.InstancePaused
	if ended {
		in.state, in.pid, in.exitReason = hypervisor.InstanceStopped, 0, reason
	}
	h.mu.Unlock()
	if ended {
		h.notifyAll(m.id)
	}
}

// switchTo moves the guest of the source's instance id (process pid) to
// dst, under both hosts' locks, and returns how long that took.
func (d *Driver) switchTo(id string, pid int, dst *incoming, to string) (time.Duration, error) {
	src := d.host
	t0 := time.Now()
	unlock := lockPair(src, dst.host)
	defer unlock()
	in := src.insts[id]
	if in == nil || in.state != hypervisor.InstanceRunning || in.pid != pid {
		return 0, errors.New("the guest stopped at the source during the migration")
	}
	out := dst.host.insts[dst.id]
	if out == nil || markOf(out) != dst || out.state != hypervisor.InstancePaused {
		return 0, errors.New("the destination is gone: connection reset")
	}
	now := time.Now()
	if in.bootID == "" {
		in.bootID = newBootID()
	}
	out.upBefore = in.upBefore + now.Sub(in.startedAt)
	out.disk, out.bootID, out.ram = append([]byte(nil), in.disk...), in.bootID, in.ram
	out.console = append(append([]byte(nil), in.console...), "(migrated)\n"...)
	out.state, out.startedAt, out.readyAt = hypervisor.InstanceRunning, now, now
	out.cpu, out.finalCPU = 0, 0
	in.state, in.pid, in.exitReason = hypervisor.InstanceStopped, 0, "migrated to "+to
	in.lastResume = nil
	in.finalCPU, in.cpu = in.cpu, 0
	regMu.Lock()
	if endpoints[dst.ep.Memory] == dst {
		delete(endpoints, dst.ep.Memory) // taken: nobody else connects
	}
	regMu.Unlock()
	return max(time.Since(t0), time.Nanosecond), nil
}

// lockPair locks two hosts (one, if they are the same) in a fixed order.
func lockPair(a, b *host) func() {
	if a == b {
		a.mu.Lock()
		return a.mu.Unlock
	}
	if b.dir < a.dir {
		a, b = b, a
	}
	a.mu.Lock()
	b.mu.Lock()
	return func() {
		b.mu.Unlock()
		a.mu.Unlock()
	}
}
