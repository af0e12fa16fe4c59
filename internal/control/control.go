package control

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/store"
)

// Config configures a controller.
type Config struct {
	Store  store.Store
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NodeTimeout is how long a host may go without a heartbeat before it is
	// NotReady: no longer offered new work (default 20 s).
	NodeTimeout time.Duration
	// NodeLostAfter is how long a host may go without a heartbeat before it
	// is Lost: out of the calendar, its leases handled elsewhere (at least
	// NodeTimeout). Zero turns host health off: no host is cordoned for
	// late heartbeats nor declared Lost (embedded controllers, tests on a
	// frozen clock); the control plane sets it (DefaultNodeLostAfter).
	NodeLostAfter time.Duration
	// ReconcileEvery bounds how long Run sleeps between two looks at the
	// calendar; it wakes earlier for the calendar's next action.
	ReconcileEvery time.Duration
	// Policy is the lease calendar's policy (backfilling, placement,
	// suspension, fair share, quotas); nil means calendar.DefaultPolicy.
	Policy *calendar.Policy
	// ImageDirs are the only directories POST /images may register files
	// from, and image files are served from (symbolic links followed):
	// <data-dir>/images and the --image directories. None: POST /images
	// registers nothing, and each file is served only from its own
	// directory.
	ImageDirs []string
	// BlobDir is where pushed images' disks are kept, by content
	// (<BlobDir>/sha256/<hex>); uploads are written there first. Empty:
	// images cannot be pushed.
	BlobDir string
	// Limits bound each project's objects (site defaults; a project's own
	// limits, set by an admin, override them).
	Limits Limits
}

// Defaults of the control plane's host health (see Config).
const (
	DefaultNodeTimeout   = 15 * time.Second
	DefaultNodeLostAfter = 60 * time.Second
)

// Controller is the control plane's core. Create it with New and call Run
// for the calendar's actions.
type Controller struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	cfg   Config

	// mu serialises calendar decisions with the writes that store them, so
	// two requests never take the same free capacity. It guards the
	// fields below.
	mu sync.Mutex
	// cal is the lease calendar, restored from the store on first use (nil
	// again after a failed write: it is restored at its next use);
	// calHosts are the hosts it knows.
	cal      *calendar.Calendar
	calHosts map[string]bool
	// lateHosts are the hosts cordoned in the calendar because their
	// heartbeats are late (NotReady).
	lateHosts map[string]bool
	// fenced are the Lost hosts whose workspaces are all fenced
	// (fenceLost); the others are fenced again at the next look.
	fenced map[string]bool
	// movable says every live host serves transfers (policy).
	movable bool
	// started is when this controller began (or began to lead): hosts'
	// silence counts toward Lost from then at the earliest.
	started time.Time
	// leading says this replica owns the calendar (leader.go).
	leading bool

	// kick wakes Run when a decision may have brought the calendar's next
	// action nearer.
	kick chan struct{}
	// waker wakes the agents' long polls (wake.go).
	waker nodeWaker
	// execs relays commands run in guests (exec.go).
	execs execState
	// vols serialises volume decisions and wakes storage hosts (volumes.go).
	vols volumeState
	// saveSt is the state of saves (save.go).
	saveSt saveState
	// gridMu serialises grid creations (grids.go); plansMu guards plans,
	// the plans kept for POST /grids {plan} (grid_plan.go).
	gridMu  sync.Mutex
	plansMu sync.Mutex
	plans   map[string]keptPlan
}

// New returns a controller over cfg.Store.
func New(cfg Config) (*Controller, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 20 * time.Second
	}
	if cfg.NodeLostAfter > 0 {
		cfg.NodeLostAfter = max(cfg.NodeLostAfter, cfg.NodeTimeout)
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = time.Second
	}
	ctl := &Controller{store: cfg.Store, log: cfg.Logger, now: cfg.Now, cfg: cfg, kick: make(chan struct{}, 1), started: cfg.Now(), leading: true}
	// The hosts' long polls are woken by their commands, saves and
	// volumes too (hostwake.go).
	ctl.execs.waker.prefix, ctl.execs.waker.hosts = "exec/", execWakeHosts
	ctl.saveSt.waker.prefix, ctl.saveSt.waker.hosts = "saves/", saveWakeHosts
	vw := &ctl.vols.wake
	ctl.vols.waker.prefix, ctl.vols.waker.start = "volumes/", vw.start
	ctl.vols.waker.hosts = func(ev store.Event) []string { return vw.hosts(cfg.Store, ev) }
	return ctl, nil
}

// Store is the controller's store (for the API layer's tokens and projects).
func (ctl *Controller) Store() store.Store { return ctl.store }

// Now is the controller's clock.
func (ctl *Controller) Now() time.Time { return ctl.now() }

// wake asks Run to look at the calendar's next action again.
func (ctl *Controller) wake() {
	select {
	case ctl.kick <- struct{}{}:
	default:
	}
}

// Run carries out the calendar's actions at their time until ctx ends: it
// sleeps until the calendar's next action (at most ReconcileEvery) or until
// a decision wakes it.
func (ctl *Controller) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-ctl.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		if err := ctl.reconcileIfLeading(ctx); err != nil && ctx.Err() == nil {
			ctl.log.Warn("reconcile", "err", err)
		}
		t.Reset(ctl.untilNext())
	}
}

// untilNext is how long Run may sleep: until the calendar's next action,
// at most ReconcileEvery.
func (ctl *Controller) untilNext() time.Duration {
	d := ctl.cfg.ReconcileEvery
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.cal == nil {
		return d
	}
	if next, ok := ctl.cal.NextEvent(); ok {
		if w := next.Sub(ctl.now()); w < d {
			d = max(w, 0)
		}
	}
	return d
}

// Reconcile advances the lease calendar to now and carries out its
// actions (starts, suspensions, resumptions and ends due now). The
// calendar is the only authority on when a lease ends.
func (ctl *Controller) Reconcile(ctx context.Context) error {
	if ctl.cfg.NodeLostAfter > 0 {
		if err := ctl.checkHosts(ctx); err != nil {
			ctl.log.Warn("check hosts", "err", err)
		}
	}
	ctl.sweepExecs(ctx)
	err := ctl.advanceCalendar(ctx)
	ctl.checkMigrations(ctx)
	return err
}

// SetPolicy changes the calendar's policy: the calendar is restored from
// the store under it at its next use.
func (ctl *Controller) SetPolicy(p *calendar.Policy) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	ctl.cfg.Policy = p
	ctl.cal = nil
}
