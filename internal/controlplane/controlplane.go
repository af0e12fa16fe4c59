package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"vgrid/internal/agent"
	"vgrid/internal/calendar"
	"vgrid/internal/client"
	"vgrid/internal/control"
	"vgrid/internal/guest/image"
	"vgrid/internal/server"
	"vgrid/internal/store"
	"vgrid/internal/store/bolt"
)

// ControlPlane is a running control plane: its store, its HTTPS listener
// and its controller.
type ControlPlane struct {
	srv *server.Server
	st  *bolt.Store // the embedded store (nil on an etcd store)
	// rep is this replica's part in a control plane of several over etcd
	// (replica.go); nil with the embedded store.
	rep *replica
	// store is the store the control plane uses (st, or rep's view).
	store store.Store
	hs    *http.Server
	// URL is the API address; CAPEM the CA that signed its certificate;
	// JoinToken lets a host agent register.
	URL       string
	CAPEM     string
	JoinToken string
	errc      chan error
	log       *slog.Logger
	wg        sync.WaitGroup
}

// Config says where a control plane keeps its data and listens.
type Config struct {
	DataDir string
	Listen  string // host:port; port 0 picks a free one
	Policy  *calendar.Policy
	// Images are image directories (with image.json) to register besides
	// those under DataDir/images.
	Images []string
	// WriteConfig also writes the admin client config to the user's
	// default client config path.
	WriteConfig bool
	// AllowFreshStore lets Start begin with a new, empty store where it
	// would otherwise refuse: the store file is missing from a data
	// directory where vgrid ran before, damaged (it is then set aside as
	// store.db.reset-<time>, not overwritten), or not the store recorded
	// in store.id. Without it Start refuses, naming the file and the way
	// out. `vgrid store reset` is the operator's way to the same end.
	AllowFreshStore bool
	// Limits are the site's per-project object limits (zero: defaults).
	Limits control.Limits
	// RateLimit is the per-token request rate limit (zero: the default).
	RateLimit server.RateLimit
	// NodeTimeout and NodeLostAfter: a host that has not heartbeated for
	// that long is NotReady, then Lost (zero: control.DefaultNodeTimeout
	// and control.DefaultNodeLostAfter).
	NodeTimeout, NodeLostAfter time.Duration
	// CertTTL is the lifetime of the client certificates the control
	// plane's CA signs for hosts (zero: server.DefaultCertTTL, 7 days).
	// Agents renew theirs when half of it has passed.
	CertTTL time.Duration
	// ExtraListen are more addresses to serve the same API on (host or
	// host:port; no port or port 0: Listen's port once it is bound), e.g.
	// the bridge address of a namespace grid; not listened on separately
	// when Listen is on all addresses. The server certificate covers
	// their hosts too.
	ExtraListen []string
	// Etcd, if set, keeps the state in etcd rather than in the embedded
	// store, and makes this control plane one replica of several
	// (replica.go).
	Etcd *EtcdConfig
	// BlobDir is where pushed images are kept (default DataDir/blobs);
	// replicas share one (a shared file system).
	BlobDir string
}

// Start opens the store in cfg.DataDir, makes or loads the TLS material,
// bootstraps the default project, the admin client config and the local
// join token, registers images, and serves the API on cfg.Listen until ctx
// ends (Wait) . The calendar's actions run in the background.
func Start(ctx context.Context, log *slog.Logger, cfg Config) (*ControlPlane, error) {
	dataDir, listen, policy, images, writeConfig := cfg.DataDir, cfg.Listen, cfg.Policy, cfg.Images, cfg.WriteConfig
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	dataDir, _ = filepath.Abs(dataDir)
	// The store is checked, refused if damaged or missing where there was
	// one, and backed up before anything writes to it (storefile.go).
	var st store.Store
	var bst *bolt.Store
	var rep *replica
	var err error
	if cfg.Etcd != nil {
		rep, err = openReplica(ctx, log, *cfg.Etcd)
		st = rep.store
	} else {
		bst, err = openStore(ctx, log, dataDir, cfg.AllowFreshStore)
		st = bst
	}
	if err != nil {
		return nil, err
	}
	// Images are registered (POST /images) and served only from the image
	// directories: <data-dir>/images and the --image directories.
	imageDirs := append([]string{filepath.Join(dataDir, "images")}, images...)
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = control.DefaultNodeTimeout
	}
	if cfg.NodeLostAfter == 0 {
		cfg.NodeLostAfter = control.DefaultNodeLostAfter
	}
	// Pushed images' disks are kept by content in <data-dir>/blobs.
	if cfg.BlobDir == "" {
		cfg.BlobDir = filepath.Join(dataDir, "blobs")
	}
	srv, err := server.New(server.Config{Store: st, Logger: log, Policy: policy, ImageDirs: imageDirs, BlobDir: cfg.BlobDir, Limits: cfg.Limits,
		NodeTimeout: cfg.NodeTimeout, NodeLostAfter: cfg.NodeLostAfter})
	if err != nil {
		st.Close()
		return nil, err
	}
	if rep != nil {
		// A replica follows until it is elected (replica.go).
		srv.Controller().SetLeading(false)
	}
	if cfg.RateLimit != (server.RateLimit{}) {
		srv.SetRateLimit(cfg.RateLimit)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	sans := []string{host}
	if cfg.Etcd != nil && cfg.Etcd.Advertise != "" {
		if u, err := url.Parse(cfg.Etcd.Advertise); err == nil && u.Hostname() != "" {
			sans = append(sans, u.Hostname())
		}
	}
	for _, x := range cfg.ExtraListen {
		h, _, err := net.SplitHostPort(x)
		if err != nil {
			h = x
		}
		sans = append(sans, h)
	}
	if rep != nil {
		// The replicas share one CA, kept in the store (replica.go).
		if err := rep.syncCA(ctx, filepath.Join(dataDir, "tls")); err != nil {
			st.Close()
			return nil, err
		}
	}
	files, err := server.EnsureTLS(filepath.Join(dataDir, "tls"), sans)
	if err != nil {
		st.Close()
		return nil, err
	}
	if files.Replaced != "" {
		log.Warn("this data directory's CA key was not kept by an older vgrid: a new CA signs the server's and the hosts' certificates; agents on other machines need the new " + files.CACert + " (the old one is " + files.Replaced + ")")
	}
	// The same CA signs the hosts' client certificates.
	if err := srv.SetNodeCA(files, cfg.CertTTL); err != nil {
		st.Close()
		return nil, err
	}
	tlsCfg, err := server.ServerTLSConfig(files)
	if err != nil {
		st.Close()
		return nil, err
	}
	ca, err := os.ReadFile(files.CACert)
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen %s: %w (is another vgrid up running there? use --listen)", listen, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	lns := []net.Listener{ln}
	// A Listen on all addresses already serves the extra ones.
	extra := cfg.ExtraListen
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		extra = nil
	}
	for _, x := range extra {
		h, p, err := net.SplitHostPort(x)
		if err != nil {
			h, p = x, ""
		}
		if p == "" || p == "0" {
			p = strconv.Itoa(addr.Port)
		}
		xl, err := net.Listen("tcp", net.JoinHostPort(h, p))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			st.Close()
			return nil, fmt.Errorf("listen %s: %w", net.JoinHostPort(h, p), err)
		}
		lns = append(lns, xl)
	}
	urlHost := host
	if urlHost == "" || net.ParseIP(urlHost) != nil && net.ParseIP(urlHost).IsUnspecified() {
		urlHost = "127.0.0.1"
	}
	cp := &ControlPlane{srv: srv, st: bst, rep: rep, store: st, URL: "https://" + net.JoinHostPort(urlHost, strconv.Itoa(addr.Port)),
		CAPEM: string(ca), errc: make(chan error, 2), log: log}
	// What a crash left of uploads and unreferenced image blobs (a
	// replica does it when it comes to lead: the blobs are shared).
	if rep == nil {
		if err := srv.Controller().SweepBlobs(ctx); err != nil {
			log.Warn("sweep image blobs", "err", err)
		}
	}
	if err := cp.bootstrap(ctx, dataDir, images, writeConfig); err != nil {
		for _, l := range lns {
			l.Close()
		}
		st.Close()
		return nil, err
	}
	cp.hs = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	cp.errc = make(chan error, 1+len(lns))
	cp.wg.Add(1 + len(lns))
	for _, l := range lns {
		go func() {
			defer cp.wg.Done()
			if err := cp.hs.Serve(tls.NewListener(l, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cp.errc <- err
			}
		}()
	}
	go func() { defer cp.wg.Done(); _ = srv.Run(ctx) }()
	if err := os.WriteFile(filepath.Join(dataDir, "vgrid.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		log.Warn("write pid file", "err", err)
	}
	if rep != nil {
		// Serving first, campaigning next: a replica that leads must be
		// reachable by the others it forwards for.
		if err := rep.start(ctx, cp, files, cfg); err != nil {
			_ = cp.hs.Close()
			cp.wg.Wait()
			st.Close()
			return nil, err
		}
		return cp, nil
	}
	cp.serveBackups(ctx, dataDir)
	return cp, nil
}

// bootstrap creates the default project, the admin client config and the
// local join token, and registers the images in the data directory.
func (cp *ControlPlane) bootstrap(ctx context.Context, dataDir string, images []string, writeConfig bool) error {
	cfgPath := filepath.Join(dataDir, "client.json")
	cfg, _ := client.LoadConfigFile(cfgPath)
	admin, err := cp.srv.Bootstrap(ctx, "default")
	if err != nil {
		return err
	}
	if admin == "" && (cfg.Token == "" || !cp.srv.TokenValid(ctx, cfg.Token)) {
		// The admin secret is lost (hashes only are stored): make another.
		if admin, err = cp.srv.CreateToken(ctx, "default", server.RoleAdmin); err != nil {
			return err
		}
	}
	if admin != "" {
		cfg.Token = admin
	}
	cfg.Server, cfg.CACert, cfg.Project, cfg.DataDir = cp.URL, cp.CAPEM, "default", dataDir
	if err := cfg.Save(cfgPath); err != nil {
		return fmt.Errorf("write client config: %w", err)
	}
	if writeConfig {
		if p := client.DefaultConfigPath(); p != cfgPath {
			if err := cfg.Save(p); err != nil {
				cp.log.Warn("write default client config", "path", p, "err", err)
			}
		}
	}
	// The local join token expires like any join token: it is kept while
	// at least half of its lifetime is left, else replaced. vgrid up's own
	// agent needs it only to register the first time.
	joinPath := filepath.Join(dataDir, "join.token")
	if b, err := os.ReadFile(joinPath); err == nil && cp.joinTokenFresh(ctx, strings.TrimSpace(string(b))) {
		cp.JoinToken = strings.TrimSpace(string(b))
	} else {
		if cp.JoinToken, err = cp.srv.CreateToken(ctx, "default", server.RoleJoin); err != nil {
			return err
		}
		if err := os.WriteFile(joinPath, []byte(cp.JoinToken+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := cp.renewLocalAgent(ctx, filepath.Join(dataDir, "agent")); err != nil {
		return err
	}
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "images", "*", "image.json"))
	for i := range dirs {
		dirs[i] = filepath.Dir(dirs[i])
	}
	for _, d := range append(dirs, images...) {
		img, err := image.LoadManifest(d)
		if err != nil {
			return fmt.Errorf("image in %s: %w", d, err)
		}
		if err := cp.srv.RegisterImage(ctx, img); err != nil {
			return err
		}
		cp.log.Info("image registered", "image", img.Name, "dir", d)
	}
	return nil
}

// joinTokenFresh reports whether the local join token works and has at
// least half of a join token's default lifetime left.
func (cp *ControlPlane) joinTokenFresh(ctx context.Context, tok string) bool {
	exp, ok := cp.srv.TokenExpiry(ctx, tok)
	return ok && (exp.IsZero() || exp.Sub(cp.srv.Controller().Now()) >= server.DefaultJoinTTL/2)
}

// renewLocalAgent gives vgrid up's own agent (data directory
// <data-dir>/agent: cmd/vgrid/up.go) a new node token, and a new host
// certificate, if the one it saved no longer works or is about to stop:
// it expired while vgrid up was down, or an admin revoked this host. A
// join token cannot register a known host again, but the control plane
// has admin rights in-process. An agent that never registered, or a host
// the store does not know, is left to register with the join token.
func (cp *ControlPlane) renewLocalAgent(ctx context.Context, agentDir string) error {
	cred, err := agent.LoadCredential(agentDir)
	if err != nil || cred.Node == "" {
		return nil
	}
	if err := cp.renewLocalToken(ctx, agentDir, cred); err != nil {
		return err
	}
	return cp.renewLocalCertificate(ctx, agentDir, cred.Node)
}

// renewLocalCertificate gives the local agent a new host certificate (for
// its saved key, or a new one if it has none) unless the one it saved is
// accepted for 10 minutes more.
func (cp *ControlPlane) renewLocalCertificate(ctx context.Context, agentDir, node string) error {
	if pair, err := agent.LoadCertificate(agentDir); err == nil {
		if until, ok := cp.srv.NodeCertificateExpiry(ctx, node, pair.Leaf); ok && until.Sub(cp.srv.Controller().Now()) > 10*time.Minute {
			return nil
		}
	}
	key, err := agent.LoadKey(agentDir)
	if err != nil {
		if key, err = agent.NewKey(); err != nil {
			return err
		}
	}
	nc, err := cp.srv.IssueNodeCertificate(ctx, node, key.Public())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("renew the local agent's host certificate: %w", err)
	}
	if err := agent.SaveKeyAndCertificate(agentDir, key, nc.Certificate); err != nil {
		return err
	}
	cp.log.Info("local agent's host certificate renewed", "node", node, "serial", nc.Serial, "expires_at", nc.CertificateExpiresAt)
	return nil
}

// renewLocalToken gives the local agent a new node token unless the one it
// saved works for 10 minutes more.
func (cp *ControlPlane) renewLocalToken(ctx context.Context, agentDir string, cred agent.Credential) error {
	if exp, ok := cp.srv.TokenExpiry(ctx, cred.Token); ok && (exp.IsZero() || exp.Sub(cp.srv.Controller().Now()) > 10*time.Minute) {
		return nil
	}
	nt, err := cp.srv.IssueNodeToken(ctx, "default", cred.Node)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("renew the local agent's node token: %w", err)
	}
	cred.Server, cred.Token, cred.ID, cred.IssuedAt, cred.ExpiresAt = cp.URL, nt.Token, nt.ID, nt.IssuedAt, nt.ExpiresAt
	if err := agent.SaveCredential(agentDir, cred); err != nil {
		return err
	}
	cp.log.Info("local agent's node token renewed", "node", cred.Node, "token_id", nt.ID, "expires_at", nt.ExpiresAt)
	return nil
}

// Wait serves until ctx ends or the listener fails, then shuts down.
func (cp *ControlPlane) Wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-cp.errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = cp.hs.Shutdown(sctx)
	return err
}

// Close waits for the background work and closes the store.
func (cp *ControlPlane) Close() {
	cp.wg.Wait()
	if cp.rep != nil {
		cp.rep.close()
	}
	cp.store.Close()
}

// Server is the running HTTP server (for tests and wiring).
func (cp *ControlPlane) Server() *server.Server { return cp.srv }
