package qemu

// The source side of a live migration (MigrateOut) and the undoing or
// finishing of one a driver left half done; the destination side and the
// design are in migrate.go.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"time"

	"vgrid/internal/cgroup"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// MigrateOut implements hypervisor.Driver (see the top of migrate.go).
// progress is called from MigrateOut's goroutine and must return quickly.
func (d *Driver) MigrateOut(ctx context.Context, id string, to hypervisor.MigrationEndpoint, opt hypervisor.MigrateOptions, progress func(hypervisor.MigrationProgress)) (hypervisor.MigrationResult, error) {
	start := time.Now()
	if !hypervisor.ValidID(id) {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %q: %w", id, hypervisor.ErrNotFound)
	}
	memAddr, nbdHost, nbdPort, export, err := parseEndpoint(to)
	if err != nil {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w", id, err)
	}
	if opt.MaxDowntime < 0 || opt.Bandwidth < 0 {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w: max downtime %s and bandwidth %d must not be negative",
			id, hypervisor.ErrInvalid, opt.MaxDowntime, opt.Bandwidth)
	}
	if !opt.Mode.Valid() {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w: mode %q: want %q or %q", id, hypervisor.ErrInvalid,
			opt.Mode, hypervisor.MigrateLive, hypervisor.MigratePaused)
	}
	if d.closed() {
		return hypervisor.MigrationResult{}, ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w", id, hypervisor.ErrNotFound)
	}
	if st, err := readState(p); err == nil {
		opt.Mode = migrateMode(opt.Mode, st.Accel)
	} else {
		opt.Mode = migrateMode(opt.Mode, d.accel)
	}
	if d.incomingWaiting(ctx, id, p) {
		return hypervisor.MigrationResult{}, errIncoming("migrate", id)
	}
	d.recoverOp(ctx, id, p, true)
	pid := readPID(p.PIDFile)
	if !alive(pid, marker(p)) {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s: %w", id, hypervisor.ErrNotRunning)
	}
	if progress == nil {
		progress = func(hypervisor.MigrationProgress) {}
	}
	m := &migration{d: d, id: id, p: p, pid: pid, start: start, progress: progress, memAddr: memAddr,
		nbdHost: nbdHost, nbdPort: nbdPort, export: export, opt: opt}
	res, err := m.run(ctx)
	if err != nil {
		return hypervisor.MigrationResult{}, fmt.Errorf("migrate %s to %s: %w", id, to.Memory, err)
	}
	return res, nil
}

// migration is one MigrateOut under way.
type migration struct {
	d        *Driver
	id       string
	p        Paths
	pid      int
	start    time.Time
	progress func(hypervisor.MigrationProgress)
	memAddr  string
	nbdHost  string
	nbdPort  string
	export   string
	opt      hypervisor.MigrateOptions

	v    *vm
	c    *qmpClient
	wake <-chan struct{}
	// sent: the migrate command was issued (see migrate).
	sent bool
	// last is the last progress reported, and when.
	last     hypervisor.MigrationProgress
	lastSent time.Time
	// diskBytes is what the mirror copied, as it last said, of diskTotal.
	diskBytes, diskTotal int64
	// pausedAt is when the guest was paused for a MigratePaused copy.
	pausedAt time.Time
	// lifted: the cgroup's CPU cap was lifted for the copy (setLimits).
	lifted bool
}

// copyLimits are the cgroup limits of a guest's QEMU while the guest is
// paused for a copy of its memory (MigratePaused, at the source) or loads
// one (at the destination): the quantum's, but at least one core of CPU,
// for the copy is QEMU's migration thread, not the guest's work: under a
// small guest's quarter core that thread would get a quarter of a core
// while the guest waits for it (not measured apart: the paused copies
// measured here varied from 0.1 to 1.6 s with bare QEMU too).
func (d *Driver) copyLimits(accel string, q model.Quantum) cgroup.Limits {
	l := d.limits(accel, q)
	if l.CPUCores > 0 && l.CPUCores < 1 {
		l.CPUCores = 1
	}
	return l
}

// setLimits sets the cgroup limits of instance id: copyLimits if lift,
// else the quantum's.
func (d *Driver) setLimits(id string, p Paths, lift bool) error {
	spec, accel, err := d.specAccel(p)
	if err != nil {
		return err
	}
	g, err := d.cg.Load(d.opts.CgroupParent, id)
	if err != nil {
		return err
	}
	if lift {
		return g.Update(d.copyLimits(accel, spec.Quantum))
	}
	return g.Update(d.limits(accel, spec.Quantum))
}

// migrateMode is how a guest under accel migrates when asked for mode:
// as asked, else DefaultMigrateMode.
func migrateMode(mode hypervisor.MigrateMode, accel string) hypervisor.MigrateMode {
	if mode != "" {
		return mode
	}
	return DefaultMigrateMode(accel)
}

// DefaultMigrateMode is how the driver migrates a guest under accel
// unless told: live under KVM, paused under TCG. Under QEMU 7.2's TCG,
// guests came out of live migrations with memory corrupted now and then
// (kernel oopses on list and stack checks right after the move; bare QEMU
// too), which no paused migration did: see docs/decisions.md.
func DefaultMigrateMode(accel string) hypervisor.MigrateMode {
	if accel == AccelKVM {
		return hypervisor.MigrateLive
	}
	return hypervisor.MigratePaused
}

// report calls progress when the phase changed or progressEvery passed.
func (m *migration) report(pr hypervisor.MigrationProgress) {
	if pr.Phase == m.last.Phase && time.Since(m.lastSent) < progressEvery {
		return
	}
	m.last, m.lastSent = pr, time.Now()
	m.progress(pr)
}

func (m *migration) run(ctx context.Context) (hypervisor.MigrationResult, error) {
	d := m.d
	m.v = d.watchPID(m.id, m.p, m.pid)
	c, err := m.v.qmpClient(ctx)
	if err != nil {
		return hypervisor.MigrationResult{}, err
	}
	m.c = c
	var status struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &status); err != nil {
		return hypervisor.MigrationResult{}, err
	}
	if status.Status != "running" {
		return hypervisor.MigrationResult{}, fmt.Errorf("the guest is %s: %w", status.Status, hypervisor.ErrNotRunning)
	}
	// From here a driver that finds the intent knows this one died
	// mid-migration (recoverMigrate).
	if err := writeIntent(m.p, &intent{Op: opMigrate, At: m.start, PID: m.pid}); err != nil {
		return hypervisor.MigrationResult{}, err
	}
	// A migration it could not undo stays for a later driver to settle.
	keepIntent := false
	defer func() {
		if !keepIntent {
			d.clearIntent(m.id, m.p)
		}
	}()
	m.wake = m.v.migrationEvents(ctx, c)
	// What a driver that died mid-migration may have left.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	m.dropMirror(uctx)
	cancel()

	res, completed, err := m.migrate(ctx)
	if err != nil && !completed {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		uerr := m.d.undoMigration(uctx, m.v, m.c, m.sent)
		if m.lifted && !errors.Is(uerr, errMigrated) {
			if lerr := m.d.setLimits(m.id, m.p, false); lerr != nil {
				m.v.log.Error("set the cpu cap back after a failed migration", "err", lerr)
			}
		}
		switch {
		case errors.Is(uerr, errMigrated):
			// Too late to undo: QEMU completed it meanwhile.
			m.v.log.Warn("a failed or cancelled migration had completed: the guest runs at the destination", "err", err)
			var mi migrateInfo
			if qerr := m.c.Execute(uctx, "query-migrate", nil, &mi); qerr == nil {
				res = m.completed(uctx, mi)
			}
			err = nil
		case uerr != nil:
			m.v.log.Error("undo a failed migration", "err", uerr)
			keepIntent = true
			return hypervisor.MigrationResult{}, fmt.Errorf("%w; and undoing it: %v", err, uerr)
		default:
			m.v.log.Warn("migration failed; the guest runs on here", "err", err)
			return hypervisor.MigrationResult{}, err
		}
	}
	// The guest runs at the destination: whatever happens here, this
	// QEMU must not run it again.
	atPoint("migrate-completed")
	if qerr := d.endMigrated(ctx, m.id, m.p, m.pid, m.v, m.memAddr); qerr != nil && err == nil {
		err = qerr
	}
	if err != nil {
		return hypervisor.MigrationResult{}, fmt.Errorf("the guest moved, but: %w", err)
	}
	res.Total = time.Since(m.start)
	m.v.log.Info("migrated", "to", m.memAddr, "total", res.Total.Round(time.Millisecond), "downtime", res.Downtime,
		"memory_bytes", res.MemoryBytes, "disk_bytes", res.DiskBytes)
	d.changes.Notify(m.id)
	return res, nil
}

// migrate mirrors the disk and migrates memory. completed says the source
// QEMU reported the migration completed (the guest runs at the
// destination), also with an error after that.
func (m *migration) migrate(ctx context.Context) (hypervisor.MigrationResult, bool, error) {
	c := m.c
	bw := m.opt.Bandwidth
	if bw == 0 {
		bw = migrateBandwidth
	}
	// The disk first: a mirror of the overlay into the destination's
	// export, until it is in step.
	m.report(hypervisor.MigrationProgress{Phase: "disk"})
	nbd := map[string]any{"driver": "nbd", "node-name": mirrorNode, "export": m.export,
		"server": map[string]any{"type": "inet", "host": m.nbdHost, "port": m.nbdPort}}
	if err := c.Execute(ctx, "blockdev-add", nbd, nil); err != nil {
		return hypervisor.MigrationResult{}, false, fmt.Errorf("connect to the destination's disk nbd://%s/%s: %w",
			net.JoinHostPort(m.nbdHost, m.nbdPort), m.export, err)
	}
	mirror := map[string]any{"job-id": mirrorJob, "device": rootDrive, "target": mirrorNode, "sync": "top",
		"copy-mode": "write-blocking", "auto-dismiss": false}
	if m.opt.Bandwidth > 0 {
		mirror["speed"] = m.opt.Bandwidth
	}
	if err := c.Execute(ctx, "blockdev-mirror", mirror, nil); err != nil {
		return hypervisor.MigrationResult{}, false, fmt.Errorf("mirror the disk: %w", err)
	}
	for {
		j, err := m.job(ctx)
		if err != nil {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("mirror the disk: %w", err)
		}
		m.diskBytes, m.diskTotal = j.Current, j.Total
		m.report(hypervisor.MigrationProgress{Phase: "disk", DiskTotal: j.Total, DiskDone: j.Current})
		if j.Status == "ready" {
			break
		}
		if j.Status == "concluded" || j.Status == "aborting" || j.Status == "null" {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("mirror the disk: the job ended %s: %s", j.Status, j.Error)
		}
		if err := waitWake(ctx, m.wake, migrateWakeMax); err != nil {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("mirror the disk: %w", err)
		}
	}

	// Memory.
	downtime := m.opt.MaxDowntime
	if downtime == 0 {
		downtime = DefaultMaxDowntime
	}
	caps := []map[string]any{
		{"capability": "events", "state": true},
		{"capability": "return-path", "state": true},
		{"capability": "pause-before-switchover", "state": true},
		{"capability": "auto-converge", "state": !m.opt.NoAutoConverge},
	}
	if err := c.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return hypervisor.MigrationResult{}, false, err
	}
	params := map[string]any{"downtime-limit": max(1, int64(math.Ceil(float64(downtime)/float64(time.Millisecond)))), "max-bandwidth": bw}
	if err := c.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return hypervisor.MigrationResult{}, false, err
	}
	// The guest's RAM, for the reports until QEMU counts its own.
	var size struct {
		Base int64 `json:"base-memory"`
	}
	if err := c.Execute(ctx, "query-memory-size-summary", nil, &size); err != nil {
		return hypervisor.MigrationResult{}, false, err
	}
	// From here a "completed" status is this migration's: before, it may
	// be the status of the migration that brought the guest here (a QEMU
	// that was a destination says "completed" until it migrates again).
	// The intent says so too, for a driver that finds it after a crash.
	m.sent = true
	if err := writeIntent(m.p, &intent{Op: opMigrate, At: m.start, PID: m.pid, Phase: phaseSent}); err != nil {
		return hypervisor.MigrationResult{}, false, err
	}
	if m.opt.Mode == hypervisor.MigratePaused {
		// The guest stops here and its memory goes in one pass: nothing
		// it could dirty meanwhile. It arrives paused at the destination,
		// whose driver continues it (resumeOnArrival); a failure here
		// continues it at the source (undoMigration). While it is paused
		// QEMU's copy may use a whole core (copyLimits).
		if err := m.d.setLimits(m.id, m.p, true); err != nil {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("lift the cpu cap for the copy: %w", err)
		}
		m.lifted = true
		if err := c.Execute(ctx, "stop", nil, nil); err != nil {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("pause the guest: %w", err)
		}
		m.pausedAt = time.Now()
	}
	if err := c.Execute(ctx, "migrate", map[string]any{"uri": "tcp:" + m.memAddr}, nil); err != nil {
		return hypervisor.MigrationResult{}, false, fmt.Errorf("migrate memory: %w", err)
	}
	switched := false
	for {
		var mi migrateInfo
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("migrate memory: %w", err)
		}
		seen := time.Now()
		pr := hypervisor.MigrationProgress{Phase: "memory", DiskTotal: m.diskTotal, DiskDone: m.diskBytes,
			MemoryTotal: size.Base, MemoryRemaining: size.Base}
		if r := mi.RAM; r != nil {
			pr.MemoryTotal, pr.MemoryTransferred, pr.MemoryRemaining = r.Total, r.Transferred, r.Remaining
			pr.DirtyRate = int64(r.DirtyPagesRate * float64(r.PageSize))
			pr.Passes = r.DirtySyncCount
		}
		switch mi.Status {
		case "completed":
			res := m.completed(ctx, mi)
			if !m.pausedAt.IsZero() {
				// QEMU's downtime starts at its own stop; the guest
				// stopped at the driver's.
				res.Downtime = time.Since(m.pausedAt)
			}
			return res, true, nil
		case "failed", "cancelled", "cancelling":
			why := mi.ErrorDesc
			if why == "" {
				why = mi.Status
			}
			return hypervisor.MigrationResult{}, false, fmt.Errorf("migrate memory: %s", why)
		case "pre-switchover":
			if !switched {
				// The guest is paused until migrate-continue: progress
				// waits (afterwards QEMU goes on by itself).
				atPoint("migrate-switchover")
				if err := m.switchover(ctx, seen); err != nil {
					return hypervisor.MigrationResult{}, false, err
				}
				switched = true
				pr.Phase = "switchover"
				m.report(pr)
				continue
			}
		case "device":
			pr.Phase = "switchover"
		}
		m.report(pr)
		if !alive(m.pid, marker(m.p)) {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("qemu exited while migrating%s", logTail(m.p.Log))
		}
		if err := waitWake(ctx, m.wake, migrateWakeMax); err != nil {
			return hypervisor.MigrationResult{}, false, fmt.Errorf("migrate memory: %w", err)
		}
	}
}

// result is what a completed migration's query-migrate says. The
// downtime is QEMU's: from the guest's stop, through the pause and the
// mirror's end, until the state was sent and (return-path) the
// destination had loaded it and runs the guest.
func (m *migration) result(mi migrateInfo) hypervisor.MigrationResult {
	res := hypervisor.MigrationResult{Downtime: time.Duration(mi.DowntimeMS) * time.Millisecond, DiskBytes: m.diskBytes}
	if mi.RAM != nil {
		res.MemoryBytes = mi.RAM.Transferred
	}
	return res
}

// completed returns the result of a completed migration. QEMU sets the
// status a moment before it computes the times (7.2: the migration thread
// sets "completed", then takes the big lock to fill total-time and
// downtime), so a query that came in between (total-time 0) is asked
// again.
func (m *migration) completed(ctx context.Context, mi migrateInfo) hypervisor.MigrationResult {
	for deadline := time.Now().Add(2 * time.Second); mi.TotalMS == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		var again migrateInfo
		if err := m.c.Execute(ctx, "query-migrate", nil, &again); err != nil || again.Status != "completed" {
			break
		}
		mi = again
	}
	return m.result(mi)
}

// switchover runs while the source is paused in pre-switchover (seen so
// at seen): the mirror copies what is left and ends (block-job-cancel of
// a ready job), then the migration continues.
func (m *migration) switchover(ctx context.Context, seen time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, switchoverTimeout)
	defer cancel()
	if err := m.c.Execute(ctx, "block-job-cancel", map[string]any{"device": mirrorJob}, nil); err != nil {
		return fmt.Errorf("end the disk mirror: %w", err)
	}
	for {
		j, err := m.job(ctx)
		if err != nil {
			return fmt.Errorf("end the disk mirror: %w", err)
		}
		if j.Status == "concluded" {
			if j.Error != "" {
				return fmt.Errorf("end the disk mirror: %s", j.Error)
			}
			m.diskBytes = j.Current
			break
		}
		if err := waitWake(ctx, m.wake, time.Millisecond); err != nil {
			return fmt.Errorf("end the disk mirror: %w", err)
		}
	}
	if err := m.c.Execute(ctx, "migrate-continue", map[string]any{"state": "pre-switchover"}, nil); err != nil {
		return err
	}
	m.v.log.Debug("switched over", "paused_for_the_mirror", time.Since(seen))
	// The concluded job holds nothing; dismissed once the guest goes on.
	if err := m.c.Execute(ctx, "job-dismiss", map[string]any{"id": mirrorJob}, nil); err != nil {
		m.v.log.Warn("dismiss the finished disk mirror", "err", err)
	}
	return nil
}

// errNoJob: the mirror job is not (any more) there.
var errNoJob = errors.New("the mirror job is gone")

// job returns the mirror job as query-jobs shows it.
func (m *migration) job(ctx context.Context) (jobInfo, error) {
	return queryJob(ctx, m.c)
}

func queryJob(ctx context.Context, c *qmpClient) (jobInfo, error) {
	var jobs []jobInfo
	if err := c.Execute(ctx, "query-jobs", nil, &jobs); err != nil {
		return jobInfo{}, err
	}
	for _, j := range jobs {
		if j.ID == mirrorJob {
			return j, nil
		}
	}
	return jobInfo{}, errNoJob
}

// dropMirror removes the mirror job and NBD node of a migration, if there
// are any: the job cancelled without copying more, dismissed, the node
// deleted. Errors are logged.
func (m *migration) dropMirror(ctx context.Context) { m.d.dropMirror(ctx, m.v, m.c) }

func (d *Driver) dropMirror(ctx context.Context, v *vm, c *qmpClient) {
	if j, err := queryJob(ctx, c); err == nil {
		if j.Status != "concluded" {
			if err := c.Execute(ctx, "block-job-cancel", map[string]any{"device": mirrorJob, "force": true}, nil); err != nil {
				v.log.Warn("cancel the disk mirror", "err", err)
			}
			for deadline := time.Now().Add(undoTimeout); ; {
				j, err := queryJob(ctx, c)
				if err != nil || j.Status == "concluded" || time.Now().After(deadline) {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(migratePoll):
				}
			}
		}
		if err := c.Execute(ctx, "job-dismiss", map[string]any{"id": mirrorJob}, nil); err != nil {
			v.log.Warn("dismiss the disk mirror", "err", err)
		}
	}
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err := c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		v.log.Warn("list block nodes", "err", err)
		return
	}
	for _, n := range nodes {
		if n.NodeName == mirrorNode {
			if err := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": mirrorNode}, nil); err != nil {
				v.log.Warn("remove the disk mirror's nbd node", "err", err)
			}
		}
	}
}

// phaseSent is the intent's phase once the migrate command was issued.
const phaseSent = "sent"

// errMigrated: a migration to undo had completed; the guest runs at the
// destination.
var errMigrated = errors.New("the migration completed: the guest runs at the destination")

// undoMigration makes a source whose migration failed (or that a
// migration left behind) run its guest as before: the migration
// cancelled, the mirror dropped, the capabilities set back, the guest
// continued if paused. A migration that completed is left alone
// (errMigrated): the guest runs at the destination.
//
// sent says the migrate command was issued: before it, a "completed"
// status is that of the migration that brought the guest here (a QEMU
// that was a destination), not this one's.
func (d *Driver) undoMigration(ctx context.Context, v *vm, c *qmpClient, sent bool) error {
	var mi migrateInfo
	if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
		return err
	}
	if !sent && mi.Status == "completed" {
		mi.Status = "none"
	}
	if mi.Status == "completed" {
		return errMigrated
	}
	if migrating(mi.Status) {
		// In pre-switchover too: the cancel releases the paused source.
		if err := c.Execute(ctx, "migrate_cancel", nil, nil); err != nil {
			return err
		}
		for migrating(mi.Status) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("migration still %s after migrate_cancel: %w", mi.Status, ctx.Err())
			case <-time.After(migratePoll):
			}
			if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
				return err
			}
		}
		if mi.Status == "completed" {
			return errMigrated
		}
	}
	d.dropMirror(ctx, v, c)
	caps := []map[string]any{
		{"capability": "return-path", "state": false},
		{"capability": "pause-before-switchover", "state": false},
		{"capability": "auto-converge", "state": false},
	}
	if err := c.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		v.log.Warn("set the migration capabilities back", "err", err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		return err
	}
	switch st.Status {
	case "running":
	case "paused", "postmigrate", "finish-migrate":
		if err := c.Execute(ctx, "cont", nil, nil); err != nil {
			return err
		}
	default:
		return fmt.Errorf("the guest is %s; not continued", st.Status)
	}
	return nil
}

// endMigrated ends the source QEMU of a guest that now runs at the
// destination: quit, else SIGKILL; its exit is recorded and its cgroup
// removed; its files stay.
func (d *Driver) endMigrated(ctx context.Context, id string, p Paths, pid int, v *vm, to string) error {
	m := marker(p)
	v.setStopReason("migrated to " + to)
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if c, err := v.qmpClient(qctx); err == nil {
		_ = c.Execute(qctx, "quit", nil, nil) // the reply may be lost as QEMU exits
	}
	cancel()
	if !waitGone(pid, m, quitTimeout, nil) {
		if err := kill(pid, m); err != nil {
			return fmt.Errorf("kill qemu %d: %w", pid, err)
		}
		if !waitGone(pid, m, 5*time.Second, nil) {
			return fmt.Errorf("qemu %d survived SIGKILL", pid)
		}
	}
	d.finish(v)
	<-v.done
	return nil
}

// recoverMigrate settles an outgoing migration whose driver died: a
// migration QEMU says completed ends the source (the guest runs at the
// destination); anything else is undone and the guest runs on here.
func (d *Driver) recoverMigrate(ctx context.Context, id string, p Paths, it *intent, pid int, live bool) {
	if !live || it.PID != pid {
		d.clearIntent(id, p)
		return
	}
	v := d.watchPID(id, p, pid)
	c, err := v.qmpClient(ctx)
	var mi migrateInfo
	if err == nil {
		err = c.Execute(ctx, "query-migrate", nil, &mi)
	}
	if err != nil {
		d.log.Error("settle an interrupted migration; will try again", "instance", id, "err", err)
		return
	}
	sent := it.Phase == phaseSent
	if mi.Status == "completed" && sent {
		if err := d.endMigrated(ctx, id, p, pid, v, "another host (finished by a later driver)"); err != nil {
			d.log.Error("end the source of a completed migration; will try again", "instance", id, "err", err)
			return
		}
		d.log.Warn("finished an interrupted migration: the guest runs at the destination", "instance", id)
	} else {
		if err := d.undoMigration(ctx, v, c, sent); err != nil {
			d.log.Error("undo an interrupted migration; will try again", "instance", id, "err", err)
			return
		}
		// A paused copy may have lifted the CPU cap (copyLimits).
		if err := d.setLimits(id, p, false); err != nil {
			d.log.Error("set the quantum's limits after an interrupted migration", "instance", id, "err", err)
		}
		d.log.Warn("undid an interrupted migration: the guest runs on here", "instance", id, "migration", mi.Status)
	}
	d.clearIntent(id, p)
	d.changes.Notify(id)
}
