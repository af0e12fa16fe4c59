package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vgrid/internal/hypervisor"
)

// Crash safety of suspend and resume.
//
// A suspend or a resume is a series of QMP commands, and the agent may die
// (kill -9) anywhere in it while QEMU lives on: a save interrupted after
// "stop" left the guest paused for ever. So each writes an intent,
// StateDir/<id>/intent.json, before it changes anything, and removes it
// once done or undone. Every operation holds the instance's lock from
// before it writes its intent until it has removed it, so an intent found
// under the lock was left by a driver that died. recoverOp settles it; New
// runs it on every instance (adoption), and Start, Suspend and Stop run it
// first:
//
//   - suspending, QEMU alive: the suspend is undone. A migration still
//     under way is cancelled, the file descriptor QEMU was handed is
//     closed, the guest is continued (after a completed migration, cont
//     also takes the disk back), and the state files go (memory.state.tmp,
//     and memory.state if the save was renamed into place but never
//     recorded). The guest runs on; an agent that still wants it suspended
//     suspends it again. Undoing works at whatever point the save was;
//     finishing would need a completed migration, and redoing the fsync,
//     the rename and the quit of a driver that died at an unknown point.
//   - suspending, QEMU gone: if memory.state is there, the save was
//     complete (it is renamed into place only after QEMU said completed)
//     and the guest was not continued after it (only quit follows the
//     rename): the suspension is recorded, finished. Otherwise the
//     instance is stopped, with its disk.
//
// The state file is fsynced after Suspend returns (syncSaved), not before
// the rename: an agent's death leaves the page cache, and the file in
// it, whole. A host crash does not: a recorded suspension carries the
// boot it was saved on, and one that was neither fsynced nor saved on
// this boot is discarded (checkSaved, run by recoverOp whenever no
// process runs): the instance is stopped, with its disk, which stop
// flushed before the save.
//   - resuming, QEMU alive and still inmigrate (the state not loaded): it
//     is killed (it never ran the guest, and opened the disk inactive), and
//     the instance is suspended again, on the same file.
//   - resuming, QEMU alive and the state loaded (paused) or the guest
//     running: the resume is finished (cont, the spent file removed).
//   - resuming, QEMU gone: suspended again on memory.state, unless cont may
//     have been sent (the intent's phase says so): the guest may then have
//     written its disk, which no longer matches the saved memory, so the
//     file is discarded and the instance is stopped.
//
// Whatever the intent, a live QEMU found not running its guest (paused,
// postmigrate) while no operation is under way is continued (unpause), by
// New and by Start; one waiting for an incoming state nobody will send is
// killed. A guest is never left paused.

// Intent operations and phases.
const (
	opSuspend = "suspending"
	opResume  = "resuming"
	// phaseCont: the resume may have sent cont; the saved state is spent.
	phaseCont = "continuing"
)

// intent is intent.json: a suspend or resume under way.
type intent struct {
	Op    string    `json:"op"`
	Phase string    `json:"phase,omitempty"`
	At    time.Time `json:"at"`
	// PID is the QEMU being saved (suspending).
	PID int `json:"pid,omitempty"`
	// Spec is what the guest being saved was started with (suspending).
	Spec *hypervisor.InstanceSpec `json:"spec,omitempty"`
	// Saved is the suspension being resumed (resuming), to record again
	// if the resume is undone.
	Saved *savedState `json:"saved,omitempty"`
	// BootID is the host's boot when a suspend began (suspending): the
	// state file it renames into place is fsynced only afterwards, so on
	// another boot it is not trusted (savedTrusted).
	BootID string `json:"boot_id,omitempty"`
}

// readIntent returns the instance's intent; nil when there is none.
func readIntent(p Paths) (*intent, error) {
	var it intent
	err := readJSON(p.Intent, &it)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &it, nil
}

// writeIntent records an operation before it starts. It is not fsynced:
// it guards against the agent's death; a host crash ends QEMU too, and
// what is left then is settled as for a QEMU gone.
func writeIntent(p Paths, it *intent) error { return writeJSON(p.Intent, it) }

func (d *Driver) clearIntent(id string, p Paths) { d.remove(id, p.Intent) }

// remove removes a file, logging a failure other than its absence.
func (d *Driver) remove(id, path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("remove", "instance", id, "path", path, "err", err)
	}
}

// crashPoint, if set (tests only), is called at named points of Suspend
// and of a resume; a test blocks there and kills the process, as the
// agent dying at that point.
var crashPoint func(name string)

func atPoint(name string) {
	if crashPoint != nil {
		crashPoint(name)
	}
}

// adoptTimeout bounds the settling of one instance by New.
const adoptTimeout = 30 * time.Second

// adopt settles what earlier drivers left half-done, for every instance
// in StateDir (New calls it before anything else can run).
func (d *Driver) adopt() {
	entries, err := os.ReadDir(d.opts.StateDir)
	if err != nil {
		d.log.Warn("adopt", "err", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !hypervisor.ValidID(e.Name()) {
			continue
		}
		id := e.Name()
		ctx, cancel := context.WithTimeout(d.ctx, adoptTimeout)
		unlock := d.locks.Lock(id)
		p := d.paths(id)
		d.recoverOp(ctx, id, p, true)
		// A spent state whose background removal (removeSpent) died
		// with the driver.
		d.remove(id, filepath.Join(p.Dir, spentFile))
		unlock()
		cancel()
	}
}

// recoverOp settles an operation an earlier driver left half-done (see
// above), and with unpause continues a live guest that is not running.
// An instance without a process whose saved state is not known to be on
// disk is checked (checkSaved). The caller holds the instance's lock.
// Failures are logged; the intent stays for the next try.
func (d *Driver) recoverOp(ctx context.Context, id string, p Paths, unpause bool) {
	d.recoverIntent(ctx, id, p, unpause)
	if !alive(readPID(p.PIDFile), marker(p)) {
		d.checkSaved(id, p)
	}
}

func (d *Driver) recoverIntent(ctx context.Context, id string, p Paths, unpause bool) {
	// No save is under way: a partial one is left over.
	d.remove(id, memStatePath(p)+".tmp")
	it, err := readIntent(p)
	if err != nil {
		d.log.Warn("unreadable intent removed", "instance", id, "err", err)
		d.clearIntent(id, p)
		it = nil
	}
	pid := readPID(p.PIDFile)
	live := alive(pid, marker(p))
	if it != nil {
		switch {
		case it.Op == opSuspend && (!live || it.PID == pid):
			d.recoverSuspend(ctx, id, p, it, pid, live)
			return
		case it.Op == opResume:
			d.recoverResume(ctx, id, p, it, pid, live)
			return
		case it.Op == opMigrate:
			d.recoverMigrate(ctx, id, p, it, pid, live) // migrate.go
			return
		}
		// A suspend of an earlier process, or an unknown operation.
		d.clearIntent(id, p)
	}
	// A QEMU waiting for an incoming migration (migrate.go) waits on.
	if live && unpause && !hasIncoming(p) {
		if _, err := d.unpause(ctx, id, p, pid); err != nil {
			d.log.Warn("check that the guest runs", "instance", id, "err", err)
		}
	}
}

// migrating reports whether a migration in status s is under way.
func migrating(s string) bool {
	switch s {
	case "setup", "active", "pre-switchover", "device", "wait-unplug", "cancelling",
		"postcopy-active", "postcopy-paused", "postcopy-recover":
		return true
	}
	return false
}

// unpause makes the live QEMU pid, which no operation uses, run its guest:
// a save under way is cancelled and the guest continued. A QEMU waiting
// for an incoming state is killed instead (nobody will send it). It
// returns whether the process still runs.
func (d *Driver) unpause(ctx context.Context, id string, p Paths, pid int) (bool, error) {
	v := d.watchPID(id, p, pid)
	c, err := v.qmpClient(ctx)
	if err != nil {
		return true, err
	}
	var status, mig struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &status); err != nil {
		return true, err
	}
	if status.Status == "running" {
		return true, nil
	}
	if status.Status == "inmigrate" {
		v.log.Warn("killing a qemu left waiting for a saved state that nobody sends")
		v.setStopReason("resume interrupted: qemu was left waiting for the saved state")
		m := marker(p)
		if err := kill(pid, m); err != nil {
			return true, err
		}
		if !waitGone(pid, m, 5*time.Second, nil) {
			return true, fmt.Errorf("qemu %d survived SIGKILL", pid)
		}
		d.finish(v)
		<-v.done
		return false, nil
	}
	if err := c.Execute(ctx, "query-migrate", nil, &mig); err != nil {
		return true, err
	}
	if migrating(mig.Status) {
		_ = c.Execute(ctx, "migrate_cancel", nil, nil)
		for deadline := time.Now().Add(5 * time.Second); migrating(mig.Status); {
			if time.Now().After(deadline) {
				return true, fmt.Errorf("migration still %s after migrate_cancel", mig.Status)
			}
			select {
			case <-ctx.Done():
				return true, ctx.Err()
			case <-time.After(migratePoll):
			}
			if err := c.Execute(ctx, "query-migrate", nil, &mig); err != nil {
				return true, err
			}
		}
	}
	// Handed over by a save that never began migrating; absent otherwise.
	_ = c.Execute(ctx, "closefd", map[string]any{"fdname": stateFDName}, nil)
	switch status.Status {
	case "paused", "postmigrate", "finish-migrate", "io-error":
	default:
		// shutdown, guest-panicked, suspended (ACPI S3), internal-error:
		// not something cont fixes.
		return true, fmt.Errorf("the guest is %s; not continued", status.Status)
	}
	// A migration that ended a moment ago may not be finalized yet (its
	// thread still winding down): QEMU refuses cont until it is.
	for deadline := time.Now().Add(5 * time.Second); ; {
		err := c.Execute(ctx, "cont", nil, nil)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "not finalized") || time.Now().After(deadline) {
			return true, err
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-time.After(migratePoll):
		}
	}
	v.log.Warn("continued a guest left paused", "status", status.Status, "migration", mig.Status)
	d.changes.Notify(id)
	return true, nil
}

// recoverSuspend settles an interrupted suspend of the QEMU it.PID.
func (d *Driver) recoverSuspend(ctx context.Context, id string, p Paths, it *intent, pid int, live bool) {
	if live {
		still, err := d.unpause(ctx, id, p, pid)
		if err != nil {
			d.log.Error("undo an interrupted suspend; will try again", "instance", id, "err", err)
			return
		}
		if still {
			// The guest runs on: a save renamed into place but never
			// recorded no longer matches it.
			d.remove(id, memStatePath(p))
			d.clearIntent(id, p)
			d.log.Warn("undid an interrupted suspend: the guest runs on", "instance", id, "since", it.At)
			d.changes.Notify(id)
			return
		}
	}
	d.settle(id, p)
	fi, ferr := os.Stat(memStatePath(p))
	d.exitMu.Lock()
	st, err := readState(p)
	switch {
	case err != nil:
		d.log.Error("settle an interrupted suspend", "instance", id, "err", err)
	case st.Suspended != nil:
		// Recorded before the driver died.
	case ferr == nil:
		// Renamed into place once complete, fsynced later: on another
		// boot than it.BootID, checkSaved discards it.
		st.Suspended = &savedState{At: fi.ModTime(), Bytes: fi.Size(), Duration: max(0, fi.ModTime().Sub(it.At)), Spec: it.Spec, BootID: it.BootID}
		st.ExitReason = "suspended"
		if err = writeJSON(p.State, st); err != nil {
			d.log.Error("record an interrupted suspend", "instance", id, "err", err)
			d.remove(id, memStatePath(p)) // unrecorded, it would never be resumed
		} else {
			d.log.Warn("finished an interrupted suspend: the state was saved", "instance", id, "bytes", fi.Size())
		}
	default:
		d.log.Warn("an interrupted suspend saved nothing: the instance is stopped", "instance", id, "reason", st.ExitReason)
	}
	d.exitMu.Unlock()
	d.clearIntent(id, p)
	d.changes.Notify(id)
}

// recoverResume settles an interrupted resume.
func (d *Driver) recoverResume(ctx context.Context, id string, p Paths, it *intent, pid int, live bool) {
	if live {
		v := d.watchPID(id, p, pid)
		var status struct {
			Status string `json:"status"`
		}
		c, err := v.qmpClient(ctx)
		if err == nil {
			err = c.Execute(ctx, "query-status", nil, &status)
		}
		if err != nil {
			d.log.Error("settle an interrupted resume; will try again", "instance", id, "err", err)
			return
		}
		if status.Status != "inmigrate" {
			// The state is loaded (paused) or the guest was continued.
			// Either way it runs in its group under its quantum's cap
			// (restore joins it while it loads).
			if err := d.confine(id, p, pid); err != nil {
				d.log.Error("finish an interrupted resume; will try again", "instance", id, "err", err)
				return
			}
			if status.Status != "running" {
				if err := c.Execute(ctx, "cont", nil, nil); err != nil {
					d.log.Error("finish an interrupted resume; will try again", "instance", id, "err", err)
					return
				}
			}
			d.remove(id, memStatePath(p))
			d.clearIntent(id, p)
			d.log.Warn("finished an interrupted resume: the guest runs on", "instance", id, "status", status.Status)
			d.changes.Notify(id)
			return
		}
		// Not loaded: this process never ran the guest.
		v.setStopReason("resume interrupted")
		m := marker(p)
		_ = kill(pid, m)
		if !waitGone(pid, m, 5*time.Second, nil) {
			d.log.Error("settle an interrupted resume: qemu survived SIGKILL; will try again", "instance", id, "pid", pid)
			return
		}
		d.finish(v)
		<-v.done
	}
	d.settle(id, p)
	_, ferr := os.Stat(memStatePath(p))
	d.exitMu.Lock()
	st, err := readState(p)
	if err == nil {
		if it.Phase == phaseCont || it.Saved == nil || ferr != nil {
			d.remove(id, memStatePath(p))
			st.Suspended = nil
			st.ExitReason = "resume interrupted after the guest may have run; its saved state was discarded"
			if ferr != nil || it.Saved == nil {
				st.ExitReason = "resume interrupted, and no saved state is left"
			}
			d.log.Warn("an interrupted resume left the instance stopped", "instance", id, "reason", st.ExitReason)
		} else {
			st.Suspended = it.Saved
			st.ExitReason = "resume interrupted; still suspended"
			d.log.Warn("undid an interrupted resume: the instance is suspended again", "instance", id)
		}
		err = writeJSON(p.State, st)
	}
	if err != nil {
		d.log.Error("record an interrupted resume", "instance", id, "err", err)
	}
	d.exitMu.Unlock()
	d.clearIntent(id, p)
	d.changes.Notify(id)
}

// specAccel reads the spec of the instance at p and the accelerator its
// QEMU runs under (its state's, else the spec's or the driver's).
func (d *Driver) specAccel(p Paths) (hypervisor.InstanceSpec, string, error) {
	spec, err := readSpec(p)
	if err != nil {
		return spec, "", err
	}
	accel := d.accelFor(spec)
	if st, err := readState(p); err == nil && st.Accel != "" {
		accel = st.Accel
	}
	return spec, accel, nil
}

// confine puts the live QEMU pid of the instance into its group, with its
// quantum's limits.
func (d *Driver) confine(id string, p Paths, pid int) error {
	spec, accel, err := d.specAccel(p)
	if err != nil {
		return err
	}
	l := d.limits(accel, spec.Quantum)
	g, err := d.cg.Load(d.opts.CgroupParent, id)
	if err != nil {
		g, err = d.cg.New(d.opts.CgroupParent, id, l)
	}
	if err != nil {
		return err
	}
	if err := g.Join(pid); err != nil {
		return err
	}
	return g.Update(l)
}
