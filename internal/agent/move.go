package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
	"vgrid/internal/transfer"
)

// Moving a stopped or suspended workspace between hosts. The control plane
// places it on another host with Status.Move naming where its files are;
// that host's agent (the destination) fetches them from the source's agent
// over mutually authenticated TLS (both present the host certificates the
// control plane's CA signed; the source serves a workspace only to the host
// the control plane says it moves to), checksummed and resumable, adopts
// them into its driver, and reports Moved. The source keeps its copy while
// the workspace is listed in its Outgoing assignments, and deletes it once
// the move is over.

// moveRetry is how long a failed fetch waits before the next attempt (the
// transfer itself retries network errors first).
const moveRetry = 5 * time.Second

// serveTransfers listens for other hosts' agents fetching the files of
// workspaces moving off this host; it returns when ctx ends.
func (a *Agent) serveTransfers(ctx context.Context, ln net.Listener) {
	srv := &http.Server{Handler: transfer.NewServer(a.authorizeTransfer, a.log), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
		a.log.Warn("transfer server", "err", err)
	}
}

// listenTransfers opens the transfer listener with the host certificate.
func (a *Agent) listenTransfers() (net.Listener, error) {
	cert, ca := a.TLS()
	return transfer.ListenTLS(a.cfg.TransferListen, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() }, ca)
}

// authorizeTransfer lets peer fetch workspace id's files if the control
// plane says id moves from here to peer and the instance is at rest.
func (a *Agent) authorizeTransfer(peer, id string) ([]transfer.File, error) {
	a.mu.Lock()
	o, ok := a.outgoing[id]
	a.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("workspace %s is not moving off this host: %w", id, transfer.ErrNotFound)
	}
	if o.To != peer {
		return nil, fmt.Errorf("workspace %s moves to %s, not to %s: %w", id, o.To, peer, transfer.ErrForbidden)
	}
	pf, err := a.drv.Portable(context.Background(), id)
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", id, err)
	}
	out := make([]transfer.File, len(pf))
	for i, f := range pf {
		out[i] = transfer.File{Name: f.Name, Path: f.Path, Size: f.Size}
	}
	return out, nil
}

// incoming reconciles a workspace whose files are on another host: fetch
// them once, adopt them, report Moved. It says whether the move is still
// under way (reconcile then does nothing else with the workspace).
func (a *Agent) incoming(ctx context.Context, w model.Workspace) bool {
	m := w.Status.Move
	if m == nil || w.Desired == model.DesiredDeleted {
		return false
	}
	if _, err := a.drv.Get(ctx, w.ID); err == nil {
		// Adopted already (the report was lost, or the agent restarted):
		// say so again.
		a.async(ctx, w, a.reportMoved)
		return true
	}
	a.mu.Lock()
	next := a.moveAt[w.ID]
	a.mu.Unlock()
	if a.now().Before(next) {
		return true
	}
	a.async(ctx, w, a.fetchMove)
	return true
}

// fetchMove copies a moving workspace's files here and adopts them.
func (a *Agent) fetchMove(ctx context.Context, w model.Workspace) {
	m := w.Status.Move
	log := a.log.With("workspace", w.Project+"/"+w.Spec.Name, "id", w.ID, "from", m.From)
	fail := func(err error) {
		wait := moveRetry
		var se *transfer.StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			// The source has not yet heard that it moves: soon.
			wait = time.Second
		}
		a.mu.Lock()
		a.moveAt[w.ID] = a.now().Add(wait)
		a.mu.Unlock()
		if ctx.Err() == nil {
			log.Warn("move: fetch failed; retrying", "err", err, "in", wait)
		}
	}
	if m.Source == "" {
		fail(fmt.Errorf("host %s serves no transfers (its agent has no --transfer-listen)", m.From))
		return
	}
	img, err := a.images.ensure(ctx, a.client(), w.Spec.Image)
	if err != nil {
		fail(fmt.Errorf("image %s: %w", w.Spec.Image, err))
		return
	}
	dir := filepath.Join(a.cfg.DataDir, "incoming", w.ID)
	_, ca := a.TLS()
	t0 := a.now()
	var lastReport time.Time
	files, err := transfer.Fetch(ctx, transfer.FetchOptions{
		URL: "https://" + m.Source, ID: w.ID, Dir: dir,
		TLS: transfer.ClientTLSConfig(a.clientCertificate, ca, m.From),
		Progress: func(done, total int64) {
			if now := a.now(); now.Sub(lastReport) >= 2*time.Second && done < total {
				lastReport = now
				_ = a.client().Report(ctx, a.node, w, api.AgentReport{ID: w.ID, Generation: w.Status.Generation, State: movingState(m), MoveBytes: total, MoveDone: done})
			}
		},
		Log: log,
	})
	if err != nil {
		fail(err)
		return
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	hostname := w.Spec.Name
	if w.Spec.Context != nil && w.Spec.Context.Hostname != "" {
		hostname = w.Spec.Context.Hostname
	}
	// The NICs as Start will give them (their taps are made at Start): a
	// suspended guest's saved machine has its interfaces.
	spec := hypervisor.InstanceSpec{ID: w.ID, Hostname: hostname, Quantum: w.Spec.Quantum, Image: img, Context: w.Spec.Context, NICs: nicSpecs(w)}
	if _, err := a.drv.Adopt(ctx, spec, dir); err != nil && !errors.Is(err, hypervisor.ErrExists) {
		fail(fmt.Errorf("adopt: %w", err))
		return
	}
	_ = os.RemoveAll(dir)
	took := a.now().Sub(t0)
	log.Info("move: files copied and adopted", "bytes", total, "took", took.Round(time.Millisecond),
		"rate", model.ByteSize(float64(total)/max(took.Seconds(), 1e-3)).Human()+"/s")
	a.mu.Lock()
	a.moveBytes[w.ID] = total
	a.mu.Unlock()
	if total >= 1<<20 && took > 0 {
		a.stageSample(int64(float64(total) / took.Seconds()))
	}
	a.reportMoved(ctx, w)
}

// reportMoved tells the control plane the workspace's files are here.
func (a *Agent) reportMoved(ctx context.Context, w model.Workspace) {
	a.mu.Lock()
	total := a.moveBytes[w.ID]
	a.mu.Unlock()
	err := a.client().Report(ctx, a.node, w, api.AgentReport{ID: w.ID, Generation: w.Status.Generation, State: movingState(w.Status.Move),
		Moved: true, MoveBytes: total, MoveDone: total})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("report move", "workspace", w.Spec.Name, "err", err)
		return
	}
	a.mu.Lock()
	delete(a.moveAt, w.ID)
	delete(a.moveBytes, w.ID)
	a.mu.Unlock()
}

// setOutgoing records the workspaces moving off this host and returns
// those whose move is over (listed before, not now, and not assigned
// here): their files go.
func (a *Agent) setOutgoing(out []api.Outgoing) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := map[string]api.Outgoing{}
	for _, o := range out {
		next[o.ID] = o
	}
	var done []string
	for id := range a.outgoing {
		if _, still := next[id]; !still {
			if _, here := a.assigned[id]; !here {
				done = append(done, id)
			}
		}
	}
	a.outgoing = next
	return done
}

// dropMoved deletes this host's copy of a workspace that moved away.
func (a *Agent) dropMoved(ctx context.Context, w model.Workspace) {
	if err := a.drv.Delete(ctx, w.ID); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		if ctx.Err() == nil {
			a.log.Warn("delete the copy of a workspace that moved away", "id", w.ID, "err", err)
		}
		return
	}
	_ = os.Remove(a.genPath(w.ID))
	a.forgetInstance(w.ID)
	a.log.Info("workspace moved away: this host's copy deleted", "id", w.ID)
}

// transferAddress is the address other hosts dial for transfers: advertise
// if given, else listen, with the host's address in place of an
// unspecified host.
func transferAddress(listen, advertise, hostAddr string) (string, error) {
	if advertise != "" {
		if _, _, err := net.SplitHostPort(advertise); err != nil {
			return "", fmt.Errorf("transfer address %q: want host:port", advertise)
		}
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("transfer listen address %q: want host:port", listen)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if hostAddr == "" {
			return "", fmt.Errorf("transfer listen address %q is on every address: give the host's address (--address) or --transfer-address", listen)
		}
		if h, _, err := net.SplitHostPort(hostAddr); err == nil {
			hostAddr = h
		}
		host = hostAddr
	}
	return net.JoinHostPort(host, port), nil
}

// movingState is the state a report on a move carries (the control plane
// takes nothing of the guest from it): what the files are of.
func movingState(m *model.Move) model.State {
	if m != nil && m.Memory {
		return model.StateSuspended
	}
	return model.StateStopped
}

// stageSample records a rate at which this host received files (an image
// from the control plane, a moving workspace from another host); the
// heartbeats carry the last few to the calendar, which plans staging and
// moves with the slowest.
func (a *Agent) stageSample(rate int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.cfg.Node.Measured
	if m == nil {
		m = &model.HostTimes{}
	}
	c := *m
	c.Stage = model.AddSample(c.Stage, rate)
	a.cfg.Node.Measured = &c
}

// heartbeatNode is the host as a heartbeat describes it.
func (a *Agent) heartbeatNode() model.Node {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.cfg.Node
	if m := n.Measured; m != nil {
		c := *m
		c.Stage = append([]int64(nil), m.Stage...)
		n.Measured = &c
	}
	if a.images != nil {
		n.Images = a.images.cached()
	}
	return n
}

// runningIDs are the workspaces whose guests run here, for heartbeats.
func (a *Agent) runningIDs(ctx context.Context) []string {
	insts, err := a.drv.List(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, in := range insts {
		if in.PID > 0 && in.ID != "" && len(out) < 10000 {
			out = append(out, in.ID)
		}
	}
	sort.Strings(out)
	return out
}
