package controlplane

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/leader"
	"vgrid/internal/server"
	"vgrid/internal/store"
	"vgrid/internal/store/etcd"
)

// EtcdConfig makes a control plane one replica of several sharing an etcd
// cluster: every replica serves the API, one (elected) owns the calendar
// and the reconciler, the others forward to it what needs the calendar.
type EtcdConfig struct {
	Endpoints                 []string
	CAFile, CertFile, KeyFile string // TLS to etcd (optional)
	// Prefix is the etcd key prefix of the store (default "/vgrid/").
	Prefix string
	// Name names this replica (default: host name and API port).
	Name string
	// Advertise is the API URL the other replicas and clients reach this
	// one at (default: the control plane's URL).
	Advertise string
	// ElectionTTL is the leader's election lease (0: leader.DefaultTTL).
	ElectionTTL time.Duration
}

// replica is this control plane's part among the replicas.
type replica struct {
	log   *slog.Logger
	cfg   EtcdConfig
	raw   *etcd.Store
	store store.Store // raw, gated by the election, writes fenced once this replica led
	wg    sync.WaitGroup

	mu sync.Mutex
	el *leader.Elector // set when the replica campaigns
	// sessionCtx lives while the replica knows who leads (replicaStore's
	// gate); sessionEnd ends it.
	sessionCtx context.Context
	sessionEnd context.CancelFunc
}

// Store keys of the replicas.
const (
	caKey          = "cluster/ca"        // the shared CA (certificate and key, PEM)
	replicasPrefix = "cluster/replicas/" // one record per replica: its API URL
	electionPrefix = "cluster/election"  // the election's keys (etcd leases) are under it, after a "/"
)

// openReplica connects to etcd.
func openReplica(ctx context.Context, log *slog.Logger, cfg EtcdConfig) (*replica, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("--etcd-endpoints: none given")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/vgrid/"
	}
	raw, err := etcd.Open(ctx, etcd.Config{Endpoints: cfg.Endpoints, Prefix: cfg.Prefix, CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	r := &replica{log: log, cfg: cfg, raw: raw}
	r.store = &replicaStore{Store: raw, fenced: store.Fence(raw, r.fence), r: r}
	return r, nil
}

func (r *replica) elector() *leader.Elector {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.el
}

func (r *replica) fence() (string, int64) {
	if el := r.elector(); el != nil {
		return el.Fence()
	}
	return "", 0
}

func (r *replica) led() bool {
	el := r.elector()
	return el != nil && el.Led()
}

// replicaStore writes through the fence once this replica has led: from
// then on every write it makes, whatever asked for it, fails once another
// replica was elected. A replica that never led writes without it (its
// own bootstrap: a project, tokens, image records); it decides nothing
// with the calendar, which only a leading controller uses.
//
// Once the replica has campaigned, every call is also gated by what it
// knows of the election: while it knows of no leader (it lost its session
// with etcd, is cut off, or an election is under way) a call fails at
// once with store.ErrNotLeader (the server answers 503 and the caller
// tries another replica), and calls under way when its session is lost
// are cut short rather than left to etcd's timeout: a cut-off leader
// stops holding its lock on the calendar within a second or two.
type replicaStore struct {
	store.Store
	fenced store.Store
	r      *replica
}

// errSessionLost cuts short the calls under way when the replica loses
// its session.
var errSessionLost = errors.New("this replica lost its session with etcd")

// gate returns the context a call runs under, or an error if the replica
// knows of no leader now.
func (s *replicaStore) gate(ctx context.Context) (context.Context, context.CancelFunc, error) {
	s.r.mu.Lock()
	up, campaigning := s.r.sessionCtx, s.r.el != nil
	s.r.mu.Unlock()
	if !campaigning {
		return ctx, func() {}, nil
	}
	if up == nil || up.Err() != nil {
		return nil, nil, fmt.Errorf("this replica knows of no leader now (cut off from etcd, or an election is under way): %w", store.ErrNotLeader)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(up, func() { cancel(errSessionLost) })
	return cctx, func() { stop(); cancel(nil) }, nil
}

// readErr maps a read cut short by the session's loss to ErrNotLeader:
// nothing was changed, another replica can answer.
func readErr(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errSessionLost) {
		return fmt.Errorf("%w: %w", errSessionLost, store.ErrNotLeader)
	}
	return err
}

// writeErr says that a write cut short may or may not have been applied.
func writeErr(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errSessionLost) {
		return fmt.Errorf("%w during a write, which may or may not have been applied: %v", errSessionLost, err)
	}
	return err
}

func (s *replicaStore) w() store.Store {
	if s.r.led() {
		return s.fenced
	}
	return s.Store
}

func (s *replicaStore) Get(ctx context.Context, key string) (store.KV, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return store.KV{}, err
	}
	defer done()
	kv, err := s.Store.Get(ctx, key)
	return kv, readErr(ctx, err)
}

func (s *replicaStore) List(ctx context.Context, prefix string) ([]store.KV, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	kvs, err := s.Store.List(ctx, prefix)
	return kvs, readErr(ctx, err)
}

func (s *replicaStore) ListPage(ctx context.Context, prefix, after string, limit int) ([]store.KV, bool, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return nil, false, err
	}
	defer done()
	kvs, more, err := s.Store.ListPage(ctx, prefix, after, limit)
	return kvs, more, readErr(ctx, err)
}

func (s *replicaStore) Revision(ctx context.Context) (int64, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	rev, err := s.Store.Revision(ctx)
	return rev, readErr(ctx, err)
}

// Watch ends (its channel closes) when the session is lost: the watcher
// lists again, here or at another replica.
func (s *replicaStore) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	wctx, done, err := s.gate(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := s.Store.Watch(wctx, prefix, fromRev)
	if err != nil {
		done()
		return nil, readErr(wctx, err)
	}
	context.AfterFunc(wctx, done)
	return ch, nil
}

func (s *replicaStore) Create(ctx context.Context, key string, value []byte) (int64, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	rev, err := s.w().Create(ctx, key, value)
	return rev, writeErr(ctx, err)
}

func (s *replicaStore) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	n, err := s.w().Update(ctx, key, value, rev)
	return n, writeErr(ctx, err)
}

func (s *replicaStore) Delete(ctx context.Context, key string, rev int64) error {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return err
	}
	defer done()
	return writeErr(ctx, s.w().Delete(ctx, key, rev))
}

func (s *replicaStore) Txn(ctx context.Context, ops []store.Op) (int64, error) {
	ctx, done, err := s.gate(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	rev, err := s.w().Txn(ctx, ops)
	return rev, writeErr(ctx, err)
}

// track follows the election for the gate: a context that lives while
// the replica knows who leads.
func (r *replica) track(st leader.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch known := st.Leader != ""; {
	case known && (r.sessionCtx == nil || r.sessionCtx.Err() != nil):
		r.sessionCtx, r.sessionEnd = context.WithCancel(context.Background())
	case !known && r.sessionEnd != nil:
		r.sessionEnd()
	}
}

// caRecord is the shared CA in the store.
type caRecord struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// syncCA makes the replicas share one CA: the first replica's (made by
// EnsureTLS) goes into the store; the others write it into their TLS
// directory before EnsureTLS, which then issues their server certificate
// from it. Whoever trusts the CA trusts every replica, and a host
// certificate signed by one replica is accepted by all.
func (r *replica) syncCA(ctx context.Context, dir string) error {
	caCert, caKeyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for range 2 {
		kv, err := r.raw.Get(ctx, caKey)
		if err == nil {
			var rec caRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil || rec.Cert == "" || rec.Key == "" {
				return fmt.Errorf("the shared CA in the store (%s) cannot be read: %v", caKey, err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if cur, _ := os.ReadFile(caCert); string(cur) != rec.Cert {
				// Another CA: the server certificate it signed goes too.
				_ = os.Remove(filepath.Join(dir, "server.key"))
				if err := os.WriteFile(caKeyFile, []byte(rec.Key), 0o600); err != nil {
					return err
				}
				if err := os.WriteFile(caCert, []byte(rec.Cert), 0o644); err != nil {
					return err
				}
			}
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("read the shared CA: %w", err)
		}
		// The first replica: its CA becomes the shared one.
		if _, err := server.EnsureTLS(dir, nil); err != nil {
			return err
		}
		cert, err1 := os.ReadFile(caCert)
		key, err2 := os.ReadFile(caKeyFile)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		b, _ := json.Marshal(caRecord{Cert: string(cert), Key: string(key)})
		if _, err := r.raw.Create(ctx, caKey, b); err == nil {
			r.log.Info("this replica's CA is the control plane's (stored in etcd)", "key", caKey)
			return nil
		} else if !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("store the shared CA: %w", err)
		}
		// Another replica stored its CA first: take that one.
	}
	return errors.New("the shared CA: stored and gone again")
}

// replicaRecord is a replica in the store.
type replicaRecord struct {
	Name    string    `json:"name"`
	URL     string    `json:"url"`
	Started time.Time `json:"started"`
}

// start records the replica, lets the controller follow, and campaigns.
func (r *replica) start(ctx context.Context, cp *ControlPlane, files server.TLSFiles, cfg Config) error {
	if r.cfg.Advertise == "" {
		r.cfg.Advertise = cp.URL
	}
	if r.cfg.Name == "" {
		h, _ := os.Hostname()
		r.cfg.Name = h + "-" + cp.URL[strings.LastIndex(cp.URL, ":")+1:]
	}
	b, _ := json.Marshal(replicaRecord{Name: r.cfg.Name, URL: r.cfg.Advertise, Started: time.Now().UTC()})
	if _, err := r.raw.Update(ctx, replicasPrefix+r.cfg.Name, b, 0); err != nil {
		return fmt.Errorf("record this replica: %w", err)
	}
	if err := r.writeClientConfig(ctx, cfg.DataDir, cfg.WriteConfig); err != nil {
		r.log.Warn("client config with every replica", "err", err)
	}
	cert, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	if err != nil {
		return err
	}
	ctl := cp.srv.Controller()
	el, err := leader.New(leader.Config{Client: r.raw.Client(), Prefix: r.cfg.Prefix + electionPrefix, StorePrefix: r.cfg.Prefix,
		Value: r.cfg.Advertise, TTL: r.cfg.ElectionTTL, Logger: r.log.With("replica", r.cfg.Name),
		OnChange: func(s leader.State) {
			// The gate first: calls cut short free the controller's lock.
			r.track(s)
			was := ctl.Leading()
			ctl.SetLeading(s.Leading)
			if s.Leading && !was {
				// What the last leader's crash left of uploads.
				go func() {
					if err := ctl.SweepBlobs(ctx); err != nil {
						r.log.Warn("sweep image blobs", "err", err)
					}
				}()
			}
		}})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.el = el
	r.mu.Unlock()
	if err := cp.srv.SetReplication(r.cfg.Name, func() (bool, string) {
		s := el.State()
		return s.Leading, s.Leader
	}, cert); err != nil {
		return err
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = el.Run(ctx) }()
	r.log.Info("replica of the control plane", "name", r.cfg.Name, "url", r.cfg.Advertise, "etcd", strings.Join(r.cfg.Endpoints, ","))
	return nil
}

// writeClientConfig lists every replica in the admin client config: this
// one first, then the others, so that the CLI moves to another when one
// is down.
func (r *replica) writeClientConfig(ctx context.Context, dataDir string, writeDefault bool) error {
	kvs, err := r.raw.List(ctx, replicasPrefix)
	if err != nil {
		return err
	}
	var others []string
	for _, kv := range kvs {
		var rec replicaRecord
		if json.Unmarshal(kv.Value, &rec) == nil && rec.URL != "" && rec.URL != r.cfg.Advertise {
			others = append(others, rec.URL)
		}
	}
	sort.Strings(others)
	path := filepath.Join(dataDir, "client.json")
	c, err := client.LoadConfigFile(path)
	if err != nil {
		return err
	}
	c.Server = strings.Join(append([]string{r.cfg.Advertise}, others...), ",")
	if err := c.Save(path); err != nil {
		return err
	}
	if p := client.DefaultConfigPath(); writeDefault && p != path {
		return c.Save(p)
	}
	return nil
}

// Elector is the replica's election (nil with the embedded store).
func (cp *ControlPlane) Elector() *leader.Elector {
	if cp.rep == nil {
		return nil
	}
	return cp.rep.elector()
}

// close waits for the election to end (it resigns when ctx ends).
func (r *replica) close() { r.wg.Wait() }
