package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"vgrid/internal/store"
)

// DefaultPrefix is the etcd key prefix under which the store keeps its keys
// when Config.Prefix is empty.
const DefaultPrefix = "/vgrid/"

// Defaults of Config's durations.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// Config says how to reach the etcd cluster and where the store's keys are.
type Config struct {
	// Endpoints are the client URLs of the cluster's members, e.g.
	// "http://10.0.0.1:2379" (or https:// with TLS). At least one.
	Endpoints []string
	// Prefix is prepended to every store key (default DefaultPrefix).
	// Stores with different prefixes on one cluster do not see each
	// other's keys, but share the cluster's revision counter.
	Prefix string
	// CAFile, CertFile, KeyFile: TLS to etcd, all optional. CAFile alone
	// verifies the servers; CertFile and KeyFile (both or neither) are
	// the client's certificate. Any of them turns TLS on.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds Open's first contact with the cluster (default
	// DefaultDialTimeout).
	DialTimeout time.Duration
	// RequestTimeout bounds each request whose context has no deadline
	// (default DefaultRequestTimeout): without a quorum etcd requests
	// would otherwise wait for ever.
	RequestTimeout time.Duration
	// WatchBuffer is how many events a watcher may lag behind before its
	// channel is closed (default DefaultWatchBuffer).
	WatchBuffer int
	// Logger receives the store's and the etcd client's warnings
	// (default slog.Default()).
	Logger *slog.Logger
}

// Store is a store.Store kept in etcd. Revisions are etcd's: a key's
// revision is its mod_revision, the store's revision the cluster's.
type Store struct {
	client    *clientv3.Client
	prefix    string
	endpoints string // for error messages
	timeout   time.Duration
	log       *slog.Logger

	watchBuffer int

	ctx    context.Context // canceled by Close: ends the watches
	cancel context.CancelFunc
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the etcd cluster of cfg and checks, within ctx and
// DialTimeout, that it answers a linearizable read (it has a quorum).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: Config.Endpoints: at least one endpoint is needed")
	}
	for i, ep := range cfg.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return nil, fmt.Errorf("etcd store: Config.Endpoints[%d]: empty endpoint", i)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.DialTimeout < 0 || cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("etcd store: Config.DialTimeout %v, RequestTimeout %v: must not be negative", cfg.DialTimeout, cfg.RequestTimeout)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.WatchBuffer < 0 {
		return nil, fmt.Errorf("etcd store: Config.WatchBuffer %d: must not be negative", cfg.WatchBuffer)
	}
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = DefaultWatchBuffer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tlsConf, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	eps := strings.Join(cfg.Endpoints, ",")
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsConf,
		Logger:      zapLogger(cfg.Logger),
		// Detect dead connections to a member well before a request's
		// deadline, so that the client moves to another endpoint.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store: connect to %s: %w", eps, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{client: client, prefix: cfg.Prefix, endpoints: eps, timeout: cfg.RequestTimeout, log: cfg.Logger,
		watchBuffer: cfg.WatchBuffer, ctx: sctx, cancel: cancel}

	cctx, ccancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer ccancel()
	if _, err := client.Get(cctx, cfg.Prefix, clientv3.WithCountOnly()); err != nil {
		cancel()
		_ = client.Close()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("etcd store: open: %w", ctx.Err())
		}
		return nil, fmt.Errorf("etcd store: open: %w", s.explain(cctx, err, fmt.Sprintf("within %v", cfg.DialTimeout)))
	}
	return s, nil
}

// tlsConfig builds the client's TLS configuration, or nil without TLS.
func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && cfg.KeyFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("etcd store: Config.CertFile %q, KeyFile %q: give both or neither", cfg.CertFile, cfg.KeyFile)
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd store: Config.CertFile/KeyFile: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd store: Config.CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd store: Config.CAFile %s: no PEM certificate in it", cfg.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// Client returns the etcd client the store uses, for what the store does
// not do (leader election with the concurrency package, compaction). The
// store owns it: Close closes it.
func (s *Store) Client() *clientv3.Client { return s.client }

// Prefix returns the etcd key prefix of the store's keys.
func (s *Store) Prefix() string { return s.prefix }

// Key returns the etcd key of a store key.
func (s *Store) Key(storeKey string) string { return s.prefix + storeKey }

// StoreKey returns the store key of an etcd key, and false if the etcd
// key is not under the store's prefix.
func (s *Store) StoreKey(etcdKey string) (string, bool) {
	if !strings.HasPrefix(etcdKey, s.prefix) {
		return "", false
	}
	return etcdKey[len(s.prefix):], true
}

// begin starts a call: it fails if the store is closed or ctx is done, and
// bounds ctx by the request timeout if it has no deadline.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}, nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	return rctx, cancel, nil
}

// fail wraps an error of the etcd client: ErrClosed after Close, the
// caller's cancellation as it is, else with the endpoints and the likely
// reason (errors.Is still finds the original error).
func (s *Store) fail(ctx, rctx context.Context, what string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", what, store.ErrClosed)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	limit := "before the caller's deadline"
	if _, ok := ctx.Deadline(); !ok {
		limit = fmt.Sprintf("within %v", s.timeout) // the deadline begin set
	}
	return fmt.Errorf("%s: %w", what, s.explain(rctx, err, limit))
}

// explain says why etcd did not answer, naming the endpoints; limit
// describes rctx's deadline.
func (s *Store) explain(rctx context.Context, err error, limit string) error {
	var why string
	switch {
	case errors.Is(rctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		why = "no answer " + limit + " (no member reachable, or no quorum)"
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("etcd at %s: %s: %w (%w)", s.endpoints, why, context.DeadlineExceeded, err)
		}
	case errors.Is(err, rpctypes.ErrNoLeader):
		why = "the cluster has no leader (no quorum)"
	case errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost), errors.Is(err, rpctypes.ErrLeaderChanged):
		why = "the request timed out in the cluster (its leader lost or changing, or no quorum; a write may or may not have been applied)"
	case status.Code(err) == codes.Unavailable:
		// The connection to the member asked broke (it was stopped, or
		// is unreachable) and no other answered in its place.
		why = "no member answered (stopped or unreachable, or no quorum; a write may or may not have been applied)"
	default:
		return fmt.Errorf("etcd at %s: %w", s.endpoints, err)
	}
	return fmt.Errorf("etcd at %s: %s: %w", s.endpoints, why, err)
}

// checkKey rejects what etcd cannot keep as a store key.
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	return nil
}

// kv converts an etcd key-value whose key is under the prefix.
func (s *Store) kv(key []byte, value []byte, modRev int64) store.KV {
	v := value
	if v == nil {
		v = []byte{} // an empty value is present, not nil
	}
	return store.KV{Key: string(key[len(s.prefix):]), Value: v, Revision: modRev}
}

// Get returns the key, or an error wrapping store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return store.KV{}, err
	}
	defer cancel()
	resp, err := s.client.Get(rctx, s.Key(key))
	if err != nil {
		return store.KV{}, s.fail(ctx, rctx, "get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	e := resp.Kvs[0]
	return s.kv(e.Key, e.Value, e.ModRevision), nil
}

// List returns every key with the prefix, in key order, read at one
// revision in one request.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.client.Get(rctx, s.Key(prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, s.fail(ctx, rctx, "list "+prefix, err)
	}
	var kvs []store.KV
	if len(resp.Kvs) > 0 {
		kvs = make([]store.KV, len(resp.Kvs))
	}
	for i, e := range resp.Kvs {
		kvs[i] = s.kv(e.Key, e.Value, e.ModRevision)
	}
	return kvs, nil
}

// ListPage returns at most limit keys with the prefix after the key after,
// in key order, and whether more follow: one range request from the first
// key to the prefix's end, limited to limit+1 keys. (etcd 3.4 walks the
// whole range's index for a limited range; later versions stop early.)
func (s *Store) ListPage(ctx context.Context, prefix, after string, limit int) ([]store.KV, bool, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer cancel()
	start := s.Key(prefix)
	if after != "" && after >= prefix {
		start = s.Key(after) + "\x00" // the least key after after
	}
	end := clientv3.GetPrefixRangeEnd(s.Key(prefix))
	if start >= end {
		return nil, false, nil
	}
	opts := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)+1))
	}
	resp, err := s.client.Get(rctx, start, opts...)
	if err != nil {
		return nil, false, s.fail(ctx, rctx, "list page of "+prefix, err)
	}
	got := resp.Kvs
	more := limit > 0 && len(got) > limit
	if more {
		got = got[:limit]
	}
	var kvs []store.KV
	if len(got) > 0 {
		kvs = make([]store.KV, len(got))
	}
	for i, e := range got {
		kvs[i] = s.kv(e.Key, e.Value, e.ModRevision)
	}
	return kvs, more, nil
}

// Revision returns the cluster's current revision (a linearizable read).
func (s *Store) Revision(ctx context.Context) (int64, error) {
	rctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	return s.revision(ctx, rctx)
}

func (s *Store) revision(ctx, rctx context.Context) (int64, error) {
	// Any read's header carries the revision; a count of one key is cheap.
	resp, err := s.client.Get(rctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.fail(ctx, rctx, "revision", err)
	}
	return resp.Header.Revision, nil
}

// Close closes the watch channels and the client. Later calls return
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	s.cancel()
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd store: close client of %s: %w", s.endpoints, err)
	}
	return nil
}
