package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultTTL is the election's session lease: a leader that stops renewing
// it (killed, paused, cut off) is replaced about this long after its last
// renewal. etcd rounds it up to whole seconds, and up to its minimum
// (1.5 election timeouts).
const DefaultTTL = 2 * time.Second

// Config configures an Elector.
type Config struct {
	Client *clientv3.Client
	// Prefix is the etcd key prefix of the election, e.g. "/vgrid/election/".
	Prefix string
	// StorePrefix is the prefix the store adds to its keys (etcd
	// backend): the fence key is given without it, as a store key. The
	// election's Prefix must start with it.
	StorePrefix string
	// Value is what this replica proclaims when it leads: its API URL.
	Value string
	// TTL is the session lease (0: DefaultTTL).
	TTL    time.Duration
	Logger *slog.Logger
	// OnChange is called (from the Elector's goroutine, never twice at
	// once) whenever State changes.
	OnChange func(State)
}

// State is what a replica knows of the election.
type State struct {
	// Leading says this replica leads (as far as it knows: its fence says
	// for sure).
	Leading bool
	// Leader is the leading replica's Value ("" while none is known, and
	// while this replica has no session with etcd: cut off, it cannot
	// tell).
	Leader string
	// Term is the leader's election revision (0: none known).
	Term int64
}

// Elector campaigns for this replica and follows the election.
type Elector struct {
	cfg Config

	mu    sync.Mutex
	state State
	// fenceKey and fenceRev are the election key this replica last held
	// and its revision: kept after the election is lost, so that writes
	// still made in its name fail.
	fenceKey string
	fenceRev int64
	resign   func()
}

// New returns an Elector; Run campaigns.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil {
		return nil, errors.New("leader: no etcd client")
	}
	if !strings.HasPrefix(cfg.Prefix, cfg.StorePrefix) {
		return nil, fmt.Errorf("leader: election prefix %q is not under the store's prefix %q", cfg.Prefix, cfg.StorePrefix)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Elector{cfg: cfg}, nil
}

// State returns what this replica knows of the election now.
func (e *Elector) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// Fence returns the store key and revision of the election this replica
// holds or last held ("", 0 if it never led): store.Fence's condition.
func (e *Elector) Fence() (key string, rev int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fenceKey, e.fenceRev
}

// Led says whether this replica ever led.
func (e *Elector) Led() bool {
	k, _ := e.Fence()
	return k != ""
}

func (e *Elector) set(f func(s *State)) {
	e.mu.Lock()
	old := e.state
	f(&e.state)
	s := e.state
	e.mu.Unlock()
	if s != old && e.cfg.OnChange != nil {
		e.cfg.OnChange(s)
	}
}

// Run campaigns until ctx ends, in rounds: a session (lease with TTL), a
// campaign that waits while another replica leads (observing who), then
// leadership until the session ends (its lease expired or was lost). At
// the end it resigns, so that another replica takes over at once.
func (e *Elector) Run(ctx context.Context) error {
	ttl := max(int((e.cfg.TTL+time.Second-1)/time.Second), 1)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := e.round(ctx, ttl)
		if ctx.Err() != nil {
			break
		}
		// Out of a session, this replica knows of no leader: it cannot
		// tell whether the one it knew still leads.
		e.set(func(s *State) { s.Leading, s.Leader, s.Term = false, "", 0 })
		if err != nil {
			e.cfg.Logger.Warn("leader election", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
	e.set(func(s *State) { s.Leading = false })
	return nil
}

// round is one session: campaign, lead, lose or resign.
func (e *Elector) round(ctx context.Context, ttl int) error {
	sess, err := concurrency.NewSession(e.cfg.Client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, e.cfg.Prefix)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-rctx.Done():
		}
	}()
	go e.observe(rctx, el)
	if err := el.Campaign(rctx, e.cfg.Value); err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			return errors.New("session lost while waiting to lead")
		}
		return fmt.Errorf("campaign: %w", err)
	}
	key, rev := el.Key(), el.Rev()
	e.mu.Lock()
	e.fenceKey, e.fenceRev = strings.TrimPrefix(key, e.cfg.StorePrefix), rev
	e.mu.Unlock()
	e.set(func(s *State) { s.Leading, s.Leader, s.Term = true, e.cfg.Value, rev })
	e.cfg.Logger.Info("leading the control plane", "term", rev, "key", key)
	select {
	case <-sess.Done():
		e.set(func(s *State) { s.Leading, s.Leader, s.Term = false, "", 0 })
		e.cfg.Logger.Warn("lost the leadership: the election's lease ended (etcd unreachable, or this replica was paused)", "term", rev)
		return nil
	case <-ctx.Done():
		e.set(func(s *State) { s.Leading = false })
		// Hand over at once rather than after the lease's TTL.
		rc, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer rcancel()
		if err := el.Resign(rc); err != nil {
			e.cfg.Logger.Warn("resign", "err", err)
		}
		return nil
	}
}

// observe follows who leads until ctx ends.
func (e *Elector) observe(ctx context.Context, el *concurrency.Election) {
	for resp := range el.Observe(ctx) {
		if len(resp.Kvs) == 0 {
			continue
		}
		kv := resp.Kvs[0]
		val, term := string(kv.Value), kv.CreateRevision
		e.set(func(s *State) {
			if !s.Leading {
				s.Leader, s.Term = val, term
			}
		})
	}
}
