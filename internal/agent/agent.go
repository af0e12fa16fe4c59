package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
	"vgrid/internal/overlay"
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
	// TransferListen is the address (host:port) where the agent serves the
	// files of workspaces moving to other hosts, with its host
	// certificate; empty: it serves none (and its workspaces cannot move
	// off it). TransferAddress is that address as other hosts reach it
	// (default: TransferListen, its host replaced by Node.Address when it
	// listens on all addresses).
	TransferListen, TransferAddress string
	// ImageCacheBytes is the most the image cache (<DataDir>/images) may
	// hold; the least recently used files no workspace of this host uses
	// are evicted to stay under it (images.go). 0: no limit.
	ImageCacheBytes int64
	// StorageListen is the address (IP:port) where the agent serves
	// network volumes with a qemu-storage-daemon (volumes.go); empty: it
	// stores none (its workspaces still attach volumes stored elsewhere).
	// Volumes, when set, is the storage daemon to use (tests).
	StorageListen string
	Volumes       VolumeStore
	// Overlay is the datapath of the host's overlay networks (network.go);
	// nil: the network namespace the agent runs in, opened when first
	// needed. Tests give one in a namespace of their own.
	Overlay *overlay.Host
}

// Agent runs workspaces on one host.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	drv    hypervisor.Driver
	now    func() time.Time
	images *imageCache
	node   string

	// cert is the host's client certificate (certs.go), nil before the
	// agent has one; cl's connections present it.
	cert atomic.Pointer[tls.Certificate]

	// mu guards the fields below.
	mu           sync.Mutex
	cl           *client.Client             // with the node token and the host certificate
	cred         Credential                 // the node token cl uses
	unsaved      bool                       // cred is not in node.json yet
	rotateAt     time.Time                  // no rotation attempt before (after a failure)
	renewAt      time.Time                  // no certificate renewal attempt before (after a failure)
	certUnsaved  *unsavedCert               // a renewed certificate not in node.crt/node.key yet
	assigned     map[string]model.Workspace // by workspace ID
	busy         map[string]bool            // an operation runs for this ID
	received     map[string]time.Time       // when the agent first saw each ID's current generation
	sent         map[string]sentReport      // last report sent, by ID
	sending      map[string]*sync.Mutex     // held while a report is sent, by ID
	cpuRead      map[string]cpuRead         // last CPU counter read of a running process, by ID
	console      map[string]uint64          // hash of the last console upload, by ID
	saved        map[string]time.Time       // when the agent suspended each ID (for reports)
	outgoing     map[string]api.Outgoing    // workspaces moving off this host, by ID
	moveAt       map[string]time.Time       // no fetch of a moving workspace before (after a failure)
	moveBytes    map[string]int64           // bytes fetched of a moved workspace, until reported
	networks     []api.NetworkAssignment    // the overlay networks of the assignments
	liveIn       map[string]model.Workspace // workspaces migrating live to this host, by ID (migrate.go)
	prepared     map[string]bool            // a QEMU waits here for the incoming workspace's guest
	outMigs      map[string]*outMigration   // migrations this host sends, by ID
	migratedAway map[string]time.Time       // guests sent away, by ID: their migration's Since
	applied      map[string]model.Quantum   // the quantum given to each running guest (start, resize)
	resizeFailed map[string]model.Quantum   // a quantum the driver refused, not tried again
	rosters      map[string]int             // cluster roster revision pushed to each guest (roster.go)
	rosterBusy   map[string]bool            // a roster push runs for this ID
	rosterRetry  map[string]time.Time       // no roster push before (after a failure)
	kick         chan struct{}              // wakes the reconcile loop (set by Run)
	wg           sync.WaitGroup
	// execs are the commands run in guests (exec.go).
	execs execRunner
	// saves are the disks being saved as images (save.go).
	saves saveRunner
	// vol is the host's side of network volumes (volumes.go).
	vol volumeSide
	// stage fetches images ahead of the leases that boot them (stage.go).
	stage stager

	// netMu serialises the overlay work (network.go) and guards the
	// fields below.
	netMu       sync.Mutex
	ovl         *overlay.Host                 // opened by the agent (Config.Overlay nil)
	openOverlay func() (*overlay.Host, error) // nil: overlay.Open of the agent's namespace
	netRec      *netRecord                    // what the agent made; nil until read
	netLogged   map[string]string             // overlay problems logged, by key
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
	if cfg.TransferListen != "" {
		if n.Transfer, err = transferAddress(cfg.TransferListen, cfg.TransferAddress, n.Address); err != nil {
			return nil, err
		}
	}
	cfg.Node = n
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("node", n.Name), drv: cfg.Driver, now: cfg.Now, node: n.Name,
		assigned: map[string]model.Workspace{}, busy: map[string]bool{}, received: map[string]time.Time{},
		sent: map[string]sentReport{}, sending: map[string]*sync.Mutex{}, cpuRead: map[string]cpuRead{}, console: map[string]uint64{}, saved: map[string]time.Time{},
		outgoing: map[string]api.Outgoing{}, moveAt: map[string]time.Time{}, moveBytes: map[string]int64{},
		liveIn: map[string]model.Workspace{}, prepared: map[string]bool{}, outMigs: map[string]*outMigration{},
		migratedAway: map[string]time.Time{},
		applied:      map[string]model.Quantum{}, resizeFailed: map[string]model.Quantum{},
	}
	if cfg.ImageCacheBytes < 0 {
		return nil, fmt.Errorf("agent: image cache size %d: want 0 (no limit) or more", cfg.ImageCacheBytes)
	}
	a.images = &imageCache{dir: filepath.Join(cfg.DataDir, "images"), log: a.log, rate: a.stageSample,
		limit: cfg.ImageCacheBytes, inUse: a.imagesInUse}
	return a, nil
}

// NodeName is the name the agent registers under.
func (a *Agent) NodeName() string { return a.node }

// Credential is the node token an agent keeps in its data directory
// (node.json) across restarts, with its lifetime as the control plane
// gave it (zero ExpiresAt: not known, and rotated at once).
type Credential struct {
	Server    string    `json:"server"`
	Node      string    `json:"node"`
	Token     string    `json:"token"`
	ID        string    `json:"id,omitempty"`
	IssuedAt  time.Time `json:"issued_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// CredentialFile is where an agent with data directory dir keeps its
// Credential.
func CredentialFile(dir string) string { return filepath.Join(dir, "node.json") }

// LoadCredential reads the credential saved in data directory dir.
func LoadCredential(dir string) (Credential, error) {
	var c Credential
	b, err := os.ReadFile(CredentialFile(dir))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", CredentialFile(dir), err)
	}
	return c, nil
}

// SaveCredential writes c to data directory dir atomically: a crash leaves
// the old file or the new one, never a torn one.
func SaveCredential(dir string, c Credential) error {
	b, _ := json.Marshal(c)
	if err := writeFileAtomic(CredentialFile(dir), b, 0o600); err != nil {
		return fmt.Errorf("save node credential: %w", err)
	}
	return nil
}

// register obtains a node token and a host certificate: the saved ones if
// the server still accepts them, else new ones through the join token.
// (A join token cannot register a known host again: an agent whose saved
// token or certificate expired or was revoked joins again only after an
// admin ran `vgrid node revoke`, with a join token that has not
// registered this name yet.)
func (a *Agent) register(ctx context.Context) error {
	// The saved token is tried even if the control plane's address
	// changed (a vgrid up on a new port): a join token cannot register a
	// known host again.
	if cred, err := LoadCredential(a.cfg.DataDir); err == nil && cred.Node == a.node {
		if pair, err := LoadCertificate(a.cfg.DataDir); err == nil {
			a.cert.Store(&pair)
		} else {
			a.log.Warn("no saved host certificate; the saved node token alone will be refused", "err", err)
		}
		cl, err := a.nodeClient(cred.Token)
		if err != nil {
			return err
		}
		if err := cl.Heartbeat(ctx, a.heartbeatNode()); err == nil {
			// The control plane's word on the token's lifetime; without
			// it, the saved one.
			if me, err := cl.Whoami(ctx); err == nil {
				cred.ID, cred.IssuedAt, cred.ExpiresAt = me.TokenID, me.CreatedAt, me.ExpiresAt
			}
			a.setCred(cl, cred, false)
			a.log.Info("agent resumed with saved node credential", "token_id", cred.ID, "expires_at", cred.ExpiresAt)
			return nil
		} else if !isAuth(err) {
			return err
		} else {
			a.log.Warn("saved node credential refused; registering with the join token", "token_id", cred.ID, "err", err)
		}
	}
	join, err := a.joinClient()
	if err != nil {
		return err
	}
	key, csr, err := a.certificateRequest()
	if err != nil {
		return err
	}
	reg, err := join.RegisterNode(ctx, a.heartbeatNode(), csr)
	if err != nil {
		return fmt.Errorf("register node %s: %w", a.node, err)
	}
	pair, err := pairOf(key, reg.Certificate)
	if err != nil {
		return fmt.Errorf("register node %s: the host certificate: %w", a.node, err)
	}
	if err := SaveKeyAndCertificate(a.cfg.DataDir, key, reg.Certificate); err != nil {
		return err
	}
	cred := Credential{Server: a.cfg.Server.Server, Node: a.node, Token: reg.Token, ID: reg.ID, IssuedAt: reg.IssuedAt, ExpiresAt: reg.ExpiresAt}
	if err := SaveCredential(a.cfg.DataDir, cred); err != nil {
		return err
	}
	a.cert.Store(&pair)
	cl, err := a.nodeClient(reg.Token)
	if err != nil {
		return err
	}
	a.setCred(cl, cred, false)
	a.mu.Lock()
	a.renewAt, a.certUnsaved = time.Time{}, nil
	a.mu.Unlock()
	join.CloseIdleConnections()
	a.log.Info("agent registered", "cpu_millis", a.cfg.Node.Capacity.MilliCPU, "memory", a.cfg.Node.Capacity.Memory.Human(), "accel", a.cfg.Node.Accel,
		"token_id", reg.ID, "expires_at", reg.ExpiresAt, "certificate_expires_at", reg.CertificateExpiresAt)
	return nil
}

// rotateDue reports whether the node token should be rotated: half of its
// lifetime has passed, or its lifetime is unknown (a token from before
// node tokens expired).
func (a *Agent) rotateDue() bool {
	now := a.now()
	a.mu.Lock()
	c, next := a.cred, a.rotateAt
	a.mu.Unlock()
	if now.Before(next) {
		return false
	}
	if c.ExpiresAt.IsZero() || c.IssuedAt.IsZero() || !c.IssuedAt.Before(c.ExpiresAt) {
		return true
	}
	half := c.IssuedAt.Add(c.ExpiresAt.Sub(c.IssuedAt) / 2)
	return !now.Before(half)
}

// rotateRetry is how long the agent waits after a failed rotation.
const rotateRetry = time.Minute

// rotate trades the node token for a new one, saves the new one and then
// switches to it. The old one keeps working for a grace period, so
// requests in flight finish. If the new token cannot be saved the agent
// uses it anyway (the old one is about to stop working) and tries to save
// it again at each heartbeat.
func (a *Agent) rotate(ctx context.Context) error {
	cl := a.client()
	nt, err := cl.RotateNodeToken(ctx, a.node)
	if err != nil {
		a.mu.Lock()
		a.rotateAt = a.now().Add(rotateRetry)
		a.mu.Unlock()
		return fmt.Errorf("rotate node token: %w", err)
	}
	cred := Credential{Server: a.cfg.Server.Server, Node: a.node, Token: nt.Token, ID: nt.ID, IssuedAt: nt.IssuedAt, ExpiresAt: nt.ExpiresAt}
	serr := SaveCredential(a.cfg.DataDir, cred)
	a.setCred(cl.WithToken(nt.Token), cred, serr != nil)
	if serr != nil {
		return fmt.Errorf("node token rotated (%s) but not saved; the agent uses it and saves it at the next heartbeat: %w", nt.ID, serr)
	}
	a.log.Info("node token rotated", "token_id", nt.ID, "expires_at", nt.ExpiresAt, "previous_expires_at", nt.PreviousExpiresAt)
	return nil
}

// saveIfUnsaved retries saving a rotated credential that could not be
// saved.
func (a *Agent) saveIfUnsaved() {
	a.mu.Lock()
	c, unsaved := a.cred, a.unsaved
	a.mu.Unlock()
	if !unsaved {
		return
	}
	if err := SaveCredential(a.cfg.DataDir, c); err != nil {
		a.log.Error("node credential still not saved", "err", err)
		return
	}
	a.mu.Lock()
	if a.cred.Token == c.Token {
		a.unsaved = false
	}
	a.mu.Unlock()
	a.log.Info("node credential saved", "token_id", c.ID)
}

func isAuth(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && (e.Status == 401 || e.Status == 403 || e.Status == 404)
}

func (a *Agent) setCred(cl *client.Client, c Credential, unsaved bool) {
	a.mu.Lock()
	a.cl, a.cred, a.unsaved, a.rotateAt = cl, c, unsaved, time.Time{}
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
	if a.cfg.TransferListen != "" {
		ln, err := a.listenTransfers()
		if err != nil {
			return fmt.Errorf("transfer listener %s: %w", a.cfg.TransferListen, err)
		}
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.serveTransfers(ctx, ln) }()
		a.log.Info("serving workspace transfers", "listen", a.cfg.TransferListen, "address", a.cfg.Node.Transfer)
	}
	a.startVolumes(ctx)
	kick := make(chan struct{}, 1)
	a.mu.Lock()
	a.kick = kick
	a.mu.Unlock()
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.heartbeatLoop(ctx) }()
	go func() { defer a.wg.Done(); a.watchLoop(ctx, kick) }()
	go func() { defer a.wg.Done(); a.changesLoop(ctx) }()
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		tick := false
		select {
		case <-ctx.Done():
			a.wg.Wait()
			return nil
		case <-kick:
		case <-t.C:
			tick = true
		}
		if tick {
			a.syncNetworks(ctx)
			a.retryIncoming(ctx)
		}
		a.reconcileAll(ctx)
		if tick {
			// Instances no workspace wants are looked for at the resync
			// pace, not at every change of the assignments: it scans the
			// host's processes.
			a.sweepOrphans(ctx)
		}
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
		hb := a.heartbeatNode()
		hb.Running = a.runningIDs(ctx)
		if err := a.client().Heartbeat(ctx, hb); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("heartbeat", "err", err)
				if isAuth(err) {
					_ = a.register(ctx)
				}
			}
			continue
		}
		a.saveIfUnsaved()
		a.saveCertIfUnsaved()
		if a.rotateDue() {
			if err := a.rotate(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("node token", "err", err)
			}
		}
		if a.renewDue() {
			if err := a.renewCert(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("host certificate", "err", err)
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
		a.setVolumes(as)
		a.stageImages(ctx, as.Stage)
		a.startExecs(ctx, as.Execs)
		a.startSaves(ctx, as.Saves)
		a.syncNetworks(ctx)
		a.syncMigrations(ctx, as)
		for _, id := range a.setOutgoing(as.Outgoing) {
			a.async(ctx, model.Workspace{ID: id}, a.dropMoved)
		}
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
	a.networks = as.Networks
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
