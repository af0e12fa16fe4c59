package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/guest/image"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
	"vgrid/internal/server"
	"vgrid/internal/store/bolt"
)

// defaultDataDir is $VGRID_DATA_DIR, else /var/lib/vgrid for root, else
// ~/.local/share/vgrid.
func defaultDataDir() string {
	if d := os.Getenv("VGRID_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/vgrid"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "vgrid")
}

const defaultListen = "127.0.0.1:7443"

type upOptions struct {
	dataDir, listen, accel, nodeName, policy string
	images                                   []string
	detach                                   bool
	writeConfig                              bool
	labels                                   map[string]string
}

func newUpCmd() *cobra.Command {
	o := &upOptions{}
	c := &cobra.Command{
		Use:   "up",
		Short: "Run everything on this machine: control plane, embedded store and a local agent",
		Long: `Run the control plane with its embedded store and a host agent for this
machine, in one process. The agent talks to the control plane over the same
HTTPS API that agents on other hosts use.

On first start it creates a CA, an admin token and a client config
(<data-dir>/client.json, copied to the default client config path) so the
CLI works with no flags. Images found in <data-dir>/images/*/image.json are
registered at start. Workspaces keep running when vgrid up stops, and are
adopted again when it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.detach {
				return detach(cmd.Context(), o)
			}
			return runUp(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where the store, certificates, images and workspace disks live")
	f.StringVar(&o.listen, "listen", defaultListen, "HTTPS listen address of the API")
	f.StringVar(&o.accel, "accel", "auto", "guest acceleration: auto (KVM only with hardware virtualization), kvm or tcg")
	f.StringVar(&o.nodeName, "node-name", "", "name of this host (default: the host name)")
	f.StringArrayVar(&o.images, "image", nil, "also register the image built in this directory (repeatable)")
	f.StringToStringVar(&o.labels, "label", nil, "host labels, key=value (repeatable)")
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background (log in <data-dir>/vgrid.log) and return when ready")
	f.StringVar(&o.policy, "policy", "", "lease calendar policy file (YAML: backfill, placement, suspend, fair_share, quotas; see docs/cli.md)")
	f.BoolVar(&o.writeConfig, "write-config", true, "write the client config to the default client config path too")
	return c
}

func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// runUp is the all-in-one process.
func runUp(ctx context.Context, o *upOptions) error {
	log := newLogger()
	cp, err := startControlPlane(ctx, log, o.dataDir, o.listen, o.policy, o.images, o.writeConfig)
	if err != nil {
		return err
	}
	defer cp.close()

	drv, err := qemu.New(qemu.Options{StateDir: filepath.Join(o.dataDir, "instances"), Accel: o.accel, Logger: log})
	if err != nil {
		return err
	}
	defer drv.Close()
	ag, err := agent.New(agent.Config{
		Server:  client.Config{Server: cp.url, Token: cp.joinToken, CACert: cp.caPEM},
		DataDir: filepath.Join(o.dataDir, "agent"),
		Node:    model.Node{Name: o.nodeName, Labels: o.labels, Accel: drv.Accel(), AgentVersion: version},
		Driver:  drv,
		Logger:  log,
	})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = ag.Run(ctx) }()
	fmt.Fprintf(os.Stderr, "vgrid up: API at %s, data in %s, host %s (%s). Ctrl-C stops vgrid; workspaces keep running.\n",
		cp.url, o.dataDir, ag.NodeName(), drv.Accel())
	err = cp.wait(ctx)
	wg.Wait()
	return err
}

// controlPlane is a running server with its store and listener.
type controlPlane struct {
	srv       *server.Server
	st        *bolt.Store
	hs        *http.Server
	url       string
	caPEM     string
	joinToken string
	errc      chan error
	log       *slog.Logger
	wg        sync.WaitGroup
}

func startControlPlane(ctx context.Context, log *slog.Logger, dataDir, listen, policyPath string, images []string, writeConfig bool) (*controlPlane, error) {
	policy, err := loadPolicy(policyPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	dataDir, _ = filepath.Abs(dataDir)
	st, err := bolt.Open(filepath.Join(dataDir, "store.db"))
	if err != nil {
		return nil, err
	}
	srv, err := server.New(server.Config{Store: st, Logger: log, Policy: policy})
	if err != nil {
		st.Close()
		return nil, err
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	files, err := server.EnsureTLS(filepath.Join(dataDir, "tls"), []string{host})
	if err != nil {
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
	urlHost := host
	if urlHost == "" || net.ParseIP(urlHost) != nil && net.ParseIP(urlHost).IsUnspecified() {
		urlHost = "127.0.0.1"
	}
	cp := &controlPlane{srv: srv, st: st, url: "https://" + net.JoinHostPort(urlHost, strconv.Itoa(addr.Port)),
		caPEM: string(ca), errc: make(chan error, 2), log: log}
	if err := cp.bootstrap(ctx, dataDir, images, writeConfig); err != nil {
		ln.Close()
		st.Close()
		return nil, err
	}
	cp.hs = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	cp.wg.Add(2)
	go func() {
		defer cp.wg.Done()
		if err := cp.hs.Serve(tls.NewListener(ln, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cp.errc <- err
		}
	}()
	go func() { defer cp.wg.Done(); _ = srv.Run(ctx) }()
	if err := os.WriteFile(filepath.Join(dataDir, "vgrid.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		log.Warn("write pid file", "err", err)
	}
	return cp, nil
}

// bootstrap creates the default project, the admin client config and the
// local join token, and registers the images in the data directory.
func (cp *controlPlane) bootstrap(ctx context.Context, dataDir string, images []string, writeConfig bool) error {
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
	cfg.Server, cfg.CACert, cfg.Project, cfg.DataDir = cp.url, cp.caPEM, "default", dataDir
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
	joinPath := filepath.Join(dataDir, "join.token")
	if b, err := os.ReadFile(joinPath); err == nil && cp.srv.TokenValid(ctx, strings.TrimSpace(string(b))) {
		cp.joinToken = strings.TrimSpace(string(b))
	} else {
		if cp.joinToken, err = cp.srv.CreateToken(ctx, "default", server.RoleJoin); err != nil {
			return err
		}
		if err := os.WriteFile(joinPath, []byte(cp.joinToken+"\n"), 0o600); err != nil {
			return err
		}
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

// wait serves until ctx ends or the listener fails, then shuts down.
func (cp *controlPlane) wait(ctx context.Context) error {
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

func (cp *controlPlane) close() {
	cp.wg.Wait()
	cp.st.Close()
}

func newServerCmd() *cobra.Command {
	var dataDir, listen, policy string
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane only (agents on hosts join it with a join token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cp, err := startControlPlane(ctx, newLogger(), dataDir, listen, policy, nil, true)
			if err != nil {
				return err
			}
			defer cp.close()
			fmt.Fprintf(os.Stderr, "vgrid server: API at %s; join token for agents in %s\n", cp.url, filepath.Join(dataDir, "join.token"))
			return cp.wait(ctx)
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "where the store and certificates live")
	c.Flags().StringVar(&listen, "listen", defaultListen, "HTTPS listen address")
	c.Flags().StringVar(&policy, "policy", "", "lease calendar policy file (see vgrid up --help)")
	return c
}

func newAgentCmd() *cobra.Command {
	var dataDir, srvURL, joinFile, caFile, accel, nodeName string
	var labels map[string]string
	c := &cobra.Command{
		Use:   "agent",
		Short: "Run a host agent that joins a control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			join, err := os.ReadFile(joinFile)
			if err != nil {
				return fmt.Errorf("--join-token-file: %w", err)
			}
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			log := newLogger()
			drv, err := qemu.New(qemu.Options{StateDir: filepath.Join(dataDir, "instances"), Accel: accel, Logger: log})
			if err != nil {
				return err
			}
			defer drv.Close()
			ag, err := agent.New(agent.Config{
				Server:  client.Config{Server: srvURL, Token: strings.TrimSpace(string(join)), CACert: string(ca)},
				DataDir: filepath.Join(dataDir, "agent"),
				Node:    model.Node{Name: nodeName, Labels: labels, Accel: drv.Accel(), AgentVersion: version},
				Driver:  drv, Logger: log,
			})
			if err != nil {
				return err
			}
			return ag.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "where workspace disks and the image cache live")
	f.StringVar(&srvURL, "server", "https://"+defaultListen, "control plane URL")
	f.StringVar(&joinFile, "join-token-file", "", "file holding a join token (vgrid token create --role join)")
	f.StringVar(&caFile, "ca", "", "the control plane's CA certificate (<server data dir>/tls/ca.crt)")
	f.StringVar(&accel, "accel", "auto", "auto, kvm or tcg")
	f.StringVar(&nodeName, "node-name", "", "name of this host (default: the host name)")
	f.StringToStringVar(&labels, "label", nil, "host labels, key=value")
	return c
}

// detach starts `vgrid up` in the background and waits until its API answers.
func detach(ctx context.Context, o *upOptions) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(o.dataDir, "vgrid.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"up", "--data-dir", o.dataDir, "--listen", o.listen, "--accel", o.accel,
		"--write-config=" + strconv.FormatBool(o.writeConfig)}
	if o.nodeName != "" {
		args = append(args, "--node-name", o.nodeName)
	}
	if o.policy != "" {
		abs, err := filepath.Abs(o.policy)
		if err != nil {
			return err
		}
		args = append(args, "--policy", abs)
	}
	for _, im := range o.images {
		args = append(args, "--image", im)
	}
	for k, v := range o.labels {
		args = append(args, "--label", k+"="+v)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cfgPath := filepath.Join(o.dataDir, "client.json")
	w := newWaiter(os.Stderr, "starting vgrid up")
	defer w.done()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("vgrid up exited (%v); see %s", err, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		cfg, err := client.LoadConfigFile(cfgPath)
		if err != nil || cfg.Token == "" {
			continue
		}
		cl, err := client.New(cfg)
		if err != nil {
			continue
		}
		nodes, err := cl.Nodes(ctx)
		if err != nil {
			w.status("waiting for the API")
			continue
		}
		for _, n := range nodes {
			if n.Ready {
				w.done()
				fmt.Fprintf(os.Stderr, "vgrid up running in the background (pid %d): API %s, host %s (%s), log %s\n",
					pid, cfg.Server, n.Name, n.Accel, logPath)
				return nil
			}
		}
		w.status("waiting for the local agent to register")
	}
	return fmt.Errorf("vgrid up did not become ready in 90s; see %s", logPath)
}

func newDownCmd() *cobra.Command {
	var dataDir string
	c := &cobra.Command{
		Use:   "down",
		Short: "Stop a vgrid up running in the background (workspaces keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(filepath.Join(dataDir, "vgrid.pid"))
			if err != nil {
				return fmt.Errorf("no vgrid up in %s: %w", dataDir, err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return fmt.Errorf("pid file: %w", err)
			}
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					fmt.Fprintln(os.Stderr, "vgrid up was not running")
					return nil
				}
				return err
			}
			for i := 0; i < 100; i++ {
				if syscall.Kill(pid, 0) != nil {
					fmt.Fprintf(os.Stderr, "vgrid up (pid %d) stopped; workspaces keep running and are adopted at the next vgrid up\n", pid)
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("vgrid up (pid %d) did not stop in 10s", pid)
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the vgrid up to stop")
	return c
}
