package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// reconcile moves one workspace toward its desired state. Slow operations
// (start, stop, delete) run in their own goroutine, one at a time per
// workspace, so one slow guest never holds up another.
func (a *Agent) reconcile(ctx context.Context, w model.Workspace) {
	if a.isBusy(w.ID) {
		return
	}
	if a.goneAway(w) {
		return // its guest migrated away; stale assignments
	}
	if w.Status.Move != nil && a.incoming(ctx, w) {
		return // its files are on their way here
	}
	inst, err := a.drv.Get(ctx, w.ID)
	exists := err == nil
	if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		a.log.Warn("inspect instance", "workspace", w.Spec.Name, "err", err)
		return
	}
	running := exists && (inst.State == hypervisor.InstanceRunning || inst.State == hypervisor.InstancePaused)
	suspended := exists && inst.State == hypervisor.InstanceSuspended
	switch w.Desired {
	case model.DesiredRunning:
		switch {
		case exists && inst.ExitReason == incomingReason && inst.State != hypervisor.InstanceStopped:
			// Its guest migrated here: it runs here now.
			a.async(ctx, w, a.finishIncoming)
		case running && w.Status.Migration == nil && a.resizeDue(w):
			a.async(ctx, w, a.resize)
		case exists && inst.State == hypervisor.InstancePaused:
			// A guest left paused (by a suspend whose agent died): Start
			// continues it.
			a.async(ctx, w, a.start)
		case running:
			a.report(ctx, w, inst, "")
		case w.Status.Hold != "":
			// The control plane holds it back: guests still up on this
			// host leave no room for it yet.
			a.log.Debug("start held back", "workspace", w.Spec.Name, "why", w.Status.Hold)
		case suspended:
			// Start resumes a suspended guest from its saved memory.
			a.async(ctx, w, a.start)
		case exists && a.startedGeneration(w.ID) >= w.Status.Generation:
			// It ran for this generation and stopped on its own: the guest
			// powered off or QEMU died. Say so; the user decides what next.
			reason := inst.ExitReason
			if reason == "" {
				reason = "the guest stopped by itself"
			}
			a.report(ctx, w, inst, reason)
		default:
			a.async(ctx, w, a.start)
		}
	case model.DesiredSuspended:
		// The lease calendar preempted it: save its memory, end the
		// process; desired running later resumes it (Start).
		if running {
			a.async(ctx, w, a.suspend)
		} else if exists {
			a.report(ctx, w, inst, w.Status.Reason)
		}
	case model.DesiredStopped:
		if running || suspended {
			a.async(ctx, w, a.stop)
		} else {
			a.report(ctx, w, inst, w.Status.Reason)
		}
	case model.DesiredDeleted:
		a.async(ctx, w, a.delete)
	}
}

func (a *Agent) isBusy(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.busy[id]
}

func (a *Agent) async(ctx context.Context, w model.Workspace, op func(context.Context, model.Workspace)) {
	a.mu.Lock()
	if a.busy[w.ID] {
		a.mu.Unlock()
		return
	}
	a.busy[w.ID] = true
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			a.mu.Lock()
			delete(a.busy, w.ID)
			a.mu.Unlock()
		}()
		op(ctx, w)
	}()
}

func (a *Agent) start(ctx context.Context, w model.Workspace) {
	log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "id", w.ID)
	img, err := a.images.ensure(ctx, a.client(), w.Spec.Image)
	if err != nil {
		a.fail(ctx, w, fmt.Sprintf("image %s: %v", w.Spec.Image, err))
		return
	}
	hostname := w.Spec.Name
	if w.Spec.Context != nil && w.Spec.Context.Hostname != "" {
		hostname = w.Spec.Context.Hostname
	}
	// Its networks and taps (network.go), before the generation is
	// recorded: a workspace waiting for its network has not started.
	nics, err := a.prepareNICs(w)
	if errors.Is(err, errNetworkPending) {
		a.netMu.Lock()
		a.netWarn("pending/"+w.ID, "start waits for its network", "workspace", w.Project+"/"+w.Spec.Name, "id", w.ID, "why", err)
		a.netMu.Unlock()
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("start failed: network", "err", err)
			a.fail(ctx, w, "network: "+err.Error())
		}
		return
	}
	a.netMu.Lock()
	a.netOK("pending/" + w.ID)
	a.netMu.Unlock()
	// Its network volumes, wherever they are served (volumes.go).
	vols, err := a.volumeAttachments(w)
	if errors.Is(err, errVolumePending) {
		a.netMu.Lock()
		a.netWarn("volumes/"+w.ID, "start waits for its volumes", "workspace", w.Project+"/"+w.Spec.Name, "id", w.ID, "why", err)
		a.netMu.Unlock()
		return
	}
	if err != nil {
		log.Warn("start failed: volumes", "err", err)
		a.fail(ctx, w, "volumes: "+err.Error())
		return
	}
	if err := a.setStartedGeneration(w.ID, w.Status.Generation); err != nil {
		log.Warn("record generation", "err", err)
	}
	spec := instanceSpec(w, w.Spec.Quantum, img, nics)
	spec.Hostname = hostname
	spec.Volumes = vols
	inst, err := a.drv.Start(ctx, spec)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		log.Warn("start failed", "err", err)
		a.fail(ctx, w, "start: "+err.Error())
		return
	}
	a.mu.Lock()
	a.applied[w.ID] = w.Spec.Quantum
	delete(a.resizeFailed, w.ID)
	a.mu.Unlock()
	log.Info("workspace started", "pid", inst.PID, "accel", inst.Accel)
	a.report(ctx, w, inst, "")
}

func (a *Agent) stop(ctx context.Context, w model.Workspace) {
	a.reportState(ctx, w, model.StateStopping, w.Status.Reason)
	if err := a.drv.Stop(ctx, w.ID, a.cfg.StopTimeout); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		a.log.Warn("stop failed", "workspace", w.Spec.Name, "err", err)
		return
	}
	inst, err := a.drv.Get(ctx, w.ID)
	if err != nil {
		inst = hypervisor.Instance{ID: w.ID, State: hypervisor.InstanceStopped}
	}
	a.report(ctx, w, inst, w.Status.Reason)
}

func (a *Agent) suspend(ctx context.Context, w model.Workspace) {
	log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "id", w.ID)
	res, err := a.drv.Suspend(ctx, w.ID)
	if err != nil && !errors.Is(err, hypervisor.ErrNotRunning) {
		if ctx.Err() == nil {
			log.Warn("suspend failed", "err", err)
		}
		return
	}
	a.mu.Lock()
	a.saved[w.ID] = a.now()
	a.mu.Unlock()
	log.Info("workspace suspended", "bytes", res.Bytes, "took", res.Duration)
	inst, err := a.drv.Get(ctx, w.ID)
	if err != nil {
		return
	}
	a.report(ctx, w, inst, w.Status.Reason)
}

func (a *Agent) delete(ctx context.Context, w model.Workspace) {
	if err := a.drv.Delete(ctx, w.ID); err != nil {
		a.log.Warn("delete failed", "workspace", w.Spec.Name, "err", err)
		return
	}
	_ = os.Remove(a.genPath(w.ID))
	if err := a.client().Deleted(ctx, a.node, w); err != nil && ctx.Err() == nil {
		a.log.Warn("report deletion", "workspace", w.Spec.Name, "err", err)
		return
	}
	a.forgetInstance(w.ID)
	a.log.Info("workspace deleted", "workspace", w.Project+"/"+w.Spec.Name, "id", w.ID)
}

// forgetInstance drops what the agent keeps about a torn-down instance.
func (a *Agent) forgetInstance(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sent, id)
	delete(a.sending, id)
	delete(a.cpuRead, id)
	delete(a.console, id)
	delete(a.saved, id)
	delete(a.rosters, id)
	delete(a.rosterRetry, id)
	delete(a.applied, id)
	delete(a.resizeFailed, id)
	delete(a.prepared, id)
	delete(a.outMigs, id)
}

func (a *Agent) fail(ctx context.Context, w model.Workspace, reason string) {
	a.reportState(ctx, w, model.StateFailed, reason)
}

func (a *Agent) reportState(ctx context.Context, w model.Workspace, st model.State, reason string) {
	a.send(ctx, w, api.AgentReport{ID: w.ID, Generation: w.Status.Generation, State: st, Reason: reason})
}

// report turns the driver's view into a report.
func (a *Agent) report(ctx context.Context, w model.Workspace, inst hypervisor.Instance, reason string) {
	r := api.AgentReport{
		ID: w.ID, Generation: w.Status.Generation, Reason: reason,
		PID: inst.PID, Accel: inst.Accel, Cgroup: inst.Cgroup, Guest: a.withRoster(w.ID, inst.Guest),
	}
	switch {
	case inst.State == hypervisor.InstanceSuspended:
		r.State = model.StateSuspended
		r.PID = 0
		if inst.Saved != nil {
			a.mu.Lock()
			r.Suspended = a.saved[w.ID]
			a.mu.Unlock()
			r.SuspendTook, r.SuspendBytes = model.Duration(inst.Saved.Duration), inst.Saved.Bytes
		}
	case inst.State == hypervisor.InstanceStopped || inst.State == "":
		r.State = model.StateStopped
		r.PID = 0
	case inst.Guest != nil:
		r.State = model.StateRunning
	default:
		r.State = model.StateStarting
	}
	if r.State != model.StateStopped && r.State != model.StateSuspended {
		r.Applied = a.appliedQuantum(w.ID)
		r.StartedAt = inst.StartedAt
		r.ProcessStarted = inst.StartedAt
		a.mu.Lock()
		r.AgentReceived = a.received[w.ID+"/"+strconv.FormatInt(w.Status.Generation, 10)]
		a.mu.Unlock()
	}
	if inst.LastResume != nil && r.State != model.StateStopped && r.State != model.StateSuspended {
		r.Resumed, r.ResumeTook = inst.StartedAt, model.Duration(inst.LastResume.Duration)
	}
	if r.State == model.StateRunning {
		r.GuestReady = w.Status.Timings.GuestReady
		if r.GuestReady.IsZero() {
			r.GuestReady = a.now()
		}
	}
	r.CPUSeconds = a.cpuSeconds(w.ID, inst, r.State)
	if r.State == model.StateRunning {
		a.pushRoster(ctx, w, r.Guest)
	}
	a.send(ctx, w, r)
}

// cpuRead is a CPU counter read of one process of a workspace.
type cpuRead struct {
	started time.Time // the process's StartedAt
	seconds float64
}

// cpuSeconds is the CPU counter a report in state st carries: a running
// process's current one, or the final one of the process that ended. Should
// the driver not know the final one, the last one read of the same process
// stands in (a little short of it).
func (a *Agent) cpuSeconds(id string, inst hypervisor.Instance, st model.State) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st != model.StateStopped && st != model.StateSuspended {
		if inst.CPUSeconds > 0 {
			a.cpuRead[id] = cpuRead{started: inst.StartedAt, seconds: inst.CPUSeconds}
		}
		return inst.CPUSeconds
	}
	if inst.FinalCPUSeconds > 0 {
		return inst.FinalCPUSeconds
	}
	if last, ok := a.cpuRead[id]; ok && !inst.StartedAt.IsZero() && last.started.Equal(inst.StartedAt) {
		return last.seconds
	}
	return 0
}

// usageMinDelta is how far (in CPU seconds) a counter must have moved for a
// report to be sent for it alone.
const usageMinDelta = 0.05

// sentReport is the last report sent for a workspace.
type sentReport struct {
	key string    // the report as JSON, less what changes all the time
	cpu float64   // its CPU counter
	at  time.Time // when it was sent
}

// reportKey is r as JSON without what changes all the time: the guest's
// uptime and the CPU counter (sent on their own at most every UsageEvery).
func reportKey(r api.AgentReport) string {
	r.CPUSeconds = 0
	if r.State == model.StateRunning && r.Guest != nil {
		g := *r.Guest
		g.UptimeS = 0
		r.Guest = &g
		r.GuestReady = time.Time{}
	}
	b, _ := json.Marshal(r)
	return string(b)
}

// send posts a report unless it says what the last one said, or differs
// from it only by a CPU counter that moved less than usageMinDelta or was
// sent less than UsageEvery ago. Every report is sent at most once per
// resync or driver change, so a running workspace whose only news is its
// CPU counter gets one report per UsageEvery (rounded up to the resync).
// Reports of one workspace are sent one at a time: each report wakes the
// agent's watch of its assignments, whose reconcile must see that the
// report it would send is on its way.
func (a *Agent) send(ctx context.Context, w model.Workspace, r api.AgentReport) {
	defer a.sendLock(w.ID)()
	key := reportKey(r)
	now := a.now()
	a.mu.Lock()
	last, ok := a.sent[w.ID]
	a.mu.Unlock()
	cpuDue := r.CPUSeconds-last.cpu > usageMinDelta && now.Sub(last.at) >= a.cfg.UsageEvery
	// Resend when the server's record disagrees (e.g. after a restart of the server).
	if ok && last.key == key && string(w.Status.State) == string(r.State) && !cpuDue {
		return
	}
	if err := a.client().Report(ctx, a.node, w, r); err != nil {
		if ctx.Err() == nil {
			a.log.Warn("report", "workspace", w.Spec.Name, "state", r.State, "err", err)
		}
		return
	}
	a.mu.Lock()
	a.sent[w.ID] = sentReport{key: key, cpu: r.CPUSeconds, at: now}
	a.mu.Unlock()
}

// sendLock locks the sending of id's reports and returns the unlock.
func (a *Agent) sendLock(id string) func() {
	a.mu.Lock()
	m := a.sending[id]
	if m == nil {
		m = &sync.Mutex{}
		a.sending[id] = m
	}
	a.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// pushConsoles uploads console tails that grew.
func (a *Agent) pushConsoles(ctx context.Context) {
	a.mu.Lock()
	list := make([]model.Workspace, 0, len(a.assigned))
	for _, w := range a.assigned {
		if w.Desired != model.DesiredDeleted {
			list = append(list, w)
		}
	}
	a.mu.Unlock()
	for _, w := range list {
		tail, err := a.drv.ConsoleLog(ctx, w.ID, 64<<10)
		if err != nil {
			continue
		}
		sum := fnv.New64a()
		sum.Write(tail)
		h := sum.Sum64()
		a.mu.Lock()
		last := a.console[w.ID]
		a.mu.Unlock()
		if h == last {
			continue
		}
		if err := a.client().PutConsole(ctx, a.node, w, tail); err != nil {
			continue
		}
		a.mu.Lock()
		a.console[w.ID] = h
		a.mu.Unlock()
	}
}

// The generation an instance was last started for is kept on disk, so that
// a restarted agent can tell "stopped by itself" from "not started yet".
func (a *Agent) genPath(id string) string { return filepath.Join(a.cfg.DataDir, "generations", id) }

func (a *Agent) startedGeneration(id string) int64 {
	b, err := os.ReadFile(a.genPath(id))
	if err != nil {
		return 0
	}
	g, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return g
}

func (a *Agent) setStartedGeneration(id string, g int64) error {
	if err := os.MkdirAll(filepath.Dir(a.genPath(id)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(a.genPath(id), []byte(strconv.FormatInt(g, 10)), 0o600)
}

// sweepOrphans ends what the driver has on this host and no workspace
// wants: it stops the guest of an instance of no workspace assigned here
// (keeping its disk), kills a QEMU process whose instance directory is
// gone (List reports it), and a process
// of a workspace that wants none, left without instance files (Get does
// not find it, so reconcile cannot stop it). The assignments the agent
// holds may be older than the instances (a workspace just placed here),
// so unknown IDs are checked against a fresh answer of the control plane
// before anything is deleted; nothing is deleted while it cannot be asked.
func (a *Agent) sweepOrphans(ctx context.Context) {
	insts, err := a.drv.List(ctx)
	if err != nil {
		return
	}
	a.mu.Lock()
	assigned := make(map[string]model.Workspace, len(a.assigned))
	for id, w := range a.assigned {
		assigned[id] = w
	}
	incoming := map[string]bool{}
	for id := range a.liveIn {
		incoming[id] = true
	}
	a.mu.Unlock()
	var unknown []string
	for _, in := range insts {
		if a.isBusy(in.ID) {
			continue
		}
		w, ok := assigned[in.ID]
		if !ok && incoming[in.ID] {
			continue // prepared for a migration coming here
		}
		if !ok {
			unknown = append(unknown, in.ID)
			continue
		}
		if in.PID > 0 && (w.Desired == model.DesiredStopped || w.Desired == model.DesiredSuspended) {
			if _, err := a.drv.Get(ctx, in.ID); errors.Is(err, hypervisor.ErrNotFound) {
				a.async(ctx, w, a.deleteOrphan)
			}
		}
	}
	if len(unknown) == 0 {
		return
	}
	cl := a.client()
	if cl == nil {
		return
	}
	as, err := cl.Assignments(ctx, a.node, 0, 0)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("assignments, to check instances no workspace wants", "err", err)
		}
		return
	}
	wanted := map[string]bool{}
	for _, w := range as.Workspaces {
		wanted[w.ID] = true
	}
	for _, w := range as.Incoming {
		wanted[w.ID] = true
	}
	for _, in := range insts {
		if !slices.Contains(unknown, in.ID) || wanted[in.ID] {
			continue
		}
		// A guest no workspace here wants must not run (it would hold no
		// lease), but its disk is kept: the control plane may have been
		// restored from an older backup that does not know it yet.
		if _, err := a.drv.Get(ctx, in.ID); errors.Is(err, hypervisor.ErrNotFound) {
			a.async(ctx, model.Workspace{ID: in.ID}, a.deleteOrphan) // only a stray process: no files
		} else if in.PID > 0 {
			a.async(ctx, model.Workspace{ID: in.ID}, a.stopOrphan)
		}
	}
}

// stopOrphan stops the guest of an instance no workspace assigned here
// wants; its files stay.
func (a *Agent) stopOrphan(ctx context.Context, w model.Workspace) {
	if err := a.drv.Stop(ctx, w.ID, a.cfg.StopTimeout); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		if ctx.Err() == nil {
			a.log.Warn("stop a guest no workspace wants", "id", w.ID, "err", err)
		}
		return
	}
	a.log.Warn("stopped a guest that no workspace assigned to this host wants; its disk is kept in the instance directory", "id", w.ID)
}

// deleteOrphan deletes an instance that no workspace wants (w has only its
// ID), or the stray process of one that wants none.
func (a *Agent) deleteOrphan(ctx context.Context, w model.Workspace) {
	if err := a.drv.Delete(ctx, w.ID); err != nil {
		if ctx.Err() == nil {
			a.log.Warn("delete an instance no workspace wants", "id", w.ID, "err", err)
		}
		return
	}
	if w.Spec.Name == "" {
		_ = os.Remove(a.genPath(w.ID))
		a.forgetInstance(w.ID)
		a.log.Warn("deleted an instance that no workspace assigned to this host wants", "id", w.ID)
		return
	}
	a.log.Warn("killed a guest process left without its instance files", "workspace", w.Project+"/"+w.Spec.Name, "id", w.ID)
}
