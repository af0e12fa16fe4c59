package agent

import (
	"context"
	"encoding/json"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// Rosters of running cluster members.
//
// A member's roster (its context's cluster part) reaches its guest in the
// seed at boot. When the cluster changes while the guest runs (a scale),
// the control plane revises the roster in the member's record; the agent
// sees a guest that applied an older revision and pushes the new one
// through the guest agent's exec channel (`vgrid-guest-agent roster`,
// JSON on its standard input), then reports the revision applied, which
// makes the member contextualized again.

// guestAgentPath is the guest agent in the vgrid guest image.
const guestAgentPath = "/usr/sbin/vgrid-guest-agent"

// rosterPushTimeout bounds one push; a failed one is tried again after
// rosterRetryAfter.
const (
	rosterPushTimeout = 30 * time.Second
	rosterRetryAfter  = 15 * time.Second
)

// rosterDue is the revision to push to w's guest, which reports g: 0 when
// the guest has the current one (or is no cluster member, or has no guest
// agent). It is pure.
func rosterDue(w model.Workspace, g *model.GuestInfo, pushed int) int {
	if g == nil || w.Spec.Context == nil || w.Spec.Context.Cluster == nil {
		return 0
	}
	rev := w.Spec.Context.Cluster.Revision
	if max(g.Roster, pushed) >= rev {
		return 0
	}
	return rev
}

// withRoster is g with the roster revision the agent pushed since the
// guest's facts were read, if newer.
func (a *Agent) withRoster(id string, g *model.GuestInfo) *model.GuestInfo {
	if g == nil {
		return nil
	}
	a.mu.Lock()
	p := a.rosters[id]
	a.mu.Unlock()
	if p <= g.Roster {
		return g
	}
	c := *g
	c.Roster = p
	return &c
}

// pushRoster sends w's current roster to its running guest in the
// background, if the guest has an older one and no push is on its way.
func (a *Agent) pushRoster(ctx context.Context, w model.Workspace, g *model.GuestInfo) {
	a.mu.Lock()
	if a.rosters == nil {
		a.rosters, a.rosterBusy, a.rosterRetry = map[string]int{}, map[string]bool{}, map[string]time.Time{}
	}
	rev := rosterDue(w, g, a.rosters[w.ID])
	if rev == 0 || a.rosterBusy[w.ID] || a.now().Before(a.rosterRetry[w.ID]) {
		a.mu.Unlock()
		return
	}
	a.rosterBusy[w.ID] = true
	a.mu.Unlock()
	raw, _ := json.Marshal(w.Spec.Context.Cluster)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			a.mu.Lock()
			delete(a.rosterBusy, w.ID)
			a.mu.Unlock()
		}()
		pctx, cancel := context.WithTimeout(ctx, rosterPushTimeout)
		defer cancel()
		var out []byte
		res, err := a.drv.Exec(pctx, w.ID, hypervisor.ExecRequest{Argv: []string{guestAgentPath, "roster"}, Stdin: raw, Timeout: rosterPushTimeout},
			func(_ string, b []byte) error {
				if len(out) < 4096 {
					out = append(out, b...)
				}
				return nil
			})
		log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "revision", rev)
		if err != nil || res.ExitCode != 0 {
			if ctx.Err() == nil {
				log.Warn("push cluster roster", "err", err, "exit", res.ExitCode, "output", string(out), "retry_in", rosterRetryAfter)
			}
			a.mu.Lock()
			a.rosterRetry[w.ID] = a.now().Add(rosterRetryAfter)
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		a.rosters[w.ID] = rev
		a.mu.Unlock()
		log.Info("cluster roster pushed to the guest")
		a.kickReconcile()
	}()
}

// kickReconcile wakes the reconcile loop (its reports go out at once).
func (a *Agent) kickReconcile() {
	a.mu.Lock()
	k := a.kick
	a.mu.Unlock()
	if k == nil {
		return
	}
	select {
	case k <- struct{}{}:
	default:
	}
}
