package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/hypervisor"
)

// Suspend and resume.
//
// Suspend saves a guest with QEMU's migration into a file: QMP stop, the
// bandwidth cap lifted, getfd hands QEMU an open memory.state.tmp (over
// the QMP socket, SCM_RIGHTS), migrate to "fd:", query-migrate polled
// until completed, then quit. QEMU 7.2 has no "file:" migration URI, and
// "exec:cat > FILE" could report completion while cat still writes the
// last bytes; with the file descriptor, QEMU's own writes are done when it
// says completed, and the driver fsyncs and renames the file into place.
// The migration's completion also flushes the disk, so disk and state
// agree. Only once the process is gone is the suspension written to
// state.json. Before the first QMP command that changes anything, an
// intent (intent.json) is written and it is removed at the end: should
// the agent die in between, the next driver undoes the suspend (the guest
// continues) or, if QEMU already quit after the save, finishes it
// (intent.go).
//
// Resume launches QEMU like a boot, same argv (it must describe the same
// machine), plus "-incoming defer", then hands it the file the same way
// (getfd, migrate-incoming "fd:"), waits for the status to leave
// inmigrate (paused: the guest was stopped when saved) and sends cont.
// The saved state is deleted once the guest runs. A resume writes an
// intent too: a driver that died before cont leaves an instance that the
// next one makes suspended again, one after cont a running guest whose
// resume it finishes (intent.go). The guest agent sends
// "ready" only at boot; the driver's watcher connects to the new
// process's agent socket and asks for facts, so Guest is reported again,
// with an uptime that continues from before the suspension.

const (
	memStateFile = "memory.state"
	// stateFDName names the file descriptor handed to QEMU by getfd.
	stateFDName = "vgrid-state"
	// suspendBandwidth lifts the migration bandwidth cap (128 MiB/s by
	// default in QEMU 7.2): the guest is stopped, so the save may go as
	// fast as the disk takes it.
	suspendBandwidth = 64 << 30 // bytes/s
	// migratePoll is how often query-migrate and query-status are polled.
	migratePoll = 10 * time.Millisecond
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
	if err := writeIntent(p, &intent{Op: opSuspend, At: start, PID: pid, Spec: &spec}); err != nil {
		return hypervisor.SuspendResult{}, err
	}
	defer d.clearIntent(id, p)
	path := memStatePath(p)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return hypervisor.SuspendResult{}, err
	}
	saved := false
	defer func() {
		f.Close()
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
		migrated, err = waitMigrated(ctx, c, pid, m)
	}
	if err == nil {
		atPoint("suspend-migrated")
	}
	synced := time.Now()
	if err == nil {
		err = f.Sync()
	}
	fsync := time.Since(synced)
	if err != nil {
		undo()
		return hypervisor.SuspendResult{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		undo()
		return hypervisor.SuspendResult{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		undo()
		return hypervisor.SuspendResult{}, err
	}
	saved = true
	syncDir(p.Dir)
	saveTime := time.Since(start)
	atPoint("suspend-saved")

	// The state is saved and the disk flushed: end the process.
	v.setStopReason("suspended")
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
	d.finish(v)
	<-v.done
	atPoint("suspend-exited")

	rec := &savedState{At: time.Now(), Bytes: fi.Size(), Duration: time.Since(start), Spec: &spec}
	d.exitMu.Lock()
	st, err := readState(p)
	if err == nil {
		st.Suspended = rec
		err = writeJSON(p.State, st)
	}
	d.exitMu.Unlock()
	if err != nil {
		// Unrecorded, the file would never be resumed from.
		os.Remove(path)
		return hypervisor.SuspendResult{}, fmt.Errorf("record suspension: %w", err)
	}
	v.log.Info("suspended", "bytes", rec.Bytes, "stop", stopped.Round(time.Millisecond), "migration", migrated, "fsync", fsync.Round(time.Millisecond),
		"saved_after", saveTime.Round(time.Millisecond), "total", rec.Duration.Round(time.Millisecond))
	d.changes.Notify(id)
	return *rec.result(), nil
}

// waitMigrated polls query-migrate until the outgoing migration
// completed, and returns how long QEMU says it took.
func waitMigrated(ctx context.Context, c *qmpClient, pid int, m string) (time.Duration, error) {
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
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(migratePoll):
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
	return nil
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
	cg, err := d.cg.New(d.opts.CgroupParent, id, d.limits(accel, spec.Quantum))
	if err != nil {
		return nil, false, err
	}
	pid, startedAt, err := d.launch(ctx, spec, p, accel, cg, "-incoming", "defer")
	launched := time.Now()
	if err != nil {
		if derr := cg.Delete(); derr != nil {
			d.log.Warn("remove cgroup", "instance", id, "err", derr)
		}
		return nil, false, err
	}
	// From here until cont the state file is not spent: should the driver
	// die now, the next one finds the intent, kills this process and
	// records the instance suspended again (intent.go).
	if err := writeJSON(p.State, runState{Accel: accel, PID: pid, StartedAt: startedAt}); err != nil {
		d.log.Error("record start", "instance", id, "err", err)
	}
	m := marker(p)
	v := d.watchPID(id, p, pid)
	fail := func(err error) (*savedState, bool, error) {
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
	err = c.ExecuteFD(ctx, "getfd", map[string]any{"fdname": stateFDName}, nil, int(f.Fd()))
	if err == nil {
		err = c.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + stateFDName}, nil)
	}
	if err == nil {
		err = waitIncoming(ctx, c, pid, m, p)
	}
	if err == nil {
		atPoint("resume-loaded")
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
	// The guest runs on: its saved state is spent.
	if err := os.Remove(memStatePath(p)); err != nil {
		d.log.Warn("remove saved state", "instance", id, "err", err)
	}
	return rec, false, nil
}

// waitIncoming polls query-status until the incoming migration is loaded.
// QEMU exits if the state cannot be loaded.
func waitIncoming(ctx context.Context, c *qmpClient, pid int, m string, p Paths) error {
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(migratePoll):
		}
	}
}

// discardSaved forgets the saved state of an instance without a process
// (Stop of a suspended instance), and removes state files left over.
func (d *Driver) discardSaved(id string, p Paths) {
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
