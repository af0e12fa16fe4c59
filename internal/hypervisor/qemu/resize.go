package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// Resize in place.
//
// Memory moves with the balloon: QEMU's RAM (-m) is the spec's MaxMemory
// (ramSize), and the balloon's target is the quantum's memory, set at
// start (startBalloon) and by Resize. The cgroup's memory limit follows
// the target, never ahead of what the guest may hold: it is raised before
// the target grows, and lowered only once the guest has given the memory
// back (query-balloon's actual at the target). A limit lowered while the
// guest still held the memory would have the kernel reclaim or OOM-kill
// QEMU, the whole guest, instead of the guest's balloon driver taking
// pages its own kernel can spare. The disk grows with block_resize of the
// root drive and then, in the guest, the guest agent's -growfs (through
// Exec), which waits until the guest's kernel sees the new capacity
// (virtio-blk config change) and grows ext4 online. The I/O caps are
// block_set_io_throttle, the CPU cap the cgroup's quota.
//
// Everything is checked before anything changes (checkResize); of the
// steps, the one the guest can fail, giving memory back, comes first and
// is undone (the target set back) when the guest does not get there in
// time. spec.json records what was applied, also when a later step fails.

const (
	// balloonTimeout bounds how long Resize waits for the guest to give
	// memory back to its balloon (or take it out again).
	balloonTimeout = 30 * time.Second
	// balloonGrowWait is how long Resize waits, to log it, for the guest
	// to take memory the balloon let go.
	balloonGrowWait = 5 * time.Second
	// balloonPoll is how often query-balloon is asked meanwhile.
	balloonPoll = 50 * time.Millisecond
	// balloonPage is the balloon's unit: the guest reaches a target to
	// within one page above it.
	balloonPage = 4096
	// growFSTimeout bounds the guest's part of growing the disk: its
	// agent connecting (a guest still booting), its kernel seeing the new
	// size, the filesystem's resize.
	growFSTimeout = 60 * time.Second
)

// machineName names the QEMU machine a spec runs on, for messages.
func machineName(spec hypervisor.InstanceSpec) string {
	if spec.Image.Boot == "firmware" {
		return "q35"
	}
	return "microvm"
}

// checkResize is the pure part of Resize: whether q can be applied in
// place to an instance whose spec.json is cur, in state (running, paused,
// suspended or stopped). saved is, for a suspended instance, the spec it
// was saved with (nil: cur). The error wraps ErrNotInPlace and gives every
// reason.
func checkResize(cur hypervisor.InstanceSpec, q model.Quantum, state hypervisor.InstanceState, saved *hypervisor.InstanceSpec) error {
	var why []string
	if q.Disk < cur.Quantum.Disk {
		why = append(why, fmt.Sprintf("disk %s is smaller than its %s: a disk is never shrunk", q.Disk, cur.Quantum.Disk))
	}
	switch state {
	case hypervisor.InstanceRunning, hypervisor.InstancePaused:
		old := cur.Quantum
		switch {
		case q.VCPUs > old.VCPUs:
			why = append(why, fmt.Sprintf("%s has no CPU hotplug: %d vCPUs needs a restart (stop and start); the guest runs with %d",
				machineName(cur), q.VCPUs, old.VCPUs))
		case q.VCPUs < old.VCPUs:
			why = append(why, fmt.Sprintf("vCPUs are not taken from a running guest: %d vCPUs needs a restart (stop and start); the guest runs with %d",
				q.VCPUs, old.VCPUs))
		}
		if max := ramSize(cur); q.Memory > max {
			why = append(why, fmt.Sprintf("memory %s is above the guest's maximum of %s (its RAM: the MaxMemory it was started with); more needs a restart (stop and start)",
				q.Memory, max))
		}
	case hypervisor.InstanceSuspended:
		m := cur
		if saved != nil {
			m = *saved
		}
		if q.VCPUs != m.Quantum.VCPUs || q.Memory != m.Quantum.Memory {
			why = append(why, fmt.Sprintf("a suspended guest resumes as it was saved, with %d vCPUs and %s: resume it, then resize",
				m.Quantum.VCPUs, m.Quantum.Memory))
		}
		if q.Disk > cur.Quantum.Disk {
			why = append(why, "the disk of a suspended guest grows once it runs again: resume it, then resize")
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", hypervisor.ErrNotInPlace, strings.Join(why, "; "))
	}
	return nil
}

// Resize implements hypervisor.Driver (see the comment at the top of this
// file). A stopped instance's quantum is recorded in spec.json and its
// disk grown (qemu-img resize; its guest grows the filesystem when it
// boots); a suspended one takes changes of its CPU cap and I/O caps only
// (its resume applies them).
func (d *Driver) Resize(ctx context.Context, id string, q model.Quantum) error {
	if !hypervisor.ValidID(id) {
		return fmt.Errorf("resize %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	cur, err := readSpec(p)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resize %s: %w", id, hypervisor.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("resize %s: %w", id, err)
	}
	next := cur
	next.Quantum = q
	if err := next.Validate(); err != nil {
		return fmt.Errorf("resize %s: %w", id, err)
	}
	if hasIncoming(p) {
		// Its disk may still be exported to the source (migrate.go).
		return fmt.Errorf("resize %s: %w: resize it once the migration is finished", id, hypervisor.ErrIncoming)
	}
	if pid := readPID(p.PIDFile); alive(pid, marker(p)) {
		err = d.resizeLive(ctx, id, p, pid, cur, q)
	} else {
		err = d.resizeOffline(ctx, id, p, cur, q)
	}
	d.changes.Notify(id)
	if err != nil {
		return fmt.Errorf("resize %s: %w", id, err)
	}
	return nil
}

// resizeOffline resizes an instance without a process: the quantum goes
// into spec.json, and a larger disk is grown on the host.
func (d *Driver) resizeOffline(ctx context.Context, id string, p Paths, cur hypervisor.InstanceSpec, q model.Quantum) error {
	state := hypervisor.InstanceStopped
	var saved *hypervisor.InstanceSpec
	if st, ok := suspendedState(p); ok {
		state, saved = hypervisor.InstanceSuspended, st.Suspended.Spec
	}
	if err := checkResize(cur, q, state, saved); err != nil {
		return err
	}
	if state == hypervisor.InstanceStopped {
		size, err := imageVirtualSize(p.Disk, "qcow2")
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Never started far enough to have a disk: Start makes it.
		case err != nil:
			return err
		case int64(q.Disk) > size:
			if err := d.growDiskFile(ctx, p.Disk, roundSector(int64(q.Disk))); err != nil {
				return err
			}
			d.log.Info("disk grown", "instance", id, "from", model.ByteSize(size), "to", q.Disk)
		}
	}
	next := cur
	next.Quantum = q
	return writeJSON(p.Spec, next)
}

// roundSector rounds a disk size up to a 512-byte sector, as QEMU wants
// sizes (and as the overlay is made: qcow2Overlay).
func roundSector(n int64) int64 { return (n + 511) &^ 511 }

// growDiskFile grows the virtual size of the qcow2 image at path, which
// no QEMU has open, with qemu-img resize (the one program the driver
// spawns besides QEMU: growing the L1 table of an image QEMU may have
// reorganized is QEMU's business).
func (d *Driver) growDiskFile(ctx context.Context, path string, size int64) error {
	img := filepath.Join(filepath.Dir(d.opts.QEMUPath), "qemu-img")
	if _, err := os.Stat(img); err != nil {
		if img, err = exec.LookPath("qemu-img"); err != nil {
			return fmt.Errorf("grow the disk: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, img, "resize", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("grow the disk: qemu-img resize: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// resizeLive resizes the running instance (QEMU pid). spec.json records
// what was applied, whatever fails.
func (d *Driver) resizeLive(ctx context.Context, id string, p Paths, pid int, cur hypervisor.InstanceSpec, q model.Quantum) (err error) {
	v := d.watchPID(id, p, pid)
	c, err := v.qmpClient(ctx)
	if err != nil {
		return err
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &status); err != nil {
		return err
	}
	switch status.Status {
	case "running":
	case "inmigrate":
		return fmt.Errorf("%w: resize it once its guest runs", hypervisor.ErrIncoming)
	default:
		// A guest that does not run neither gives memory back nor grows
		// its filesystem.
		return fmt.Errorf("the guest is %s, not running: resize it once it runs", status.Status)
	}
	if err := checkResize(cur, q, hypervisor.InstanceRunning, nil); err != nil {
		return err
	}
	disk, err := imageVirtualSize(p.Disk, "qcow2")
	if err != nil {
		return err
	}
	actual, err := queryBalloon(ctx, c)
	if err != nil {
		return err
	}
	st, err := readState(p)
	if err != nil {
		return err
	}
	accel := st.Accel
	if accel == "" {
		accel = d.accelFor(cur)
	}
	g, err := d.cg.Load(d.opts.CgroupParent, id)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}

	// applied is what spec.json gets: q, but for what has not been
	// applied (yet) to the guest; done says that all of it was.
	applied := cur
	applied.Quantum = q
	a, o := &applied.Quantum, cur.Quantum
	a.Memory, a.CPU, a.DiskIOPS, a.DiskBPS, a.Disk = o.Memory, o.CPU, o.DiskIOPS, o.DiskBPS, o.Disk
	// The process's RAM stays what it is, also where MaxMemory was less
	// than the memory it started with: memory given back can be given
	// again, and a resume of a suspended guest needs the same RAM.
	applied.MaxMemory = ramSize(cur)
	done := false
	defer func() {
		moved := a.Memory != o.Memory || a.CPU != o.CPU || a.DiskIOPS != o.DiskIOPS || a.DiskBPS != o.DiskBPS || a.Disk != o.Disk
		if !moved && (!done || applied.Quantum == cur.Quantum) {
			return // nothing changed
		}
		if werr := writeJSON(p.Spec, applied); werr != nil {
			err = errors.Join(err, fmt.Errorf("record the quantum: %w", werr))
		}
		// The guest's report (MemTotal, disk size) is asked for again;
		// the guest agent also reports such changes by itself.
		v.askFacts()
	}()

	target := int64(q.Memory)
	shrink, grow := q.Memory < o.Memory, q.Memory > o.Memory
	// Memory the guest cannot spare is not asked of it: its balloon
	// driver would take it anyway, pushing the guest's kernel into its
	// OOM killer and, with nothing left to kill, a panic.
	if shrink && actual > target {
		avail, err := guestAvailable(ctx, c)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		if err := canGiveBack(avail, actual, target); err != nil {
			return err
		}
	}

	// 1. Memory given back first: it is the step the guest may fail, and
	// it is undone then, before anything else changed.
	if shrink {
		if err := setBalloon(ctx, c, target); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		got, err := waitBalloon(ctx, c, target, balloonTimeout)
		if err != nil {
			if berr := setBalloon(context.WithoutCancel(ctx), c, int64(o.Memory)); berr != nil {
				v.log.Error("set the balloon back", "target", o.Memory, "err", berr)
			}
			return fmt.Errorf("memory: the guest gave back memory only down to %s of the %s asked for (%v); its balloon is set back to %s and nothing else changed",
				model.ByteSize(got), q.Memory, err, o.Memory)
		}
		v.log.Info("memory given back", "from", model.ByteSize(actual), "to", model.ByteSize(got))
		a.Memory = q.Memory
	}
	// 2. The cgroup: the CPU cap, and the memory limit for q's memory,
	// which the guest now holds at most (a grow raises it before the
	// balloon lets go).
	if err := g.Update(d.limits(accel, q)); err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	a.CPU = q.CPU
	// 3. The I/O caps.
	if q.DiskIOPS != o.DiskIOPS || q.DiskBPS != o.DiskBPS {
		if err := c.Execute(ctx, "block_set_io_throttle", throttleArgs(q), nil); err != nil {
			return fmt.Errorf("disk i/o caps: %w", err)
		}
		a.DiskIOPS, a.DiskBPS = q.DiskIOPS, q.DiskBPS
	}
	// 4. Memory given: the limit is up already. How soon the guest takes
	// it is its business (and harmless to the host); the wait is only
	// to log it.
	if grow {
		if err := setBalloon(ctx, c, target); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		a.Memory = q.Memory
		if got, err := waitBalloon(ctx, c, target, balloonGrowWait); err != nil {
			v.log.Warn("the guest has not taken its memory back yet", "target", q.Memory, "actual", model.ByteSize(got), "err", err)
		} else {
			v.log.Info("memory given", "from", model.ByteSize(actual), "to", model.ByteSize(got))
		}
	}
	// 5. The disk, last: it cannot be undone.
	if want := roundSector(int64(q.Disk)); want > disk {
		if err := c.Execute(ctx, "block_resize", map[string]any{"device": rootDrive, "size": want}, nil); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		a.Disk = q.Disk
		v.log.Info("disk grown", "from", model.ByteSize(disk), "to", model.ByteSize(want))
		if err := d.growGuestFS(ctx, id, v, want); err != nil {
			return fmt.Errorf("disk grown to %s, but not the guest's filesystem: %w", model.ByteSize(want), err)
		}
	}
	a.Disk = q.Disk // also when not grown: a quantum below MinDisk
	done = true
	return nil
}

// withSavedRAM returns spec, which resumes a guest saved with old, with
// old's RAM (-m): the saved memory only loads into the same RAM, and the
// caller's MaxMemory may not say it (a guest started without MaxMemory
// whose balloon Resize moved down has more RAM than its memory).
func withSavedRAM(spec, old hypervisor.InstanceSpec) hypervisor.InstanceSpec {
	spec.MaxMemory = ramSize(old)
	return spec
}

// throttleArgs are block_set_io_throttle's arguments for q's caps on the
// root drive: the totals as the -drive's throttling.* options set them at
// start; 0 is no cap, and all 0 remove throttling.
func throttleArgs(q model.Quantum) map[string]any {
	return map[string]any{
		"device": rootDrive,
		"iops":   q.DiskIOPS, "iops_rd": 0, "iops_wr": 0,
		"bps": int64(q.DiskBPS), "bps_rd": 0, "bps_wr": 0,
	}
}

// queryBalloon returns the guest's memory as its balloon leaves it (RAM
// less what the balloon holds), in bytes.
func queryBalloon(ctx context.Context, c *qmpClient) (int64, error) {
	var r struct {
		Actual int64 `json:"actual"`
	}
	if err := c.Execute(ctx, "query-balloon", nil, &r); err != nil {
		return 0, fmt.Errorf("balloon: %w", err)
	}
	return r.Actual, nil
}

// setBalloon sets the balloon's target: the memory the guest is to have.
func setBalloon(ctx context.Context, c *qmpClient, target int64) error {
	if err := c.Execute(ctx, "balloon", map[string]any{"value": target}, nil); err != nil {
		return fmt.Errorf("balloon to %s: %w", model.ByteSize(target), err)
	}
	return nil
}

// canGiveBack says whether a guest with avail bytes of memory available
// (MemAvailable: free, and page cache and slab it can reclaim) can shrink
// from actual to target and keep free at least minGuestFree(target).
func canGiveBack(avail, actual, target int64) error {
	give := actual - target
	keep := minGuestFree(target)
	if avail-give >= keep {
		return nil
	}
	return fmt.Errorf("%w: memory %s: the guest has %s available of its %s; giving %s back would leave it %s, under the %s it keeps free: free memory in the guest first, or give it less memory with a restart (stop and start)",
		hypervisor.ErrNotInPlace, model.ByteSize(target), model.ByteSize(max(avail, 0)), model.ByteSize(actual),
		model.ByteSize(give), model.ByteSize(max(avail-give, 0)), model.ByteSize(keep))
}

// minGuestFree is what a guest of target bytes keeps available after a
// shrink: an eighth of it, at least 32 MiB.
func minGuestFree(target int64) int64 { return max(target/8, 32<<20) }

// balloonPath is the balloon device's QOM path (its -device id).
const balloonPath = "/machine/peripheral/" + balloonID

// statsTimeout bounds the wait for fresh memory statistics from the guest.
const statsTimeout = 5 * time.Second

// guestAvailable asks the guest's balloon driver for its memory
// statistics and returns its available memory (MemAvailable) in bytes.
// QEMU polls the guest for them once its guest-stats-polling-interval is
// set; the driver sets it to a second, waits for statistics newer than
// the call, and turns the polling off again.
func guestAvailable(ctx context.Context, c *qmpClient) (int64, error) {
	since := time.Now().Unix()
	set := func(ctx context.Context, seconds int) error {
		return c.Execute(ctx, "qom-set", map[string]any{"path": balloonPath, "property": "guest-stats-polling-interval", "value": seconds}, nil)
	}
	if err := set(ctx, 1); err != nil {
		return 0, fmt.Errorf("ask the guest for memory statistics: %w", err)
	}
	// Left on, it would only cost the guest a little work every second.
	defer func() { _ = set(context.WithoutCancel(ctx), 0) }()
	deadline := time.Now().Add(statsTimeout)
	for {
		var r struct {
			Stats      map[string]int64 `json:"stats"`
			LastUpdate int64            `json:"last-update"`
		}
		if err := c.Execute(ctx, "qom-get", map[string]any{"path": balloonPath, "property": "guest-stats"}, &r); err != nil {
			return 0, fmt.Errorf("the guest's memory statistics: %w", err)
		}
		if r.LastUpdate > since {
			if a, ok := r.Stats["stat-available-memory"]; ok && a >= 0 {
				return a, nil
			}
			// Kernels before 4.6 report no MemAvailable.
			free, caches := r.Stats["stat-free-memory"], r.Stats["stat-disk-caches"]
			if free < 0 {
				return 0, errors.New("the guest's balloon driver reports no free memory")
			}
			return free + max(caches, 0), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the guest's balloon driver sent no memory statistics within %s (no balloon driver?)", statsTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// balloonAt reports whether the guest's memory, actual, has reached
// target: it gets there to within a balloon page above.
func balloonAt(actual, target int64) bool {
	return actual >= target && actual < target+balloonPage
}

// waitBalloon waits until the guest's memory has reached target, at most
// timeout, and returns it as it last saw it.
func waitBalloon(ctx context.Context, c *qmpClient, target int64, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		actual, err := queryBalloon(ctx, c)
		if err != nil || balloonAt(actual, target) {
			return actual, err
		}
		if time.Now().After(deadline) {
			return actual, fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return actual, ctx.Err()
		case <-time.After(balloonPoll):
		}
	}
}

// startBalloon sets the balloon of a guest just started to its quantum's
// memory when that is less than its RAM (a MaxMemory above it). The
// guest's balloon driver takes the rest as soon as it loads, early in the
// boot. On failure the process is ended: its guest could use more
// memory than its cgroup's limit allows for.
func (d *Driver) startBalloon(ctx context.Context, v *vm, spec hypervisor.InstanceSpec) error {
	if spec.Quantum.Memory >= ramSize(spec) {
		return nil
	}
	c, err := v.qmpClient(ctx)
	if err == nil {
		err = setBalloon(ctx, c, int64(spec.Quantum.Memory))
	}
	if err != nil {
		err = fmt.Errorf("hold the guest to its memory: %w", err)
		v.setStopReason("start failed: " + err.Error())
		_ = kill(v.pid, v.marker())
		waitGone(v.pid, v.marker(), 5*time.Second, nil)
		d.finish(v)
		<-v.done
		return err
	}
	return nil
}

// guestAgentWait is how often growGuestFS looks again for a guest agent
// that has not connected.
const guestAgentWait = 200 * time.Millisecond

// growGuestFS has the guest agent grow the root filesystem to the disk's
// new size (size bytes) and checks what it says. A guest still booting is
// waited for (its agent also grows the filesystem at start); a guest
// without the vgrid guest agent (a cloud image: cloud-init grows the
// filesystem at its next boot) is left alone.
func (d *Driver) growGuestFS(ctx context.Context, id string, v *vm, size int64) error {
	ctx, cancel := context.WithTimeout(ctx, growFSTimeout)
	defer cancel()
	for {
		g := v.guestInfo()
		if g != nil && g.Agent == cloudInitAgent {
			v.log.Info("the guest has no vgrid guest agent: its filesystem grows at its next boot (cloud-init)")
			return nil
		}
		if g != nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the guest agent did not connect within %s (it grows the filesystem when it starts): %w", growFSTimeout, ctx.Err())
		case <-time.After(guestAgentWait):
		}
	}
	var stdout, stderr bytes.Buffer
	argv := []string{proto.AgentPath, "-" + proto.GrowFSFlag + "=" + strconv.FormatInt(size, 10),
		"-" + proto.GrowFSWaitFlag + "=" + (growFSTimeout / 2).String()}
	res, err := d.Exec(ctx, id, hypervisor.ExecRequest{Argv: argv, Timeout: growFSTimeout}, func(stream string, b []byte) error {
		if stream == hypervisor.StreamStdout {
			stdout.Write(b)
		} else {
			stderr.Write(b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		msg := strings.TrimSpace(stderr.String() + " " + res.Message)
		if res.ExitCode == 2 {
			msg = "the guest agent is too old to grow it (it grows it at the next boot): " + msg
		}
		return fmt.Errorf("exit %d: %s", res.ExitCode, msg)
	}
	var out proto.GrowFSResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &out); err != nil {
		return fmt.Errorf("the guest agent's answer %q: %w", stdout.String(), err)
	}
	if out.DiskBytes < size {
		return fmt.Errorf("the guest sees its disk at %s, not %s", model.ByteSize(out.DiskBytes), model.ByteSize(size))
	}
	v.log.Info("guest filesystem grown", "disk", model.ByteSize(out.DiskBytes), "filesystem", model.ByteSize(out.FSBytes), "by_this_call", out.Grown)
	return nil
}

// cloudInitAgent is the GuestInfo.Agent of a guest reported by the
// vendor-data reporter (seed.go) rather than the vgrid guest agent.
const cloudInitAgent = "cloud-init"
