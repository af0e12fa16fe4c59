package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
)

// Live migration.
//
// The destination (PrepareIncoming) is an instance like one Start makes
// (spec.json, an empty qcow2 overlay of the same size on the same image,
// the seed, its cgroup with the quantum's limits, QEMU exec'd inside it)
// whose QEMU runs the same argv (Argv) plus "-incoming defer", and
// incoming.json, the mark that it waits for a guest. Over QMP it then
// serves the root disk writable over NBD (nbd-server-start on a listening
// socket the driver opened and handed over with getfd, so that "ip:0"
// gets a port that is known at once; block-export-add of the root drive's
// node, which also activates the otherwise inactive incoming image) and
// waits for the migration stream (migrate-incoming "tcp:"; the port QEMU
// bound is read back from query-migrate's socket-address). The endpoint
// is recorded in incoming.json: a second call returns it, a driver after
// an agent restart finds the instance there (and leaves its QEMU alone;
// see recoverIntent), Delete removes it all. Get and List report it
// paused with ExitReason "incoming" until the guest runs, then running
// with that reason until FinishIncoming.
//
// The source (MigrateOut) first copies its disk: blockdev-add of an NBD
// client node on the endpoint's export, blockdev-mirror of the root drive
// into it with sync "top" (only the overlay: both hosts have the base
// image) until the job is ready. Then memory: migrate "tcp:" with the
// capabilities events, return-path (the source's "completed" then means
// that the destination has loaded the whole state; a destination that
// fails to load it makes the migration fail and the source go on),
// pause-before-switchover, auto-converge (unless NoAutoConverge), and the
// parameters downtime-limit and max-bandwidth.
//
// The disk at the switch. With pause-before-switchover the source stops
// the guest (its I/O drained and flushed) and waits in "pre-switchover";
// the driver then cancels the ready mirror job (block-job-cancel without
// force: the job copies what is still dirty and ends, leaving the target a
// copy of the disk as it is at that moment), sends migrate-continue, and
// dismisses the job; only then does the device state go, and the guest
// runs at the destination on a disk that has every write it made here.
// The mirror runs in copy-mode write-blocking: once ready, every guest
// write completes only when it is on both disks, so at the pause there is
// next to nothing left to copy: the driver's part of the pause (from
// seeing pre-switchover to migrate-continue) measured 3-6 ms. One run of
// each variant by hand on this machine (256 MiB guest, a loop in it
// appending to a file and syncing; e2fsck of the destination's disk
// afterwards clean, no line lost): write-blocking + pause 17 ms of
// downtime idle, 52 ms while the guest copied memory; background copy +
// pause 97 and 124 ms (the dirty remainder is copied while paused);
// without the pause (the mirror left running into the switch) 17-116 ms,
// but then nothing orders the mirror's last writes before the
// destination's start, so it is not used. The rest of the downtime is
// QEMU's: the stop (drain, and the flush, which the mirror carries to the
// destination's disk: durable at the switch), the last pages and device
// state, the destination's start; it varies from run to run (bare QEMU's
// too, 3-47 ms idle here). The cost of write-blocking is that guest
// writes wait for the destination while the mirror runs.
//
// Under TCG (QEMU 7.2 here), a guest that copies memory fast in a loop
// (32 MiB in a tmpfs again and again) sometimes came out of a migration
// with its memory corrupted (kernel oopses in the page allocator soon
// after): bare QEMU as well as through the driver, with or without
// auto-converge, and never in 20-40 s of the same loop without a
// migration (bench/migrate, docs/benchmarks.md). That is QEMU's TCG dirty
// tracking, not something the driver can mend; KVM tracks dirty pages in
// the kernel (not tried here: no KVM). Ordinary guests did too (about one
// live migration in seven of the conformance test's guest, a writer
// appending to its disk). So under TCG the driver copies memory with the
// guest paused unless told otherwise (MigrateOptions.Mode, migrateMode):
// "stop" once the disk mirror is ready, then the same migrate, in one
// pass; the guest arrives paused (QEMU keeps the source's run state) and
// the destination's driver continues it as soon as it has arrived
// (resumeOnArrival), else FinishIncoming does. Zero of twenty such moves
// corrupted a guest; the pause is then the whole copy.
//
// When it completes, the source QEMU is told to quit; its exit is
// recorded ("migrated to ..."), its cgroup removed, its files kept until
// Delete. On any error or cancellation: migrate_cancel, the mirror job
// cancelled (force) and dismissed, the NBD node deleted, the migration
// capabilities set back (a later Suspend migrates to a file, where
// pause-before-switchover would wait for ever), and the guest continued
// if it is paused. An intent (intent.json, "migrating") is written first:
// a driver that finds it after the agent died undoes the migration the
// same way, or, if QEMU says it completed, ends the source as above
// (recoverMigrate) — never cont of a guest that runs elsewhere.
//
// MigrateOptions.Bandwidth caps both streams: max-bandwidth of the
// migration and the speed of the mirror's background copy (writes the
// guest makes while the mirror is ready go at once, write-blocking).
//
// The NBD export and the migration port take anything that connects to
// them until FinishIncoming (or the end of the migration): no TLS, no
// authentication. They must listen on an address only the hosts reach
// (the hosts' underlay), as the agents' own traffic does.
//
// On the destination, QEMU logs "Permission conflict ... unshared by block
// device 'root'" when the guest starts: the virtio-blk device would take
// the disk for itself while the export still holds it writable; the guest
// runs regardless, and the export goes with FinishIncoming. (Starting the
// destination paused and continuing it after the export is gone would
// put a round trip through the caller into the downtime.)
//
// FinishIncoming waits briefly for the destination to leave inmigrate,
// removes the NBD export and stops the NBD server, conts the guest if it
// is paused, removes the mark, and asks the guest agent for its facts (the
// driver's watcher connected to the agent socket while QEMU waited; the
// guest agent never notices that it moved).

const (
	// incomingFile marks an instance waiting for (or just given) a guest
	// by a live migration; it holds the endpoint.
	incomingFile = "incoming.json"
	// IncomingReason is the ExitReason of an instance prepared for an
	// incoming migration, until FinishIncoming.
	IncomingReason = "incoming"
	// opMigrate is the intent of an outgoing migration.
	opMigrate = "migrating"

	nbdExportName = "root"             // the NBD export of the destination's disk
	nbdExportID   = "vgrid-incoming"   // its block-export id
	nbdFDName     = "vgrid-nbd"        // the listening socket handed to QEMU
	mirrorJob     = "vgrid-migrate"    // the source's mirror job
	mirrorNode    = "vgrid-nbd-target" // the source's NBD client node

	// DefaultMaxDowntime is the downtime-limit when MigrateOptions has none.
	DefaultMaxDowntime = 100 * time.Millisecond
	// migrateBandwidth is max-bandwidth when MigrateOptions has none: no
	// cap in practice (QEMU 7.2's default is 128 MiB/s).
	migrateBandwidth = suspendBandwidth
	// progressEvery is how often MigrateOut calls progress at most (and
	// at each change of phase).
	progressEvery = 200 * time.Millisecond
	// migrateWakeMax is the longest a migration wait sleeps without an
	// event (MIGRATION, JOB_STATUS_CHANGE) before it asks QEMU again.
	migrateWakeMax = 50 * time.Millisecond
	// switchoverTimeout bounds the mirror's end while the guest is paused.
	switchoverTimeout = 30 * time.Second
	// undoTimeout bounds undoing a failed migration.
	undoTimeout = 15 * time.Second
	// arriveGrace is how long FinishIncoming waits for QEMU to leave
	// inmigrate: the source says completed once the destination has
	// loaded the state, a moment before it runs the guest.
	arriveGrace = 2 * time.Second
)

// incomingRecord is incoming.json.
type incomingRecord struct {
	Listen   string                       `json:"listen"`
	At       time.Time                    `json:"at"`
	PID      int                          `json:"pid,omitempty"`
	Endpoint hypervisor.MigrationEndpoint `json:"endpoint"`
}

func incomingPath(p Paths) string { return filepath.Join(p.Dir, incomingFile) }

// readIncoming returns the instance's incoming mark; nil when it has none
// (or it cannot be read: an instance that is not whole is not adopted).
func readIncoming(p Paths) *incomingRecord {
	var r incomingRecord
	if err := readJSON(incomingPath(p), &r); err != nil {
		return nil
	}
	return &r
}

// hasIncoming reports whether the instance at p carries the incoming mark.
func hasIncoming(p Paths) bool {
	_, err := os.Stat(incomingPath(p))
	return err == nil
}

// migrateInfo is query-migrate's reply.
type migrateInfo struct {
	Status     string `json:"status"`
	ErrorDesc  string `json:"error-desc"`
	TotalMS    int64  `json:"total-time"`
	DowntimeMS int64  `json:"downtime"`
	RAM        *struct {
		Transferred    int64   `json:"transferred"`
		Remaining      int64   `json:"remaining"`
		Total          int64   `json:"total"`
		DirtyPagesRate float64 `json:"dirty-pages-rate"`
		PageSize       int64   `json:"page-size"`
		DirtySyncCount int     `json:"dirty-sync-count"`
	} `json:"ram"`
	SocketAddress []struct {
		Type string `json:"type"`
		Host string `json:"host"`
		Port string `json:"port"`
	} `json:"socket-address"`
}

// jobInfo is one entry of query-jobs.
type jobInfo struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Status  string `json:"status"`
	Current int64  `json:"current-progress"`
	Total   int64  `json:"total-progress"`
	Error   string `json:"error"`
}

// parseListen checks PrepareIncoming's listen: an IP address of this
// host (not unspecified: the endpoint is given to the source as it is)
// and a port; 0 picks free ports, P puts memory on P and the disk on P+1.
func parseListen(listen string) (netip.Addr, int, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: %v", hypervisor.ErrInvalid, listen, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: want an IP address of this host, not %q", hypervisor.ErrInvalid, listen, host)
	}
	if ip.IsUnspecified() {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: %s is not an address the source can reach; give one of this host's", hypervisor.ErrInvalid, listen, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65534 {
		return netip.Addr{}, 0, fmt.Errorf("%w: listen %q: port %q: want 0 (any) or 1-65534 (memory on it, the disk on the next)", hypervisor.ErrInvalid, listen, port)
	}
	return ip.Unmap(), n, nil
}

// parseEndpoint checks MigrateOut's endpoint: Memory host:port, Disk
// nbd://host:port/export. It returns the memory address and the NBD
// server's host, port and export.
func parseEndpoint(to hypervisor.MigrationEndpoint) (mem, host, port, export string, err error) {
	bad := func(format string, args ...any) (string, string, string, string, error) {
		return "", "", "", "", fmt.Errorf("%w: endpoint: %s", hypervisor.ErrInvalid, fmt.Sprintf(format, args...))
	}
	mh, mp, err := net.SplitHostPort(to.Memory)
	if err != nil || mh == "" {
		return bad("memory %q: want host:port", to.Memory)
	}
	if n, err := strconv.Atoi(mp); err != nil || n < 1 || n > 65535 {
		return bad("memory %q: port %q: want 1-65535", to.Memory, mp)
	}
	u, err := url.Parse(to.Disk)
	if err != nil {
		return bad("disk %q: %v", to.Disk, err)
	}
	if u.Scheme != "nbd" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("disk %q: want nbd://host:port/export", to.Disk)
	}
	host, port = u.Hostname(), u.Port()
	if host == "" || port == "" {
		return bad("disk %q: want nbd://host:port/export", to.Disk)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("disk %q: port %q: want 1-65535", to.Disk, port)
	}
	export = strings.TrimPrefix(u.Path, "/")
	if export == "" || strings.Contains(export, "/") {
		return bad("disk %q: want one export name after the port", to.Disk)
	}
	return net.JoinHostPort(mh, mp), host, port, export, nil
}

// PrepareIncoming implements hypervisor.Driver (see the top of this file).
// listen is an IP address of this host and a port: 0 picks a free port for
// each of memory and disk; P puts memory on P and the disk on P+1.
func (d *Driver) PrepareIncoming(ctx context.Context, spec hypervisor.InstanceSpec, listen string) (hypervisor.MigrationEndpoint, error) {
	if err := checkSpec(spec); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	ip, port, err := parseListen(listen)
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	if d.closed() {
		return hypervisor.MigrationEndpoint{}, ErrClosed
	}
	id := spec.ID
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err == nil {
		rec := readIncoming(p)
		if rec == nil {
			return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, hypervisor.ErrExists)
		}
		if pid := readPID(p.PIDFile); rec.Endpoint.Memory != "" && rec.PID == pid && alive(pid, marker(p)) {
			d.watchPID(id, p, pid)
			return rec.Endpoint, nil
		}
		// Prepared before, but its QEMU is gone (a migration that failed
		// or was cancelled ends it) or never got as far as an endpoint:
		// made again from nothing, the partial disk with it.
		d.log.Info("preparing an incoming instance again: its qemu is gone", "instance", id)
		if err := d.dropIncoming(ctx, id, p); err != nil {
			return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, err)
		}
	} else if _, err := os.Stat(p.Dir); err == nil {
		// Left by a start that failed before it wrote spec.json.
		if err := os.RemoveAll(p.Dir); err != nil {
			return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, err)
		}
	}
	if err := d.killStrays(id, p, 0); err != nil {
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, err)
	}
	ep, err := d.prepareIncoming(ctx, spec, p, listen, ip, port)
	if err != nil {
		// Nothing of a failed preparation stays: the caller may try again.
		if derr := d.dropIncoming(context.WithoutCancel(ctx), id, p); derr != nil {
			d.log.Warn("remove a failed incoming instance", "instance", id, "err", derr)
		}
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("prepare incoming %s: %w", id, err)
	}
	d.log.Info("prepared for an incoming migration", "instance", id, "memory", ep.Memory, "disk", ep.Disk)
	d.changes.Notify(id)
	return ep, nil
}

// dropIncoming removes an incoming instance: its QEMU, cgroup and files.
// The caller holds the instance's lock.
func (d *Driver) dropIncoming(ctx context.Context, id string, p Paths) error {
	if pid := readPID(p.PIDFile); alive(pid, marker(p)) {
		v := d.watchPID(id, p, pid)
		v.setStopReason("incoming migration abandoned")
		if err := kill(pid, marker(p)); err != nil {
			return err
		}
		if !waitGone(pid, marker(p), 5*time.Second, nil) {
			return fmt.Errorf("qemu %d survived SIGKILL", pid)
		}
		d.finish(v)
		<-v.done
	}
	d.mu.Lock()
	_, watched := d.vms[id]
	d.mu.Unlock()
	if watched {
		d.settle(id, p)
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		return err
	}
	if p.SockDir != p.Dir {
		_ = os.RemoveAll(p.SockDir)
	}
	return d.removeCgroup(id)
}

func (d *Driver) prepareIncoming(ctx context.Context, spec hypervisor.InstanceSpec, p Paths, listen string, ip netip.Addr, port int) (hypervisor.MigrationEndpoint, error) {
	if err := os.MkdirAll(p.Dir, 0o750); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	// The mark comes first: whatever is left of a preparation that dies
	// midway is an incoming instance, which Start refuses and Delete
	// removes, never a stopped one that would boot a partial disk.
	rec := &incomingRecord{Listen: listen, At: time.Now()}
	if err := writeJSON(incomingPath(p), rec); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	if err := writeJSON(p.Spec, spec); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	accel := d.accelFor(spec)
	if err := d.ensureDisk(spec, p); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	if err := d.writeSeed(spec, p); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	// The disk's port is opened here, in this thread's network namespace
	// (the one QEMU is started from), and handed to QEMU: with port 0 its
	// number is known without asking QEMU, which has no command for it.
	diskPort := 0
	if port > 0 {
		diskPort = port + 1
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(diskPort)))
	if err != nil {
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("listen for the disk: %w", err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("listen for the disk: %w", err)
	}
	defer lnFile.Close()
	diskAddr := ln.Addr().(*net.TCPAddr)

	// Loading the guest is QEMU's work, not the guest's: at least a core
	// until it has arrived (resumeOnArrival, FinishIncoming).
	cg, err := d.cg.New(d.opts.CgroupParent, spec.ID, d.copyLimits(accel, spec.Quantum))
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	d.exitMu.Lock()
	err = writeJSON(p.State, runState{Accel: accel, StartedAt: time.Now()})
	d.exitMu.Unlock()
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	// Inside its group from the first instruction, as a boot: the
	// quantum holds on this host before the guest arrives.
	pid, startedAt, err := d.launch(ctx, spec, p, accel, cg, "-incoming", "defer")
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	d.exitMu.Lock()
	err = writeJSON(p.State, runState{Accel: accel, PID: pid, StartedAt: startedAt})
	d.exitMu.Unlock()
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	v := d.watchPID(spec.ID, p, pid)
	c, err := v.qmpClient(ctx)
	if err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := c.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	node := ""
	for _, b := range blocks {
		if b.Device == rootDrive && b.Inserted != nil {
			node = b.Inserted.NodeName
		}
	}
	if node == "" {
		return hypervisor.MigrationEndpoint{}, fmt.Errorf("qemu has no %q drive to export", rootDrive)
	}
	_ = v.migrationEvents(ctx, c)
	steps := []struct {
		cmd  string
		args any
		fd   int
	}{
		{"getfd", map[string]any{"fdname": nbdFDName}, int(lnFile.Fd())},
		{"nbd-server-start", map[string]any{"addr": map[string]any{"type": "fd", "data": map[string]any{"str": nbdFDName}}}, -1},
		{"block-export-add", map[string]any{"type": "nbd", "id": nbdExportID, "node-name": node, "name": nbdExportName, "writable": true}, -1},
		{"migrate-incoming", map[string]any{"uri": "tcp:" + net.JoinHostPort(ip.String(), strconv.Itoa(port))}, -1},
	}
	for _, s := range steps {
		if s.fd >= 0 {
			err = c.ExecuteFD(ctx, s.cmd, s.args, nil, s.fd)
		} else {
			err = c.Execute(ctx, s.cmd, s.args, nil)
		}
		if err != nil {
			return hypervisor.MigrationEndpoint{}, err
		}
	}
	var mi migrateInfo
	if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	memPort := ""
	for _, a := range mi.SocketAddress {
		if a.Type == "inet" {
			memPort = a.Port
		}
	}
	if memPort == "" {
		return hypervisor.MigrationEndpoint{}, errors.New("qemu did not say which port takes the migration")
	}
	go d.resumeOnArrival(v, c)
	rec.PID = pid
	rec.Endpoint = hypervisor.MigrationEndpoint{
		Memory: net.JoinHostPort(ip.String(), memPort),
		Disk:   "nbd://" + net.JoinHostPort(ip.String(), strconv.Itoa(diskAddr.Port)) + "/" + nbdExportName,
	}
	if err := writeJSON(incomingPath(p), rec); err != nil {
		return hypervisor.MigrationEndpoint{}, err
	}
	return rec.Endpoint, nil
}

// resumeOnArrival continues an incoming guest that arrives paused, as a
// guest does whose source paused it before copying its memory
// (MigratePaused: QEMU keeps the source's run state), as soon as it has
// arrived, rather than at FinishIncoming. It gives up when the instance's
// QEMU or watcher ends; a guest it could not continue (QEMU refuses while
// the disk's export holds it) is continued by FinishIncoming. Once the
// guest has arrived, its cgroup gets the quantum's limits back (see
// copyLimits).
func (d *Driver) resumeOnArrival(v *vm, c *qmpClient) {
	wake := v.migrationWake()
	var st struct {
		Status string `json:"status"`
	}
	for {
		if err := waitWake(v.ctx, wake, migrateWakeMax); err != nil {
			return
		}
		if err := c.Execute(v.ctx, "query-status", nil, &st); err != nil {
			return
		}
		if st.Status == "inmigrate" {
			continue
		}
		if err := d.setLimits(v.id, v.p, false); err != nil {
			v.log.Warn("set the quantum's limits after the arrival (FinishIncoming will)", "err", err)
		}
		switch st.Status {
		case "paused":
			if err := c.Execute(v.ctx, "cont", nil, nil); err != nil {
				v.log.Debug("continue the arrived guest (FinishIncoming will)", "err", err)
				return
			}
			v.log.Info("the guest arrived paused (its source paused it to copy its memory): continued")
		}
		return
	}
}

// incomingWaiting reports whether the instance at p is marked incoming
// and has no guest yet: its QEMU waits (inmigrate) or is gone (its disk
// is then a partial copy). The caller holds the instance's lock.
func (d *Driver) incomingWaiting(ctx context.Context, id string, p Paths) bool {
	if !hasIncoming(p) {
		return false
	}
	pid := readPID(p.PIDFile)
	if !alive(pid, marker(p)) {
		return true
	}
	st, err := d.qemuStatus(ctx, id, p, pid)
	return err != nil || st == "inmigrate"
}

// qemuStatus is query-status of the instance's live QEMU pid.
func (d *Driver) qemuStatus(ctx context.Context, id string, p Paths, pid int) (string, error) {
	v := d.watchPID(id, p, pid)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := v.qmpClient(qctx)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := c.Execute(qctx, "query-status", nil, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// abandonIncoming ends the QEMU of an incoming instance that has no guest
// yet (Stop and Delete: there is nothing to power off), so that what
// follows finds no process. The mark stays (Delete removes it).
func (d *Driver) abandonIncoming(ctx context.Context, id string, p Paths) error {
	pid := readPID(p.PIDFile)
	if !hasIncoming(p) || !alive(pid, marker(p)) {
		return nil
	}
	if st, err := d.qemuStatus(ctx, id, p, pid); err == nil && st != "inmigrate" {
		return nil // the guest arrived: an ordinary stop
	}
	v := d.watchPID(id, p, pid)
	v.setStopReason("incoming migration abandoned before the guest arrived")
	m := marker(p)
	if err := kill(pid, m); err != nil {
		return fmt.Errorf("kill qemu %d: %w", pid, err)
	}
	if !waitGone(pid, m, 5*time.Second, nil) {
		return fmt.Errorf("qemu %d survived SIGKILL", pid)
	}
	d.finish(v)
	<-v.done
	return nil
}

// incomingView adjusts the view of a marked instance (inspectAs): paused
// until its QEMU runs the guest, and ExitReason "incoming"; with its QEMU
// gone, stopped with why.
func incomingView(in *hypervisor.Instance, v *vm) {
	if v != nil {
		in.ExitReason = IncomingReason
		if !v.runsGuest() {
			in.State, in.Guest = hypervisor.InstancePaused, nil
		}
		return
	}
	if !strings.HasPrefix(in.ExitReason, "incoming migration") {
		in.ExitReason = "incoming migration did not complete: " + in.ExitReason
	}
}

// runsGuest reports whether v's QEMU is known (over QMP) to run its guest.
func (v *vm) runsGuest() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmp != nil && !v.paused
}

// errIncoming wraps hypervisor.ErrIncoming for op on id.
func errIncoming(op, id string) error {
	return fmt.Errorf("%s %s: %w (finish it, or delete it)", op, id, hypervisor.ErrIncoming)
}

// FinishIncoming implements hypervisor.Driver (see the top of this file).
// It is idempotent: an instance already finished that runs is returned.
func (d *Driver) FinishIncoming(ctx context.Context, id string) (hypervisor.Instance, error) {
	if !hypervisor.ValidID(id) {
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return hypervisor.Instance{}, ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: %w", id, hypervisor.ErrNotFound)
	}
	pid := readPID(p.PIDFile)
	live := alive(pid, marker(p))
	if !hasIncoming(p) {
		if live {
			return d.inspect(id)
		}
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: not an incoming instance, and not running: %w", id, hypervisor.ErrNotRunning)
	}
	if !live {
		d.settle(id, p)
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: qemu exited before the guest arrived (delete it)%s", id, logTail(p.Log))
	}
	if err := d.finishIncoming(ctx, id, p, pid); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("finish incoming %s: %w", id, err)
	}
	d.log.Info("incoming migration finished: the guest runs here", "instance", id, "pid", pid)
	d.changes.Notify(id)
	return d.inspect(id)
}

func (d *Driver) finishIncoming(ctx context.Context, id string, p Paths, pid int) error {
	m := marker(p)
	v := d.watchPID(id, p, pid)
	c, err := v.qmpClient(ctx)
	if err != nil {
		return err
	}
	wake := v.migrationWake()
	deadline := time.Now().Add(arriveGrace)
	var st struct {
		Status string `json:"status"`
	}
	for {
		if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		if st.Status != "inmigrate" {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the guest has not arrived: qemu still waits for the migration (did the source complete?)")
		}
		if err := waitWake(ctx, wake, migrateWakeMax); err != nil {
			return err
		}
		if !alive(pid, m) {
			return fmt.Errorf("qemu exited before the guest arrived%s", logTail(p.Log))
		}
	}
	switch st.Status {
	case "running", "paused", "postmigrate":
	default:
		return fmt.Errorf("the guest arrived %s", st.Status)
	}
	// The source has let go of the disk (its QEMU quit before MigrateOut
	// returned): nobody may write it from outside any more. Absent after
	// an earlier try: not an error.
	for _, s := range []struct {
		cmd  string
		args any
	}{{"block-export-del", map[string]any{"id": nbdExportID, "mode": "hard"}}, {"nbd-server-stop", nil}} {
		if err := c.Execute(ctx, s.cmd, s.args, nil); err != nil && !qmpGeneric(err) {
			return err
		}
	}
	if st.Status != "running" {
		// A guest that was paused at the source arrives paused; or QEMU
		// could not take its disk while the export held it (it then logs
		// a permission conflict and does not start the guest).
		if err := c.Execute(ctx, "cont", nil, nil); err != nil {
			return err
		}
	}
	if err := d.setLimits(id, p, false); err != nil {
		return fmt.Errorf("the quantum's cgroup limits: %w", err)
	}
	if err := os.Remove(incomingPath(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	v.askFacts()
	return nil
}

// qmpGeneric reports whether err is a QMP error reply of class
// GenericError (what QEMU answers for an absent export or server).
func qmpGeneric(err error) bool {
	var qe *qmpError
	return errors.As(err, &qe) && qe.Class == "GenericError"
}

// askFacts asks the guest agent, if connected, for its facts: the driver's
// watcher asked when it connected, while the guest was not there yet.
func (v *vm) askFacts() {
	v.mu.Lock()
	conn := v.agentConn
	v.mu.Unlock()
	if conn != nil {
		if err := v.writeAgent(conn, proto.Message{Type: proto.TypeFacts}); err != nil {
			v.log.Debug("ask the guest agent for facts", "err", err)
		}
	}
}

// waitWake waits for a wake (events) or at most max.
func waitWake(ctx context.Context, wake <-chan struct{}, max time.Duration) error {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-t.C:
	}
	return nil
}
