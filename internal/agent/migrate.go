package agent

// Live migration, the agent's part (the control plane's is
// internal/control/migrate.go). The destination's agent finds the
// workspace in its assignments' Incoming list: it makes the workspace's
// taps, has the driver prepare a QEMU waiting for the guest
// (PrepareIncoming) and reports the endpoint. The source's agent sees the
// endpoint in its workspace's Status.Migration and moves the guest there
// (MigrateOut), reporting progress about once a second and then the
// outcome. Once the control plane has the workspace on the destination,
// that agent ends the incoming side (FinishIncoming) and reports the guest
// running; should the migration fail instead, it deletes what it
// prepared.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// progressEvery is how often a source reports a migration's progress.
const progressEvery = time.Second

// incomingReason is the ExitReason the driver gives an instance waiting
// for an incoming migration.
const incomingReason = "incoming"

// outMigration is a migration this host sends.
type outMigration struct {
	since  time.Time
	cancel context.CancelFunc
}

// syncMigrations starts and stops this host's part of the live
// migrations in the assignments: preparing those coming here, deleting
// what was prepared for those that will not come, sending those with a
// ready destination, and cancelling those the control plane gave up.
func (a *Agent) syncMigrations(ctx context.Context, as api.Assignments) {
	incoming := map[string]model.Workspace{}
	for _, w := range as.Incoming {
		if w.Status.Migration != nil {
			incoming[w.ID] = w
		}
	}
	mine := map[string]model.Workspace{}
	for _, w := range as.Workspaces {
		mine[w.ID] = w
	}
	a.mu.Lock()
	var drop []string
	for id := range a.liveIn {
		if _, still := incoming[id]; still {
			continue
		}
		if _, arrived := mine[id]; !arrived {
			drop = append(drop, id)
		}
		delete(a.liveIn, id)
	}
	var prepare []model.Workspace
	for id, w := range incoming {
		if prev, ok := a.liveIn[id]; !ok || !prev.Status.Migration.Since.Equal(w.Status.Migration.Since) || !a.prepared[id] {
			prepare = append(prepare, w)
		}
		a.liveIn[id] = w
	}
	for id, om := range a.outMigs {
		w, ok := mine[id]
		if !ok || w.Status.Migration == nil || !w.Status.Migration.Since.Equal(om.since) || w.Status.Migration.Cancel {
			om.cancel()
		}
	}
	a.mu.Unlock()
	for _, id := range drop {
		a.async(ctx, model.Workspace{ID: id}, a.dropIncoming)
	}
	for _, w := range prepare {
		a.async(ctx, w, a.prepareIncoming)
	}
	for _, w := range as.Workspaces {
		if m := w.Status.Migration; m != nil && m.Endpoint != nil && !m.Cancel && m.Phase == model.MigrationRunning {
			a.async(ctx, w, a.migrateOut)
		}
	}
}

// listenAddr is the address this host's QEMU takes migrations on: its
// underlay address, any port.
func (a *Agent) listenAddr() string {
	a.mu.Lock()
	ip := hostUnderlay(a.cfg.Node)
	a.mu.Unlock()
	if !ip.IsValid() {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	return net.JoinHostPort(ip.String(), "0")
}

// instanceSpec is the driver's spec of w on this host with quantum q.
func instanceSpec(w model.Workspace, q model.Quantum, img hypervisor.LocalImage, nics []hypervisor.NIC) hypervisor.InstanceSpec {
	hostname := w.Spec.Name
	if w.Spec.Context != nil && w.Spec.Context.Hostname != "" {
		hostname = w.Spec.Context.Hostname
	}
	return hypervisor.InstanceSpec{
		ID: w.ID, Hostname: hostname, Quantum: q, MaxMemory: q.MaxMemory,
		Image: img, Context: w.Spec.Context, NICs: nics,
	}
}

// prepareIncoming readies this host to take w's guest and reports where.
func (a *Agent) prepareIncoming(ctx context.Context, w model.Workspace) {
	m := w.Status.Migration
	log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "id", w.ID, "from", w.Status.Node)
	fail := func(why string) {
		log.Warn("cannot take the migration", "why", why)
		a.sendMigration(ctx, w, api.MigrationReport{Failed: why})
	}
	img, err := a.images.ensure(ctx, a.client(), w.Spec.Image)
	if err != nil {
		fail(fmt.Sprintf("image %s: %v", w.Spec.Image, err))
		return
	}
	nics, err := a.prepareNICs(w)
	if errors.Is(err, errNetworkPending) {
		log.Debug("migration waits for its network", "why", err)
		return // the next assignments have it
	}
	if err != nil {
		fail("network: " + err.Error())
		return
	}
	// The guest comes with the quantum it has at the source; a new one
	// (a resize by migration) is applied once it runs here.
	q := w.Spec.Quantum
	// Its network volumes: the destination attaches the same exports (they
	// are not copied).
	vols, err := a.volumeAttachments(w)
	if errors.Is(err, errVolumePending) {
		log.Debug("migration waits for its volumes", "why", err)
		return // the next assignments have them
	}
	if err != nil {
		fail("volumes: " + err.Error())
		return
	}
	spec := instanceSpec(w, q, img, nics)
	spec.Volumes = vols
	ep, err := a.drv.PrepareIncoming(ctx, spec, a.listenAddr())
	if err != nil {
		if ctx.Err() == nil {
			fail("prepare: " + err.Error())
		}
		return
	}
	a.mu.Lock()
	a.prepared[w.ID] = true
	a.applied[w.ID] = q
	a.mu.Unlock()
	log.Info("ready to take a migration", "memory", ep.Memory, "disk", ep.Disk, "since", m.Since)
	a.sendMigration(ctx, w, api.MigrationReport{Endpoint: &ep})
}

// dropIncoming deletes what was prepared for a migration that will not
// come (failed or cancelled).
func (a *Agent) dropIncoming(ctx context.Context, w model.Workspace) {
	a.mu.Lock()
	delete(a.prepared, w.ID)
	_, assigned := a.assigned[w.ID]
	a.mu.Unlock()
	if assigned {
		return // it arrived after all
	}
	if err := a.drv.Delete(ctx, w.ID); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		if ctx.Err() == nil {
			a.log.Warn("delete what was prepared for a migration that did not come", "id", w.ID, "err", err)
		}
		return
	}
	a.forgetInstance(w.ID)
	a.log.Info("migration did not come: what was prepared for it is deleted", "id", w.ID)
}

// migrateOut sends w's guest to the destination its migration names.
func (a *Agent) migrateOut(ctx context.Context, w model.Workspace) {
	m := w.Status.Migration
	log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "id", w.ID, "to", m.To)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	if om := a.outMigs[w.ID]; om != nil && om.since.Equal(m.Since) {
		a.mu.Unlock()
		return // sent already (its report is on its way)
	}
	a.outMigs[w.ID] = &outMigration{since: m.Since, cancel: cancel}
	a.mu.Unlock()
	var res hypervisor.MigrationResult
	var err error
	if in, gerr := a.drv.Get(ctx, w.ID); gerr == nil && in.State == hypervisor.InstanceStopped && strings.HasPrefix(in.ExitReason, migratedReason) {
		// An earlier agent sent it and died before it could say so (the
		// driver finished the migration it found half done): the guest
		// runs at the destination. Said done, without measures.
		log.Warn("the guest had migrated already (an earlier agent sent it)", "reason", in.ExitReason)
	} else {
		res, err = a.sendGuest(mctx, w, log)
	}
	a.afterMigrateOut(ctx, mctx, w, res, err, log)
}

// migratedReason begins the ExitReason the driver gives a source whose
// guest migrated away.
const migratedReason = "migrated to "

// sendGuest is the migration itself, with progress reports.
func (a *Agent) sendGuest(mctx context.Context, w model.Workspace, log *slog.Logger) (hypervisor.MigrationResult, error) {
	m := w.Status.Migration
	log.Info("migrating live", "memory", m.Endpoint.Memory, "disk", m.Endpoint.Disk)
	var last time.Time
	progress := func(p hypervisor.MigrationProgress) {
		if now := a.now(); now.Sub(last) >= progressEvery {
			last = now
			a.sendMigration(mctx, w, api.MigrationReport{Progress: &p})
		}
	}
	return a.drv.MigrateOut(mctx, w.ID, *m.Endpoint, hypervisor.MigrateOptions{Bandwidth: int64(m.Bandwidth.BytesPerSecond()),
		Mode: hypervisor.MigrateMode(m.Mode)}, progress)
}

// afterMigrateOut reports how a migration sent from here ended, and
// drops this host's copy of a guest that left.
func (a *Agent) afterMigrateOut(ctx, mctx context.Context, w model.Workspace, res hypervisor.MigrationResult, err error, log *slog.Logger) {
	m := w.Status.Migration
	if err != nil {
		why := err.Error()
		if mctx.Err() != nil && ctx.Err() == nil {
			why = "cancelled"
		}
		if ctx.Err() != nil {
			return // the agent stops: its successor finds the migration again
		}
		log.Warn("migration failed; the guest runs on here", "err", err)
		a.mu.Lock()
		delete(a.outMigs, w.ID)
		a.mu.Unlock()
		a.sendMigration(ctx, w, api.MigrationReport{Failed: why})
		return
	}
	log.Info("migrated", "total", res.Total, "downtime", res.Downtime, "memory_bytes", res.MemoryBytes, "disk_bytes", res.DiskBytes)
	rep := api.MigrationReport{Done: true, Total: model.Duration(res.Total), Downtime: model.Duration(res.Downtime),
		MemoryBytes: res.MemoryBytes, DiskBytes: res.DiskBytes}
	// The guest runs at the destination now: the control plane must learn
	// it (else it would give the migration up and the destination would
	// delete the guest). Retry for as long as it may take to answer.
	for i := 0; ; i++ {
		err := a.client().MigrationReport(ctx, a.node, w, withID(rep, w))
		var ce *client.Error
		if err == nil || errors.As(err, &ce) && ce.Status < 500 || ctx.Err() != nil || i >= 30 {
			if err != nil && ctx.Err() == nil {
				log.Warn("report the migration's end", "err", err)
			}
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	// Assignments read before the control plane learnt it may still list
	// the workspace here: it must not be started again (reconcile).
	a.mu.Lock()
	a.migratedAway[w.ID] = m.Since
	a.mu.Unlock()
	// This host's copy is of no more use.
	if err := a.drv.Delete(ctx, w.ID); err != nil && !errors.Is(err, hypervisor.ErrNotFound) && ctx.Err() == nil {
		log.Warn("delete the copy of a workspace that migrated away", "err", err)
	}
	_ = os.Remove(a.genPath(w.ID))
	a.forgetInstance(w.ID)
}

// finishIncoming makes the guest that arrived here an ordinary running
// instance and reports it.
func (a *Agent) finishIncoming(ctx context.Context, w model.Workspace) {
	inst, err := a.drv.FinishIncoming(ctx, w.ID)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("finish an incoming migration", "workspace", w.Spec.Name, "err", err)
			a.fail(ctx, w, "migration: the guest did not arrive: "+err.Error())
		}
		return
	}
	if err := a.setStartedGeneration(w.ID, w.Status.Generation); err != nil {
		a.log.Warn("record generation", "err", err)
	}
	a.mu.Lock()
	delete(a.prepared, w.ID)
	a.mu.Unlock()
	// The guest ran all along: its agent's facts come a moment after the
	// host end of its channel reconnected; until then it would be
	// reported Starting, as if it booted.
	for i := 0; inst.Guest == nil && i < 50 && ctx.Err() == nil; i++ {
		time.Sleep(100 * time.Millisecond)
		if in, err := a.drv.Get(ctx, w.ID); err == nil {
			inst = in
		}
	}
	a.log.Info("migration arrived", "workspace", w.Project+"/"+w.Spec.Name, "pid", inst.PID)
	a.report(ctx, w, inst, "")
}

// withID fills in which migration a report is about.
func withID(r api.MigrationReport, w model.Workspace) api.MigrationReport {
	r.ID = w.ID
	if m := w.Status.Migration; m != nil {
		r.Since = m.Since
	}
	return r
}

// sendMigration posts a migration report, logging a failure.
func (a *Agent) sendMigration(ctx context.Context, w model.Workspace, r api.MigrationReport) {
	if err := a.client().MigrationReport(ctx, a.node, w, withID(r, w)); err != nil && ctx.Err() == nil {
		a.log.Warn("migration report", "workspace", w.Spec.Name, "err", err)
	}
}

// resizeDue says whether w's running guest must be given w's quantum:
// the host enforces another (as this agent applied it, or as the control
// plane last heard). An agent that knows neither takes the spec's as
// applied.
func (a *Agent) resizeDue(w model.Workspace) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	have, ok := a.applied[w.ID]
	if !ok {
		if w.Status.Applied == nil {
			a.applied[w.ID] = w.Spec.Quantum
			return false
		}
		have = *w.Status.Applied
		a.applied[w.ID] = have
	}
	if have == w.Spec.Quantum {
		return false
	}
	return a.resizeFailed[w.ID] != w.Spec.Quantum
}

// resize gives w's running guest its spec's quantum (the driver: cgroup,
// balloon, disk, I/O caps; the network caps follow from the assignments
// in syncNetworks) and reports it applied.
func (a *Agent) resize(ctx context.Context, w model.Workspace) {
	q := w.Spec.Quantum
	log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "id", w.ID)
	if err := a.drv.Resize(ctx, w.ID, q); err != nil {
		if ctx.Err() != nil {
			return
		}
		// Not tried again for this quantum; the workspace's applied
		// quantum stays what it was, which the user sees.
		log.Warn("resize failed", "err", err)
		a.mu.Lock()
		a.resizeFailed[w.ID] = q
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	a.applied[w.ID] = q
	delete(a.resizeFailed, w.ID)
	a.mu.Unlock()
	log.Info("resized", "cpu", q.CPUCores(), "memory", q.Memory, "disk", q.Disk)
	inst, err := a.drv.Get(ctx, w.ID)
	if err != nil {
		return
	}
	a.report(ctx, w, inst, "")
}

// appliedQuantum is the quantum this agent gave id's running guest, if it
// knows.
func (a *Agent) appliedQuantum(id string) *model.Quantum {
	a.mu.Lock()
	defer a.mu.Unlock()
	q, ok := a.applied[id]
	if !ok {
		return nil
	}
	return &q
}

// gone says whether w's guest migrated away from this host (its
// migration, as w still shows it, was sent from here): stale assignments
// must not start it here again.
func (a *Agent) goneAway(w model.Workspace) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	since, ok := a.migratedAway[w.ID]
	if !ok {
		return false
	}
	if w.Status.Migration != nil && w.Status.Migration.Since.Equal(since) {
		return true
	}
	delete(a.migratedAway, w.ID) // the control plane has it elsewhere, or back here anew
	return false
}

// retryIncoming prepares again the incoming workspaces not prepared yet
// (one that waited for its network), at the resync pace.
func (a *Agent) retryIncoming(ctx context.Context) {
	a.mu.Lock()
	var todo []model.Workspace
	for id, w := range a.liveIn {
		if !a.prepared[id] {
			todo = append(todo, w)
		}
	}
	a.mu.Unlock()
	for _, w := range todo {
		a.async(ctx, w, a.prepareIncoming)
	}
}
