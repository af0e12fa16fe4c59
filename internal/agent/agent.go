package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// Config configures an agent.
type Config struct {
	// Server is how to reach the control plane; its Token is the join token.
	Server client.Config
	// DataDir keeps the node credential and the image cache.
	DataDir string
	// Node describes the host: name, labels, capacity, accel. Zero capacity
	// fields are measured.
	Node   model.Node
	Driver hypervisor.Driver
	Logger *slog.Logger
	// Heartbeat is the heartbeat period (default 5 s).
	Heartbeat time.Duration
	// Resync is the period of the full reconcile (default 3 s).
	Resync time.Duration
	// StopTimeout is how long a guest gets to power off before it is killed.
	StopTimeout time.Duration
	// UsageEvery is the least time between two reports of a workspace that
	// differ only in its CPU counter (default 10 s): a running workspace's
	// counter is refreshed on the resync after UsageEvery has passed, if
	// it moved by more than usageMinDelta. A report sent for another
	// reason always carries the counter's current value.
	UsageEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Agent runs workspaces on one host.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	drv    hypervisor.Driver
	now    func() time.Time
	images *imageCache
	node   string

	// mu guards the fields below.
	mu       sync.Mutex
	cl       *client.Client             // with the node token
	assigned map[string]model.Workspace // by workspace ID
	busy     map[string]bool            // an operation runs for this ID
	received map[string]time.Time       // when the agent first saw each ID's current generation
	sent     map[string]sentReport      // last report sent, by ID
	sending  map[string]*sync.Mutex     // held while a report is sent, by ID
	cpuRead  map[string]cpuRead         // last CPU counter read of a running process, by ID
	console  map[string]uint64          // hash of the last console upload, by ID
	saved    map[string]time.Time       // when the agent suspended each ID (for reports)
	wg       sync.WaitGroup
}

// New returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Driver == nil {
		return nil, errors.New("agent: no driver")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.Resync == 0 {
		cfg.Resync = 3 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 20 * time.Second
	}
	if cfg.UsageEvery == 0 {
		cfg.UsageEvery = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent data dir: %w", err)
	}
	n, err := describeHost(cfg.Node, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.Node = n
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("node", n.Name), drv: cfg.Driver, now: cfg.Now, node: n.Name,
		assigned: map[string]model.Workspace{}, busy: map[string]bool{}, received: map[string]time.Time{},
		sent: map[string]sentReport{}, sending: map[string]*sync.Mutex{}, cpuRead: map[string]cpuRead{}, console: map[string]uint64{}, saved: map[string]time.Time{},
	}
	a.images = &imageCache{dir: filepath.Join(cfg.DataDir, "images"), log: a.log}
	return a, nil
}

// NodeName is the name the agent registers under.
func (a *Agent) NodeName() string { return a.node }

// credential is the node token kept across agent restarts.
type credential struct {
	Server string `json:"server"`
	Node   string `json:"node"`
	Token  string `json:"token"`
}

func (a *Agent) credPath() string { return filepath.Join(a.cfg.DataDir, "node.json") }

// register obtains a node token: the saved one if the server still knows
// it, else a new one through the join token.
func (a *Agent) register(ctx context.Context) error {
	var cred credential
	// The saved token is tried even if the control plane's address
	// changed (a vgrid up on a new port): a join token cannot register a
	// known host again.
	if b, err := os.ReadFile(a.credPath()); err == nil && json.Unmarshal(b, &cred) == nil && cred.Node == a.node {
		cfg := a.cfg.Server
		cfg.Token = cred.Token
		cl, err := client.New(cfg)
		if err != nil {
			return err
		}
		if err := cl.Heartbeat(ctx, a.cfg.Node); err == nil {
			a.setClient(cl)
			a.log.Info("agent resumed with saved node credential")
			return nil
		} else if !isAuth(err) {
			return err
		}
	}
	join, err := client.New(a.cfg.Server)
	if err != nil {
		return err
	}
	reg, err := join.RegisterNode(ctx, a.cfg.Node)
	if err != nil {
		return fmt.Errorf("register node %s: %w", a.node, err)
	}
	cred = credential{Server: a.cfg.Server.Server, Node: a.node, Token: reg.Token}
	b, _ := json.Marshal(cred)
	if err := os.WriteFile(a.credPath(), b, 0o600); err != nil {
		return fmt.Errorf("save node credential: %w", err)
	}
	a.setClient(join.WithToken(reg.Token))
	a.log.Info("agent registered", "cpu_millis", a.cfg.Node.Capacity.MilliCPU, "memory", a.cfg.Node.Capacity.Memory.Human(), "accel", a.cfg.Node.Accel)
	return nil
}

func isAuth(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && (e.Status == 401 || e.Status == 403 || e.Status == 404)
}

func (a *Agent) setClient(cl *client.Client) {
	a.mu.Lock()
	a.cl = cl
	a.mu.Unlock()
}

func (a *Agent) client() *client.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cl
}

// Run registers and then reconciles until ctx ends. Guests keep running
// when it returns.
func (a *Agent) Run(ctx context.Context) error {
	for {
		err := a.register(ctx)
		if err == nil {
			break
		}
		a.log.Warn("register failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	kick := make(chan struct{}, 1)
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.heartbeatLoop(ctx) }()
	go func() { defer a.wg.Done(); a.watchLoop(ctx, kick) }()
	go func() { defer a.wg.Done(); a.changesLoop(ctx) }()
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.wg.Wait()
			return nil
		case <-kick:
		case <-t.C:
		}
		a.reconcileAll(ctx)
		a.pushConsoles(ctx)
	}
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.client().Heartbeat(ctx, a.cfg.Node); err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat", "err", err)
			if isAuth(err) {
				_ = a.register(ctx)
			}
		}
	}
}

// watchLoop long-polls the assignments and reconciles each change at once.
func (a *Agent) watchLoop(ctx context.Context, kick chan<- struct{}) {
	var rev int64
	for ctx.Err() == nil {
		as, err := a.client().Assignments(ctx, a.node, rev, 30*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("assignments", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		rev = as.Revision
		a.setAssigned(as)
		a.reconcileAll(ctx)
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

func (a *Agent) setAssigned(as api.Assignments) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	next := map[string]model.Workspace{}
	for _, w := range as.Workspaces {
		key := w.ID + "/" + strconv.FormatInt(w.Status.Generation, 10)
		if _, ok := a.received[key]; !ok {
			a.received[key] = now
		}
		next[w.ID] = w
	}
	a.assigned = next
	for _, img := range as.Images {
		a.images.known(img)
	}
}

// changesLoop reports an instance as soon as the driver sees it change.
func (a *Agent) changesLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-a.drv.Changes():
			a.mu.Lock()
			w, ok := a.assigned[id]
			a.mu.Unlock()
			if ok {
				a.reconcile(ctx, w)
			}
		}
	}
}

func (a *Agent) reconcileAll(ctx context.Context) {
	a.mu.Lock()
	list := make([]model.Workspace, 0, len(a.assigned))
	for _, w := range a.assigned {
		list = append(list, w)
	}
	a.mu.Unlock()
	for _, w := range list {
		a.reconcile(ctx, w)
	}
}
