package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// The guest fault suite's vgrid up, its workload, and when it kills.

// Bounds of the run.
const (
	gfConvergeWithin = 90 * time.Second  // after a restart
	gfBootBound      = 150 * time.Second // a guest may be Starting this long
	gfPausedBound    = 30 * time.Second
	gfLoopBudget     = 270 * time.Second // for the kills, the default 15 of them
	gfHardLimit      = 11 * time.Minute
)

// ---------------------------------------------------------------------------
// vgrid up, killed and restarted.

type gfUp struct {
	bin, dataDir, imgDir, cfgPath, logPath string
	cmd                                    *exec.Cmd
	done                                   chan struct{} // closed when cmd has exited
	starts                                 int
}

func (u *gfUp) running() bool {
	if u.cmd == nil {
		return false
	}
	select {
	case <-u.done:
		return false
	default:
		return true
	}
}

func (u *gfUp) logf(format string, args ...any) {
	f, err := os.OpenFile(u.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "=== test %s: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	f.Close()
}

// start runs vgrid up and waits until its agent has called in (registered
// or sent a heartbeat), which it does once the driver has adopted and
// settled every instance.
// hook, if not nil, is called once with a client as soon as the API
// answers, before the agent has registered.
func (u *gfUp) start(hook func(cl *client.Client)) error {
	_ = os.Remove(u.cfgPath)
	u.starts++
	u.logf("start %d", u.starts)
	lf, err := os.OpenFile(u.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(u.bin, "up", "--data-dir", u.dataDir, "--listen", "127.0.0.1:0",
		"--write-config=false", "--image", u.imgDir, "--node-name", "fault-host")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	t0 := time.Now()
	err = cmd.Start()
	lf.Close()
	if err != nil {
		return err
	}
	u.cmd, u.done = cmd, make(chan struct{})
	done := u.done
	go func() { _ = cmd.Wait(); close(done) }()
	hooked := hook == nil
	deadline := t0.Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("vgrid up exited during its start: %v", cmd.ProcessState)
		default:
		}
		if cl := u.clientOrNil(); cl != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			nodes, err := cl.Nodes(ctx)
			cancel()
			if err == nil {
				if !hooked {
					hooked = true
					hook(cl)
				}
				if len(nodes) > 0 && nodes[0].Ready && !nodes[0].LastHeartbeat.Before(t0) {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("vgrid up: its agent did not call in within 90s")
}

func (u *gfUp) clientOrNil() *client.Client {
	cfg, err := client.LoadConfigFile(u.cfgPath)
	if err != nil || cfg.Token == "" {
		return nil
	}
	cl, err := client.New(cfg)
	if err != nil {
		return nil
	}
	return cl
}

func (u *gfUp) kill9() {
	if !u.running() {
		return
	}
	_ = u.cmd.Process.Signal(syscall.SIGKILL)
	<-u.done
	u.logf("SIGKILL (pid %d)", u.cmd.Process.Pid)
}

func (u *gfUp) stop() {
	if !u.running() {
		return
	}
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(15 * time.Second):
		u.kill9()
	}
}

func (u *gfUp) logTail(n int) string {
	b, _ := os.ReadFile(u.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------
// The host: QEMU processes, their cgroups, their QMP sockets.

func (r *gfRun) specYAML(name, kind string, dur time.Duration, start time.Time) []byte {
	s := fmt.Sprintf("name: %s\nimage: %s\nquantum: {vcpus: 1, cpu: %.3f, memory: 128Mi, disk: 1Gi}\nduration: %s\n",
		name, r.image, float64(r.cpuMilli)/1000, dur)
	switch kind {
	case "create-be":
		s += "lease: {kind: best-effort}\n"
	case "create-res":
		s += fmt.Sprintf("lease: {kind: reservation, start: %q}\n", start.UTC().Format(time.RFC3339))
	}
	return []byte(s)
}

// bootEstimate is the slowest boot the host measured (what the calendar
// plans reservations with), at least 20 s.
func (r *gfRun) bootEstimate(cl *client.Client) time.Duration {
	est := 20 * time.Second
	ctx, cancel := r.ctx()
	defer cancel()
	if nodes, err := cl.Nodes(ctx); err == nil && len(nodes) == 1 && nodes[0].Measured != nil {
		for _, b := range nodes[0].Measured.Boot {
			est = max(est, b.D())
		}
	}
	return est
}

func (r *gfRun) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.rng.Int63n(int64(hi-lo)))
}

// do sends one operation through the API; refusals are part of the game.
func (r *gfRun) do(op gfOp) {
	r.doWith(r.client(), op)
}

func (r *gfRun) doWith(cl *client.Client, op gfOp) {
	r.opCount[op.kind]++
	if cl == nil {
		r.logOp("%s: vgrid up is not running", op)
		return
	}
	ctx, cancel := r.ctx()
	defer cancel()
	var err error
	detail := ""
	switch op.kind {
	case "create-be", "create-imm":
		dur := r.uniform(3*time.Minute, 6*time.Minute).Round(time.Second)
		if r.rng.Float64() < 0.3 {
			dur = r.uniform(45*time.Second, 90*time.Second).Round(time.Second) // ends during the run
		}
		_, err = cl.CreateWorkspace(ctx, r.specYAML(op.name, op.kind, dur, time.Time{}))
		detail = "for " + dur.String()
	case "create-res":
		dur := r.uniform(15*time.Second, 30*time.Second).Round(time.Second)
		start := time.Now().Add(r.bootEstimate(cl) + r.uniform(8*time.Second, 18*time.Second)).Truncate(time.Second)
		_, err = cl.CreateWorkspace(ctx, r.specYAML(op.name, op.kind, dur, start))
		detail = fmt.Sprintf("from %s for %s", start.Format(time.TimeOnly), dur)
	case "stop":
		_, err = cl.StopWorkspace(ctx, op.name)
	case "start":
		_, err = cl.StartWorkspace(ctx, op.name)
	case "delete":
		err = cl.DeleteWorkspace(ctx, op.name)
	case "cancel":
		_, err = cl.CancelLease(ctx, op.name)
	}
	res := "ok"
	if err != nil {
		res = "refused: " + strings.SplitN(err.Error(), "\n", 2)[0]
		if len(res) > 160 {
			res = res[:160] + "…"
		}
	}
	r.logOp("%s %s: %s", op, detail, res)
}

// pickOps chooses one or two operations, weighted so that the host stays
// full of guests, most of them best effort, and that a reservation comes
// whenever it is full and none waits: it preempts (suspends) a best-effort
// guest at its start and lets it resume at its end.
func (r *gfRun) pickOps(s *gfSnap) []gfOp {
	if s.err != nil {
		return nil
	}
	type cand struct {
		w  float64
		op gfOp
	}
	var cands []cand
	var free []string
	for _, n := range r.names {
		if _, ok := s.byName[n]; !ok {
			free = append(free, n)
		}
	}
	active, holding, resWaiting, resRunning, suspended := 0, 0, false, false, false
	for _, w := range s.ws {
		l, ok := s.leaseOf(w)
		if !ok || !gfLeaseActive(l.State) || w.Desired == model.DesiredDeleted {
			continue
		}
		active++
		switch model.LeaseState(l.State) {
		case model.LeaseRunning, model.LeaseSuspended:
			holding++
		}
		if l.State == string(model.LeaseSuspended) {
			suspended = true
		}
		if w.Spec.LeaseKind() == model.LeaseReservation {
			resWaiting = resWaiting || l.State == string(model.LeaseScheduled)
			resRunning = resRunning || l.State == string(model.LeaseRunning)
		}
	}
	full := holding >= r.fit
	switch {
	case resWaiting:
		// Leave the host full: the reservation is to preempt one of its
		// best-effort guests (the kill waits for that suspend). At most
		// one more best-effort guest, which queues.
		if len(free) > 0 && r.rng.Float64() < 0.3 {
			return []gfOp{{"create-be", free[r.rng.Intn(len(free))]}}
		}
		return nil
	case resRunning && suspended && r.rng.Float64() < 0.8:
		// Let the reservation end and the suspended guest resume.
		return nil
	}
	if len(free) > 0 {
		n := free[r.rng.Intn(len(free))]
		switch {
		case !full:
			cands = append(cands, cand{6, gfOp{"create-be", n}}, cand{1.5, gfOp{"create-imm", n}})
		default:
			cands = append(cands, cand{1, gfOp{"create-be", n}}, cand{0.3, gfOp{"create-imm", n}})
		}
		if !resWaiting && full {
			cands = append(cands, cand{8, gfOp{"create-res", n}})
		}
	}
	for _, w := range s.ws {
		if w.Desired == model.DesiredDeleted {
			continue
		}
		l, ok := s.leaseOf(w)
		n := w.Spec.Name
		switch {
		case ok && gfLeaseActive(l.State) && w.Spec.LeaseKind() == model.LeaseReservation && l.State == string(model.LeaseScheduled):
			cands = append(cands, cand{0.05, gfOp{"cancel", n}})
		case ok && gfLeaseActive(l.State):
			if full {
				cands = append(cands, cand{0.7, gfOp{"stop", n}}, cand{0.35, gfOp{"cancel", n}}, cand{0.2, gfOp{"delete", n}})
			} else {
				cands = append(cands, cand{0.2, gfOp{"stop", n}}, cand{0.1, gfOp{"cancel", n}})
			}
		case w.Status.State == model.StateStopped || w.Status.State == model.StateFailed:
			if w.Spec.LeaseKind() != model.LeaseReservation {
				cands = append(cands, cand{map[bool]float64{true: 1, false: 3}[full], gfOp{"start", n}})
			}
			cands = append(cands, cand{0.8, gfOp{"delete", n}})
		}
	}
	k := 1
	if r.rng.Float64() < 0.3 {
		k = 2
	}
	var out []gfOp
	for len(out) < k && len(cands) > 0 {
		var sum float64
		for _, c := range cands {
			sum += c.w
		}
		x := r.rng.Float64() * sum
		i := 0
		for ; i < len(cands)-1; i++ {
			if x -= cands[i].w; x < 0 {
				break
			}
		}
		op := cands[i].op
		out = append(out, op)
		// One operation per workspace in a cycle.
		kept := cands[:0]
		for _, c := range cands {
			if c.op.name != op.name {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	return out
}

// pickTrigger chooses when the kill comes: at a suspend or resume the
// calendar has coming, at the start or stop the operation began, or at
// a random moment.
func (r *gfRun) pickTrigger(s *gfSnap, ops []gfOp, behind bool) gfTrigger {
	now := time.Now()
	if !behind && s.err == nil {
		// A reservation's start suspends a best-effort guest (at its
		// start less the boot time, when its guest is launched); its end
		// resumes it.
		var suspendBy, resumeBy time.Time
		anySuspended := false
		for _, w := range s.ws {
			if l, ok := s.leaseOf(w); ok && l.State == string(model.LeaseSuspended) {
				anySuspended = true
			}
		}
		for _, w := range s.ws {
			l, ok := s.leaseOf(w)
			if !ok || w.Spec.LeaseKind() != model.LeaseReservation {
				continue
			}
			switch model.LeaseState(l.State) {
			case model.LeaseScheduled:
				if l.Start.Before(now.Add(60 * time.Second)) {
					suspendBy = l.Start
				}
			case model.LeaseRunning:
				if anySuspended && l.End.Before(now.Add(45*time.Second)) {
					resumeBy = l.End
				}
			}
		}
		switch {
		case !suspendBy.IsZero() && r.rng.Float64() < 0.85:
			return gfTrigger{kind: "suspend", delay: r.uniform(0, 150*time.Millisecond),
				maxWait: min(60*time.Second, max(5*time.Second, time.Until(suspendBy)+10*time.Second))}
		case !resumeBy.IsZero() && r.rng.Float64() < 0.85:
			return gfTrigger{kind: "resume", delay: r.uniform(0, 200*time.Millisecond),
				maxWait: min(60*time.Second, max(5*time.Second, time.Until(resumeBy)+25*time.Second))}
		}
	}
	if len(ops) > 0 && r.rng.Float64() < 0.75 {
		op := ops[0]
		switch op.kind {
		case "create-be", "create-imm", "start":
			d := r.uniform(0, 400*time.Millisecond)
			if r.rng.Float64() < 0.35 {
				d = r.uniform(time.Second, 12*time.Second) // mid-boot
			}
			return gfTrigger{kind: "start", name: op.name, delay: d, maxWait: 20 * time.Second}
		case "stop", "cancel", "delete":
			// A booted guest powers off in a tenth of a second: most kills
			// come right after the request; some wait to see it Stopping
			// (a guest still booting takes longer).
			if r.rng.Float64() < 0.6 {
				return gfTrigger{kind: "op", delay: r.uniform(0, 250*time.Millisecond)}
			}
			return gfTrigger{kind: "stop", name: op.name, delay: r.uniform(0, 500*time.Millisecond), maxWait: 15 * time.Second}
		}
	}
	if !behind && s.err == nil && r.rng.Float64() < 0.5 {
		// A lease that ends soon: the calendar stops its guest at its end.
		var end time.Time
		for _, w := range s.ws {
			if l, ok := s.leaseOf(w); ok && l.State == string(model.LeaseRunning) && l.End.After(now) && l.End.Before(now.Add(25*time.Second)) {
				if end.IsZero() || l.End.Before(end) {
					end = l.End
				}
			}
		}
		if !end.IsZero() {
			return gfTrigger{kind: "lease-end", delay: time.Until(end) + r.uniform(0, 400*time.Millisecond)}
		}
	}
	if r.rng.Float64() < 0.5 {
		return gfTrigger{kind: "op", delay: r.uniform(0, 1500*time.Millisecond)}
	}
	hi := 8 * time.Second
	if behind {
		hi = 3 * time.Second
	}
	return gfTrigger{kind: "random", delay: r.uniform(500*time.Millisecond, hi)}
}

// underWay says what the host and the last snapshot show under way.
func (r *gfRun) underWay(s *gfSnap) []string {
	set := map[string]bool{}
	for _, op := range gfIntents(r.instDir) {
		switch op {
		case "suspending":
			set["suspend"] = true
		case "resuming":
			set["resume"] = true
		default:
			set["intent:"+op] = true
		}
	}
	byID, shells := gfGroup(gfScan(r.instDir))
	if len(shells) > 0 {
		set["start(launch)"] = true
	}
	for _, qs := range byID {
		for _, q := range qs {
			if first, ok := r.sampler.firstSeen(q.PID); !ok || time.Since(first) < 2*time.Second {
				set["start(launch)"] = true
			}
		}
	}
	if s != nil {
		for _, w := range s.ws {
			st := w.Status.State
			switch {
			case w.Desired == model.DesiredDeleted:
				set["delete"] = true
			case st == model.StateStopping || (w.Desired == model.DesiredStopped && (st == model.StateRunning || st == model.StateStarting)):
				set["stop"] = true
			case w.Desired == model.DesiredSuspended && st != model.StateSuspended && st != model.StateStopped:
				set["suspend"] = true
			case w.Desired == model.DesiredRunning && st == model.StateSuspended:
				set["resume"] = true
			case st == model.StateStarting:
				set["start(boot)"] = true
			case w.Desired == model.DesiredRunning && st == model.StatePending:
				set["start(pending)"] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"idle"}
	}
	return out
}

// waitTrigger waits for the trigger's moment; it returns what it saw.
func (r *gfRun) waitTrigger(tr gfTrigger) (string, *gfSnap) {
	if tr.kind == "op" || tr.kind == "random" || tr.kind == "lease-end" {
		time.Sleep(tr.delay)
		return tr.kind, nil
	}
	start := time.Now()
	var id string
	before := map[int]bool{}
	if tr.name != "" {
		if s := r.snapshot(); s.err == nil {
			if w, ok := s.byName[tr.name]; ok {
				id = w.ID
				for _, q := range s.procs[id] {
					before[q.PID] = true
				}
			}
		}
	}
	var lastAPI time.Time
	var snap *gfSnap
	for time.Since(start) < tr.maxWait {
		// The host, every 25 ms.
		switch tr.kind {
		case "suspend", "resume":
			want := map[string]string{"suspend": "suspending", "resume": "resuming"}[tr.kind]
			for _, op := range gfIntents(r.instDir) {
				if op == want {
					time.Sleep(tr.delay)
					return "intent " + want, snap
				}
			}
		case "start":
			if id != "" {
				byID, shells := gfGroup(gfScan(r.instDir))
				if shells[id] {
					time.Sleep(tr.delay)
					return "launch shell of " + tr.name, snap
				}
				for _, q := range byID[id] {
					if !before[q.PID] {
						time.Sleep(tr.delay)
						return "new QEMU of " + tr.name, snap
					}
				}
			}
		}
		// The API, every 250 ms.
		if time.Since(lastAPI) > 250*time.Millisecond {
			lastAPI = time.Now()
			snap = r.snapshot()
			if snap.err == nil {
				switch tr.kind {
				case "start":
					if w, ok := snap.byName[tr.name]; ok {
						if id == "" {
							id = w.ID
						}
						if w.Status.State == model.StateStarting {
							time.Sleep(tr.delay)
							return tr.name + " Starting", snap
						}
					}
				case "stop":
					w, ok := snap.byName[tr.name]
					if !ok {
						return tr.name + " gone", snap
					}
					if w.Status.State == model.StateStopping {
						time.Sleep(tr.delay)
						return tr.name + " Stopping", snap
					}
					if w.Status.State == model.StateStopped || w.Status.State == model.StateFailed {
						return tr.name + " " + string(w.Status.State) + " already", snap
					}
				case "suspend":
					for _, w := range snap.ws {
						if w.Desired == model.DesiredSuspended && w.Status.State == model.StateRunning {
							time.Sleep(tr.delay)
							return w.Spec.Name + " desired suspended", snap
						}
					}
				case "resume":
					for _, w := range snap.ws {
						if w.Desired == model.DesiredRunning && w.Status.State == model.StateSuspended {
							time.Sleep(tr.delay)
							return w.Spec.Name + " to resume", snap
						}
					}
				}
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return "timeout", snap
}

// killCycle waits for the trigger, kills vgrid up, probes the host while it
// is dead, restarts it (sometimes sending an operation before its agent is
// back, sometimes killing it again during its recovery) and waits for
// convergence.
func (r *gfRun) killCycle(tr gfTrigger) {
	saw, snap := r.waitTrigger(tr)
	label := fmt.Sprintf("kill %d (%s trigger%s: %s)", r.kills+1, tr.kind, map[bool]string{true: " on " + tr.name, false: ""}[tr.name != ""], saw)
	r.killAndProbe(label, snap)
	rekill := r.rng.Float64() < 0.12
	if err := r.restart(r.rng.Float64() < 0.25); err != nil {
		r.t.Fatalf("seed %d: %s: restart: %v\nvgrid up log (tail):\n%s", r.seed, label, err, r.up.logTail(60))
	}
	if rekill {
		time.Sleep(r.uniform(0, 2500*time.Millisecond))
		r.rekills++
		r.killAndProbe(fmt.Sprintf("kill %d (during the recovery)", r.kills+1), nil)
		if err := r.restart(false); err != nil {
			r.t.Fatalf("seed %d: restart: %v\nvgrid up log (tail):\n%s", r.seed, err, r.up.logTail(60))
		}
	}
	r.converge(label)
}

// killAndProbe SIGKILLs vgrid up and, while it is dead, asks every QEMU of
// the data directory for its run state. s is a recent snapshot (nil: one
// is taken): what the API said was under way; the host is read at once.
func (r *gfRun) killAndProbe(label string, s *gfSnap) {
	if s == nil {
		s = r.snapshot()
	}
	cats := r.underWay(s)
	r.up.kill9()
	killedAt := time.Now()
	counted := label != "final" && label != "final-recheck"
	if counted {
		r.kills++
	}
	r.windows++
	byID, _ := gfGroup(gfScan(r.instDir))
	var states []string
	next := map[int]gfPaused{}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		qs := byID[id]
		if len(qs) > 1 {
			r.fail("%s: workspace id %s has %d QEMU processes while vgrid up is dead: pids %v", label, id, len(qs), gfPIDs(qs))
		}
		for _, q := range qs {
			st, err := gfQMPStatus(q.QMP, 2*time.Second)
			intent := gfIntent(q.Dir)
			if err != nil && q.Root == q.PID && errors.Is(err, os.ErrNotExist) {
				// A QEMU still setting up before it daemonizes: no
				// socket yet.
				states = append(states, fmt.Sprintf("%s:%d:launching", id, q.PID))
				continue
			}
			if err != nil {
				if gfAlive(q.PID) {
					states = append(states, fmt.Sprintf("%s:%d:qmp-error", id, q.PID))
					r.t.Logf("  %s: QMP of %s pid %d: %v", label, id, q.PID, err)
				}
				continue
			}
			tag := st
			if intent != "" {
				tag += "+" + intent
			}
			states = append(states, fmt.Sprintf("%s:%d:%s", id, q.PID, tag))
			if st == "running" {
				continue
			}
			r.pausedSeen++
			obs := gfPaused{first: killedAt, window: r.windows, status: st, intent: intent, id: id}
			if prev, ok := r.paused[q.PID]; ok && prev.window == r.windows-1 {
				obs.first = prev.first
				if r.convergedSinceWindow {
					span := killedAt.Sub(prev.first)
					switch {
					case intent == "":
						r.fail("%s: QEMU pid %d of %s is %s with no suspend or resume under way, as it was (%s, intent %q) at the previous kill %s ago; the restart in between did not make it run",
							label, q.PID, id, st, prev.status, prev.intent, span.Round(time.Second))
					case span >= gfPausedBound:
						r.fail("%s: QEMU pid %d of %s has not run its guest for %s: %s (intent %q), and %s (intent %q) at the previous kill",
							label, q.PID, id, span.Round(time.Second), st, intent, prev.status, prev.intent)
					}
				}
			}
			if intent == "" {
				r.t.Logf("  %s: QEMU pid %d of %s found %s with no operation under way (vgrid up is dead)", label, q.PID, id, st)
			}
			next[q.PID] = obs
		}
	}
	r.paused = next
	r.convergedSinceWindow = false
	// What the dead window shows was cut short: a QEMU with a suspend or
	// resume intent, one still launching.
	for _, st := range states {
		switch {
		case strings.HasSuffix(st, "+suspending"):
			cats = append(cats, "suspend(interrupted)")
		case strings.HasSuffix(st, "+resuming"):
			cats = append(cats, "resume(interrupted)")
		case strings.HasSuffix(st, ":launching"):
			cats = append(cats, "start(interrupted launch)")
		}
	}
	// A stop that was asked for, or due at a lease's end, whose QEMU was
	// still there when vgrid up died.
	if s != nil {
		for _, w := range s.ws {
			qs := byID[w.ID]
			if len(qs) == 0 || gfIntent(qs[0].Dir) != "" {
				continue // not there, or being suspended or resumed
			}
			l, ok := s.leaseOf(w)
			switch {
			case w.Desired == model.DesiredDeleted:
				cats = append(cats, "delete(cut short)")
			case w.Desired == model.DesiredStopped:
				cats = append(cats, "stop(cut short)")
			case ok && l.State == string(model.LeaseRunning) && w.Desired == model.DesiredRunning && w.Spec.LeaseKind() != model.LeaseBestEffort &&
				!l.End.IsZero() && !l.End.After(killedAt):
				cats = append(cats, "stop(cut short)") // its lease's end was due
			}
		}
	}
	cats = gfUniq(cats)
	if counted {
		for _, c := range cats {
			r.killKinds[c]++
		}
	}
	r.t.Logf("%s at %s; under way: %s; QEMU: %s", label, time.Since(r.t0).Round(100*time.Millisecond), strings.Join(cats, ","), strings.Join(states, " "))
	// Sometimes leave it dead a while: timed events fall due meanwhile.
	if r.rng.Float64() < 0.15 {
		time.Sleep(r.uniform(2*time.Second, 6*time.Second))
	} else {
		time.Sleep(r.uniform(0, 1500*time.Millisecond))
	}
}

// restart starts vgrid up again; with op, one operation goes out as soon
// as the API answers, before the agent is back.
func (r *gfRun) restart(op bool) error {
	var hook func(cl *client.Client)
	if op {
		hook = func(cl *client.Client) {
			s := r.snapshotWith(cl)
			if ops := r.pickOps(s); len(ops) > 0 {
				r.postOps++
				r.logOp("(before the agent is back)")
				r.doWith(cl, ops[0])
			}
		}
	}
	return r.up.start(hook)
}

func (r *gfRun) snapshotWith(cl *client.Client) *gfSnap {
	s := &gfSnap{at: time.Now(), byName: map[string]model.Workspace{}, byID: map[string]model.Workspace{}, leases: map[string]api.Lease{}}
	ctx, cancel := r.ctx()
	defer cancel()
	s.ws, s.err = cl.ListWorkspaces(ctx)
	if s.err == nil {
		ls, err := cl.Leases(ctx)
		s.err = err
		for _, l := range ls {
			s.leases[l.ID] = l
		}
	}
	for _, w := range s.ws {
		s.byName[w.Spec.Name] = w
		s.byID[w.ID] = w
	}
	s.procs, s.shells = gfGroup(gfScan(r.instDir))
	return s
}
