package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// Suspend and resume.
//
// Suspend saves a guest with QEMU's migration into a file: QMP stop, the
// bandwidth cap lifted, MIGRATION events asked for, getfd hands QEMU an
// open memory.state.tmp (over the QMP socket, SCM_RIGHTS), migrate to
// "fd:", query-migrate asked at each MIGRATION event until completed,
// then quit. QEMU 7.2 has no "file:" migration URI, and "exec:cat > FILE"
// could report completion while cat still writes the last bytes; with the
// file descriptor, QEMU's own writes are done when it says completed, and
// the driver renames the file into place. The migration's completion also
// flushes the disk, so disk and state agree. Only once the process is gone
// is the suspension written to state.json (with the exit, by finish).
// Suspend returns then: the state file is fsynced later, in the background
// (syncSaved), and not at all if a resume spends it first; a host that
// restarts before is told by its boot ID and discards the state (intent.go).
// Before the first QMP command that changes anything, an intent
// (intent.json) is written and it is removed at the end: should the agent
// die in between, the next driver undoes the suspend (the guest continues)
// or, if QEMU already quit after the save, finishes it (intent.go).
//
// Resume launches QEMU like a boot, same argv (it must describe the same
// machine), plus "-incoming defer", then hands it the file the same way
// (getfd, migrate-incoming "fd:"), waits for the status to leave
// inmigrate (paused: the guest was stopped when saved; QEMU's MIGRATION
// event "completed" comes once it has) and sends cont. The spent state is
// then renamed aside and removed in the background. A resume writes an
// intent too: a driver that died before cont leaves an instance that the
// next one makes suspended again, one after cont a running guest whose
// resume it finishes (intent.go). The guest agent sends
// "ready" only at boot; the driver's watcher connects to the new
// process's agent socket and asks for facts, so Guest is reported again,
// with an uptime that continues from before the suspension.
//
// Where the time goes (bench/suspendresume, docs/benchmarks.md): the
// migration itself and QEMU's start; the driver adds no fixed waits: the
// process's end is seen through a pidfd (then its last threads, which must
// leave the cgroup before it goes), the migration's through its events.

const (
	memStateFile = "memory.state"
	// stateFDName names the file descriptor handed to QEMU by getfd.
	stateFDName = "vgrid-state"
	// suspendBandwidth lifts the migration bandwidth cap (128 MiB/s by
	// default in QEMU 7.2): the guest is stopped, so the save may go as
	// fast as the disk takes it.
	suspendBandwidth = 64 << 30 // bytes/s
	// migratePoll is how often query-migrate is polled after a
	// migrate_cancel (intent.go).
	migratePoll = 10 * time.Millisecond
	// migrateFallbackPoll is how often a save or a restore asks QEMU how
	// it goes if no MIGRATION event came.
	migrateFallbackPoll = 100 * time.Millisecond
	// quitTimeout is how long QEMU has to exit after quit.
	quitTimeout = 10 * time.Second
)

// savedState is a saved guest (runState.Suspended) or how the last resume
// went (runState.LastResume).
type savedState struct {
	At       time.Time     `json:"at"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration_ns"`
	// Spec is what the saved guest was started with: a resume needs the
	// same machine, whatever Resize wrote into spec.json since.
	Spec *hypervisor.InstanceSpec `json:"spec,omitempty"`
	// BootID is the host's boot (/proc/sys/kernel/random/boot_id) when
	// the state was saved, and Synced says that the file has since been
	// fsynced (syncSaved). An unsynced file of another boot may have lost
	// its tail in a host crash: it is not resumed from (checkSaved).
	BootID string `json:"boot_id,omitempty"`
	Synced bool   `json:"synced,omitempty"`
}

func (s *savedState) result() *hypervisor.SuspendResult {
	if s == nil {
		return nil
	}
	return &hypervisor.SuspendResult{Bytes: s.Bytes, Duration: s.Duration}
}

// memStatePath is where a suspended instance's state is saved.
func memStatePath(p Paths) string { return filepath.Join(p.Dir, memStateFile) }

// suspendedState returns the instance's run state and whether it is
// suspended: recorded so, with its state file present. The caller has
// checked that no process runs.
func suspendedState(p Paths) (runState, bool) {
	st, err := readState(p)
	if err != nil || st.Suspended == nil {
		return st, false
	}
	_, err = os.Stat(memStatePath(p))
	return st, err == nil
}

// Suspend implements hypervisor.Driver.
func (d *Driver) Suspend(ctx context.Context, id string) (hypervisor.SuspendResult, error) {
	if !hypervisor.ValidID(id) {
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return hypervisor.SuspendResult{}, ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %s: %w", id, hypervisor.ErrNotFound)
	}
	if d.incomingWaiting(ctx, id, p) {
		return hypervisor.SuspendResult{}, errIncoming("suspend", id) // migrate.go
	}
	d.recoverOp(ctx, id, p, false)
	pid := readPID(p.PIDFile)
	if !alive(pid, marker(p)) {
		d.settle(id, p)
		if st, ok := suspendedState(p); ok {
			return *st.Suspended.result(), nil
		}
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %s: %w", id, hypervisor.ErrNotRunning)
	}
	res, err := d.suspend(ctx, id, p, pid)
	if err != nil {
		return hypervisor.SuspendResult{}, fmt.Errorf("suspend %s: %w", id, err)
	}
	return res, nil
}

func (d *Driver) suspend(ctx context.Context, id string, p Paths, pid int) (hypervisor.SuspendResult, error) {
	start := time.Now()
	m := marker(p)
	spec, err := readSpec(p)
	if err != nil {
		return hypervisor.SuspendResult{}, err
	}
	v := d.watchPID(id, p, pid)
	c, err := v.qmpClient(ctx)
	if err != nil {
		return hypervisor.SuspendResult{}, err
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &status); err != nil {
		return hypervisor.SuspendResult{}, err
	}
	// From here a driver that finds the intent knows this driver died
	// mid-suspend (intent.go).
	if err := writeIntent(p, &intent{Op: opSuspend, At: start, PID: pid, Spec: &spec, BootID: d.bootID}); err != nil {
		return hypervisor.SuspendResult{}, err
	}
	defer d.clearIntent(id, p)
	path := memStatePath(p)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return hypervisor.SuspendResult{}, err
	}
	saved, syncing := false, false
	defer func() {
		if !syncing {
			f.Close()
		}
		if !saved {
			os.Remove(tmp)
		}
	}()

	// stop drains and flushes the disk too (an fsync of the overlay).
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		return hypervisor.SuspendResult{}, err
	}
	stopped := time.Since(start)
	// undo lets a guest that was running run on after a failed save.
	undo := func() {
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Execute(uctx, "migrate_cancel", nil, nil)
		_ = c.Execute(uctx, "closefd", map[string]any{"fdname": stateFDName}, nil) // if migrate did not take it
		if status.Status == "running" {
			if err := c.Execute(uctx, "cont", nil, nil); err != nil {
				v.log.Warn("continue after a failed suspend", "err", err)
			}
		}
	}
	wake := v.migrationEvents(ctx, c)
	err = c.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(suspendBandwidth)}, nil)
	if err == nil {
		err = c.ExecuteFD(ctx, "getfd", map[string]any{"fdname": stateFDName}, nil, int(f.Fd()))
	}
	if err == nil {
		err = c.Execute(ctx, "migrate", map[string]any{"uri": "fd:" + stateFDName}, nil)
	}
	var migrated time.Duration
	if err == nil {
		atPoint("suspend-migrating")
		migrated, err = waitMigrated(ctx, c, pid, m, wake)
	}
	if err == nil {
		atPoint("suspend-migrated")
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	// QEMU's writes are done: the file is complete (in the page cache).
	// It is renamed into place now and fsynced later (syncSaved): a
	// driver that dies from here on finds memory.state and, on the same
	// boot, finishes the suspension (intent.go).
	if err == nil && d.bootID == "" {
		// Without a boot ID a host's restart cannot be told from an
		// agent's: the file is made durable before it counts.
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		undo()
		return hypervisor.SuspendResult{}, err
	}
	saved = true
	saveTime := time.Since(start)
	atPoint("suspend-saved")

	// The state is saved and the disk flushed: end the process. Whoever
	// records its end (finish, here or in the watcher) records the
	// suspension with it.
	v.setStopReason("suspended")
	v.setSuspended(&savedState{Bytes: fi.Size(), Spec: &spec, BootID: d.bootID}, start)
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = c.Execute(qctx, "quit", nil, nil) // the reply may be lost as QEMU exits
	cancel()
	if !waitGone(pid, m, quitTimeout, nil) {
		if err := kill(pid, m); err != nil {
			return hypervisor.SuspendResult{}, fmt.Errorf("kill qemu %d: %w", pid, err)
		}
		if !waitGone(pid, m, 5*time.Second, nil) {
			return hypervisor.SuspendResult{}, fmt.Errorf("qemu %d survived SIGKILL", pid)
		}
	}
	exited := time.Since(start)
	atPoint("suspend-quit")
	d.finish(v)
	<-v.done
	atPoint("suspend-exited")
	st, err := readState(p)
	if err == nil && (st.Suspended == nil || st.PID != pid) {
		err = errors.New("qemu's end was recorded without it")
	}
	if err != nil {
		// Unrecorded, the file would never be resumed from.
		os.Remove(path)
		return hypervisor.SuspendResult{}, fmt.Errorf("record suspension: %w", err)
	}
	syncing = true
	d.syncSaved(id, p, f, st.Suspended.At)
	v.log.Info("suspended", "bytes", st.Suspended.Bytes, "stop", stopped.Round(time.Millisecond), "migration", migrated,
		"saved_after", saveTime.Round(time.Millisecond), "exited_after", exited.Round(time.Millisecond),
		"total", st.Suspended.Duration.Round(time.Millisecond))
	d.changes.Notify(id)
	return *st.Suspended.result(), nil
}

// waitMigrated waits until the outgoing migration completed, and returns
// how long QEMU says it took. It asks query-migrate whenever QEMU sends a
// MIGRATION event (wake; migrationEvents) and, in case one is missed,
// every migrateFallbackPoll.
func waitMigrated(ctx context.Context, c *qmpClient, pid int, m string, wake <-chan struct{}) (time.Duration, error) {
	for {
		var info struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
			TotalMS   int64  `json:"total-time"`
		}
		if err := c.Execute(ctx, "query-migrate", nil, &info); err != nil {
			return 0, err
		}
		switch info.Status {
		case "completed":
			return time.Duration(info.TotalMS) * time.Millisecond, nil
		case "failed", "cancelled", "cancelling":
			if info.ErrorDesc != "" {
				return 0, fmt.Errorf("save failed: %s", info.ErrorDesc)
			}
			return 0, fmt.Errorf("save %s", info.Status)
		}
		if !alive(pid, m) {
			return 0, errors.New("qemu exited while saving")
		}
		if err := waitEvent(ctx, wake); err != nil {
			return 0, err
		}
	}
}

// waitEvent waits for a MIGRATION event, at most migrateFallbackPoll.
func waitEvent(ctx context.Context, wake <-chan struct{}) error {
	t := time.NewTimer(migrateFallbackPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-t.C:
	}
	return nil
}

// syncSaved makes a suspension's state file durable, in the background:
// savedSyncDelay after the suspension, fsync of the file (f, which it
// closes) and of the directory (its rename), then
// runState.Suspended.Synced is set if the suspension at is still the one
// recorded. Until then the file is complete in the page cache only:
// should the host restart first, the next driver finds the suspension
// unsynced and of another boot, and discards it (checkSaved). Suspend
// does not wait for this, and a resume in the meantime cancels it
// (cancelSync): the state it spends need never reach the disk, and the
// writeback would slow the resume (every metadata change on the file
// system waits for the journal commit the fsync forces). Close does not
// cancel it but has it done at once.
func (d *Driver) syncSaved(id string, p Paths, f *os.File, at time.Time) {
	d.mu.Lock()
	if d.syncing[id] != nil {
		d.mu.Unlock()
		f.Close()
		return
	}
	job := &syncJob{cancel: make(chan struct{})}
	d.syncing[id] = job
	// Under d.mu, as in watchPID: no Add once Close waits.
	if d.ctx.Err() != nil {
		delete(d.syncing, id)
		d.mu.Unlock()
		if err := f.Sync(); err == nil {
			syncDir(p.Dir)
		}
		f.Close()
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		defer f.Close()
		defer func() {
			d.mu.Lock()
			if d.syncing[id] == job {
				delete(d.syncing, id)
			}
			d.mu.Unlock()
		}()
		t := time.NewTimer(savedSyncDelay)
		defer t.Stop()
		select {
		case <-job.cancel:
			return
		case <-t.C:
		case <-d.ctx.Done():
		}
		start := time.Now()
		err := f.Sync()
		if err != nil {
			// Left unsynced: a driver on the same boot tries again.
			d.log.Error("fsync the saved state", "instance", id, "err", err)
			return
		}
		syncDir(p.Dir)
		d.exitMu.Lock()
		st, err := readState(p)
		if err == nil && st.Suspended != nil && st.Suspended.At.Equal(at) && !st.Suspended.Synced {
			st.Suspended.Synced = true
			err = writeJSON(p.State, st)
		}
		d.exitMu.Unlock()
		if err != nil {
			d.log.Error("record the saved state synced", "instance", id, "err", err)
			return
		}
		d.log.Debug("saved state on disk", "instance", id, "fsync", time.Since(start).Round(time.Millisecond))
	}()
}

// savedSyncDelay is how long after a suspension its state is fsynced.
const savedSyncDelay = 2 * time.Second

// syncJob is a pending syncSaved.
type syncJob struct {
	cancel chan struct{}
}

// cancelSync cancels the pending syncSaved of id, if it has not begun to
// fsync (the caller holds the instance's lock: its saved state is about
// to be spent or discarded).
func (d *Driver) cancelSync(id string) {
	d.mu.Lock()
	if job := d.syncing[id]; job != nil {
		close(job.cancel)
		delete(d.syncing, id)
	}
	d.mu.Unlock()
}

// savedTrusted says whether a recorded suspension's file can be resumed
// from: it was fsynced, or it was saved on this boot (the page cache
// still holds whatever was not written back), or by a driver that
// fsynced before it recorded (no BootID).
func (d *Driver) savedTrusted(s *savedState) bool {
	return s.Synced || s.BootID == "" || s.BootID == d.bootID
}

// checkSaved settles a recorded suspension whose file is not known to be
// on disk (the caller holds the instance's lock, no process runs): saved
// on another boot, it is discarded (the host restarted before it was
// written back; the disk, flushed by stop, is kept and boots); saved on
// this one, it is fsynced in the background unless that is under way.
func (d *Driver) checkSaved(id string, p Paths) {
	st, ok := suspendedState(p)
	if !ok || st.Suspended.Synced {
		return
	}
	if !d.savedTrusted(st.Suspended) {
		d.remove(id, memStatePath(p))
		d.exitMu.Lock()
		if st, err := readState(p); err == nil && st.Suspended != nil {
			st.Suspended = nil
			st.ExitReason = "the host restarted before the saved state reached the disk: it was discarded (the disk is kept)"
			if err := writeJSON(p.State, st); err != nil {
				d.log.Error("record a lost saved state", "instance", id, "err", err)
			}
		}
		d.exitMu.Unlock()
		d.log.Warn("discarded a saved state that a host restart may have lost", "instance", id)
		d.changes.Notify(id)
		return
	}
	if st.Suspended.BootID == "" {
		return
	}
	f, err := os.Open(memStatePath(p))
	if err != nil {
		return
	}
	d.syncSaved(id, p, f, st.Suspended.At)
}

// migrationEvents asks QEMU for MIGRATION events (the "events"
// migration capability) and returns the channel they wake, emptied.
// Without them the waits fall back to polling.
func (v *vm) migrationEvents(ctx context.Context, c *qmpClient) <-chan struct{} {
	ch := v.migrationWake()
	err := c.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "events", "state": true}}}, nil)
	if err != nil {
		v.log.Debug("no migration events; polling", "err", err)
	}
	for {
		select {
		case <-ch:
		default:
			return ch
		}
	}
}

// resumable says whether a guest saved with old can be restored into a
// process started with spec under accel: the machine must be the same.
func resumable(old, spec hypervisor.InstanceSpec, accel string) error {
	switch {
	case spec.Accel != "" && spec.Accel != accel:
		return fmt.Errorf("%w: suspended under %s, cannot resume under %s", hypervisor.ErrInvalid, accel, spec.Accel)
	case spec.Quantum.VCPUs != old.Quantum.VCPUs || spec.Quantum.Memory != old.Quantum.Memory:
		return fmt.Errorf("%w: suspended with %d vcpus and %s, cannot resume with %d vcpus and %s",
			hypervisor.ErrInvalid, old.Quantum.VCPUs, old.Quantum.Memory, spec.Quantum.VCPUs, spec.Quantum.Memory)
	case spec.Image != old.Image:
		return fmt.Errorf("%w: suspended with image %s, cannot resume with a different one", hypervisor.ErrInvalid, old.Image.Name)
	}
	if err := sameNICs(old.NICs, spec.NICs); err != nil {
		return err
	}
	return hypervisor.SameGuestVolumes(old.Volumes, spec.Volumes)
}

// resume restores a suspended instance (Start calls it under the
// instance's lock). If it fails before the guest runs, the instance stays
// suspended and its ExitReason says why.
func (d *Driver) resume(ctx context.Context, spec hypervisor.InstanceSpec, p Paths, st runState) (hypervisor.Instance, error) {
	id := spec.ID
	old := spec
	if st.Suspended.Spec != nil {
		old = *st.Suspended.Spec
	} else if s, err := readSpec(p); err == nil {
		old = s
	}
	accel := st.Accel
	if accel == "" {
		accel = d.accelFor(old)
	}
	if err := resumable(old, spec, accel); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("resume %s: %w", id, err)
	}
	spec = withSavedRAM(spec, old) // resize.go
	// The state is about to be spent: it need not reach the disk.
	d.cancelSync(id)
	// A driver that finds the intent knows this one died mid-resume
	// (intent.go).
	it := &intent{Op: opResume, At: time.Now(), Saved: st.Suspended}
	if err := writeIntent(p, it); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("resume %s: %w", id, err)
	}
	defer d.clearIntent(id, p)
	rec, spent, err := d.restore(ctx, spec, p, accel, it)
	if err != nil {
		st.ExitReason = "resume failed: " + err.Error()
		if spent {
			// The guest may have run: its disk no longer matches the
			// saved memory.
			d.remove(id, memStatePath(p))
			st.Suspended = nil
			st.ExitReason = "resume failed after cont, so the saved state was discarded: " + err.Error()
		}
		d.exitMu.Lock()
		if werr := writeJSON(p.State, st); werr != nil {
			d.log.Error("record failed resume", "instance", id, "err", werr)
		}
		d.exitMu.Unlock()
		if !spent {
			d.checkSaved(id, p) // still suspended: its sync was cancelled
		}
		d.changes.Notify(id)
		return hypervisor.Instance{}, fmt.Errorf("resume %s: %w", id, err)
	}
	d.log.Info("resumed", "instance", id, "bytes", rec.Bytes, "duration", rec.Duration.Round(time.Millisecond))
	d.changes.Notify(id)
	in, err := d.inspect(id)
	if err != nil {
		return hypervisor.Instance{}, err
	}
	return in, nil
}

// restore runs a new QEMU process on the saved state. spent says, with an
// error, that cont may have been carried out: the saved state no longer
// matches the disk.
func (d *Driver) restore(ctx context.Context, spec hypervisor.InstanceSpec, p Paths, accel string, it *intent) (rec *savedState, spent bool, err error) {
	start := time.Now()
	id := spec.ID
	for _, f := range []string{p.Disk, p.Seed} {
		// A new disk would not be the one the saved guest had mounted.
		if _, err := os.Stat(f); err != nil {
			return nil, false, err
		}
	}
	f, err := os.Open(memStatePath(p))
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	// The CPU cap and I/O limits may have changed; the machine has not.
	if err := writeJSON(p.Spec, spec); err != nil {
		return nil, false, err
	}
	// Until cont the guest does not run: QEMU loads its memory, host work
	// that needs more than a small cap allows (under a cap of 1 core the
	// load of 62 MiB took 50 to 180 ms, against 45 ms with 2). It gets a
	// core per vCPU and one for its main loop (restoreLimits); the
	// quantum's cap is set before cont.
	capped := d.limits(accel, spec.Quantum)
	cg, err := d.cg.New(d.opts.CgroupParent, id, restoreLimits(capped, spec.Quantum))
	if err != nil {
		return nil, false, err
	}
	// QEMU joins its group while it loads the state, not before it
	// starts: under cgroup v1 an attach waits for an RCU grace period
	// (8 to 16 ms here), which would otherwise come before everything
	// else. What it loads before it is in stays counted outside its group
	// (cgroup.Group.Join): up to about a fifth of the saved memory here.
	// The guest runs only once it is in (before cont, and in
	// recoverResume).
	pid, startedAt, err := d.launch(ctx, spec, p, accel, nil, "-incoming", "defer")
	launched := time.Now()
	joined := make(chan error, 1)
	if err == nil {
		go func() { joined <- cg.Join(pid) }()
	}
	if err != nil {
		if derr := cg.Delete(); derr != nil {
			d.log.Warn("remove cgroup", "instance", id, "err", derr)
		}
		return nil, false, err
	}
	// From here until cont the state file is not spent: should the driver
	// die now, the next one finds the intent, kills this process and
	// records the instance suspended again (intent.go).
	d.exitMu.Lock()
	err = writeJSON(p.State, runState{Accel: accel, PID: pid, StartedAt: startedAt})
	d.exitMu.Unlock()
	if err != nil {
		d.log.Error("record start", "instance", id, "err", err)
	}
	m := marker(p)
	v := d.watchPID(id, p, pid)
	joinDone := false
	fail := func(err error) (*savedState, bool, error) {
		if !joinDone {
			<-joined
		}
		v.setStopReason("resume failed")
		_ = kill(pid, m)
		waitGone(pid, m, 5*time.Second, nil)
		d.finish(v)
		<-v.done
		return nil, spent, err
	}
	atPoint("resume-launched")
	c, err := v.qmpClient(ctx)
	if err != nil {
		return fail(err)
	}
	wake := v.migrationEvents(ctx, c)
	err = c.ExecuteFD(ctx, "getfd", map[string]any{"fdname": stateFDName}, nil, int(f.Fd()))
	if err == nil {
		err = c.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + stateFDName}, nil)
	}
	if err == nil {
		err = waitIncoming(ctx, c, pid, m, p, wake)
	}
	if err == nil {
		atPoint("resume-loaded")
		// The guest runs from cont: in its group, under its quantum's cap.
		err, joinDone = <-joined, true
		if err == nil {
			err = cg.Update(capped)
		}
	}
	if err == nil {
		it.Phase = phaseCont
		err = writeIntent(p, it)
	}
	if err != nil {
		return fail(err)
	}
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		// An error reply means cont was refused; anything else (a lost
		// connection, a timeout) leaves it unknown.
		var qe *qmpError
		spent = !errors.As(err, &qe)
		return fail(err)
	}
	rec = &savedState{At: time.Now(), Bytes: fi.Size(), Duration: time.Since(start)}
	v.log.Info("restored", "launch", launched.Sub(start).Round(time.Millisecond), "load_and_cont", time.Since(launched).Round(time.Millisecond))
	d.exitMu.Lock()
	st, err := readState(p)
	if err == nil && st.PID == pid {
		st.LastResume = rec
		err = writeJSON(p.State, st)
	}
	d.exitMu.Unlock()
	if err != nil {
		d.log.Error("record resume", "instance", id, "err", err)
	}
	// The guest runs on: its saved state is spent. Unlinking it can take
	// tens of milliseconds (its pages may still be under writeback), so
	// it is renamed aside and removed in the background; a leftover is
	// removed by recoverOp.
	d.removeSpent(id, p)
	return rec, false, nil
}

// restoreLimits are the limits of a QEMU loading a saved state, before
// its guest runs: the quantum's, with a CPU cap of at least a core per
// vCPU and one more.
func restoreLimits(capped cgroup.Limits, q model.Quantum) cgroup.Limits {
	l := capped
	l.CPUCores = max(l.CPUCores, float64(q.VCPUs+1))
	return l
}

// waitIncoming waits until the incoming migration is loaded: it asks
// query-status whenever a MIGRATION event comes (QEMU sends "completed"
// once the run state is set) and at least every migrateFallbackPoll.
// QEMU exits if the state cannot be loaded.
func waitIncoming(ctx context.Context, c *qmpClient, pid int, m string, p Paths, wake <-chan struct{}) error {
	for {
		if !alive(pid, m) {
			return fmt.Errorf("qemu exited while loading the saved state%s", logTail(p.Log))
		}
		var status struct {
			Status string `json:"status"`
		}
		err := c.Execute(ctx, "query-status", nil, &status)
		if err != nil && alive(pid, m) {
			return err
		}
		switch status.Status {
		case "paused", "running":
			return nil
		case "inmigrate", "":
		default:
			return fmt.Errorf("loading the saved state left qemu %s", status.Status)
		}
		if err := waitEvent(ctx, wake); err != nil {
			return err
		}
	}
}

// spentFile is where a resumed guest's spent state goes until removed.
const spentFile = memStateFile + ".spent"

// removeSpent renames the instance's spent memory.state aside and removes
// it in the background.
func (d *Driver) removeSpent(id string, p Paths) {
	spent := filepath.Join(p.Dir, spentFile)
	if err := os.Rename(memStatePath(p), spent); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("remove saved state", "instance", id, "err", err)
		}
		return
	}
	d.mu.Lock()
	if d.ctx.Err() != nil {
		d.mu.Unlock()
		d.remove(id, spent)
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		d.remove(id, spent)
	}()
}

// discardSaved forgets the saved state of an instance without a process
// (Stop of a suspended instance), and removes state files left over.
func (d *Driver) discardSaved(id string, p Paths) {
	d.cancelSync(id)
	path := memStatePath(p)
	for _, f := range []string{path, path + ".tmp"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("remove saved state", "instance", id, "err", err)
		}
	}
	d.exitMu.Lock()
	st, err := readState(p)
	changed := err == nil && st.Suspended != nil
	if changed {
		st.Suspended = nil
		st.ExitReason = "stopped while suspended; the saved state was discarded"
		err = writeJSON(p.State, st)
	}
	d.exitMu.Unlock()
	if err != nil {
		d.log.Error("record stop", "instance", id, "err", err)
	}
	if changed {
		d.log.Info("discarded saved state", "instance", id)
		d.changes.Notify(id)
	}
}

// syncDir makes a rename in dir durable (best effort).
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		f.Close()
	}
}
