package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config configures a Daemon.
type Config struct {
	Dir               string // state: volumes, sockets, exports file
	Listen            string // host:port of the NBD server (e.g. "10.0.0.2:10809"); port 0 is not allowed
	CACert, Cert, Key []byte // PEM: the control plane's CA, the host's certificate and key
	Binary            string // default "qemu-storage-daemon"
	Log               *slog.Logger
}

// Export is a volume served over NBD: Name is both the volume's and the
// NBD export's name, Addr the server's host:port.
type Export struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	ReadOnly bool   `json:"read_only"`
}

// Volume describes a volume on disk.
type Volume struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`      // virtual size, bytes
	Allocated int64  `json:"allocated"` // bytes the file takes on disk
	Exported  bool   `json:"exported"`
	ReadOnly  bool   `json:"read_only"` // exported read-only
}

// Supervision timing.
const (
	minBackoff  = 200 * time.Millisecond
	maxBackoff  = 4 * time.Second
	stableAfter = 30 * time.Second // an incarnation up this long resets the backoff
	launchWait  = 10 * time.Second // start to QMP socket answering
	stopWait    = 5 * time.Second  // SIGTERM to SIGKILL
)

const tlsID = "vgrid-tls"

// Daemon supervises one qemu-storage-daemon and manages the volumes of
// its directory. Its methods are safe for concurrent use; they are
// serialized.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	host     string // of cfg.Listen
	port     string
	volDir   string
	tlsDir   string
	runDir   string
	sock     string
	pidFile  string
	expFile  string
	lockFile *os.File
	// ln is the NBD server's listening socket, opened once by Start and
	// handed to each incarnation (fd 3): clients reconnect to the same
	// socket across restarts, and it has TCP_NODELAY, which the
	// connections it accepts inherit (QEMU 7.2's NBD server does not set
	// it, and with TLS each small reply then waits for a delayed ACK:
	// 40 ms a 4 KiB random read).
	ln *net.TCPListener

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the supervisor returns

	mu       sync.Mutex
	exports  map[string]bool // persisted: name → read-only
	p        *proc           // nil while down
	up       chan struct{}   // closed while p != nil
	nodes    map[string]string
	seq      int
	restarts int
	closed   bool
}

// proc is one incarnation of qemu-storage-daemon.
type proc struct {
	cmd     *exec.Cmd
	q       *qmpClient
	exited  chan struct{} // closed once reaped
	err     error         // its exit, after exited
	started time.Time
}

// Start validates cfg, launches qemu-storage-daemon (killing one a
// crashed predecessor left behind), starts its NBD server with TLS and
// adds every persisted export, then supervises it until Close.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.Dir == "" {
		return nil, errors.New("Dir: empty")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("Dir: %w", err)
	}
	cfg.Dir = dir
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		cfg.Binary = "qemu-storage-daemon"
	}
	if _, err := exec.LookPath(cfg.Binary); err != nil {
		return nil, fmt.Errorf("Binary: %w", err)
	}
	if err := checkTLS(cfg.CACert, cfg.Cert, cfg.Key, time.Now()); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{
		cfg:     cfg,
		log:     log.With("component", "storage"),
		host:    host,
		port:    port,
		volDir:  filepath.Join(dir, "volumes"),
		tlsDir:  filepath.Join(dir, "tls"),
		runDir:  filepath.Join(dir, "run"),
		expFile: filepath.Join(dir, "exports.json"),
		done:    make(chan struct{}),
		up:      make(chan struct{}),
		nodes:   map[string]string{},
	}
	d.sock = filepath.Join(d.runDir, "qmp.sock")
	d.pidFile = filepath.Join(d.runDir, "qsd.pid")
	if len(d.sock) >= 108 {
		return nil, fmt.Errorf("Dir: %q is too long for a unix socket path inside it", dir)
	}
	for _, p := range []string{dir, d.volDir, d.runDir} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("Dir: %w", err)
		}
	}
	if d.lockFile, err = lockDir(filepath.Join(dir, "lock")); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.lockFile.Close()
		}
	}()
	if d.exports, err = loadExports(d.expFile); err != nil {
		return nil, err
	}
	if err := writeTLSDir(d.tlsDir, cfg.CACert, cfg.Cert, cfg.Key); err != nil {
		return nil, err
	}
	d.killStale()
	d.removeTemporaries()
	// A predecessor just killed may hold the port a moment longer (its
	// other threads exit after the one /proc shows a zombie).
	for deadline := time.Now().Add(stopWait); ; time.Sleep(50 * time.Millisecond) {
		d.ln, err = listenNoDelay(ctx, cfg.Listen)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("Listen: %w", err)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.mu.Lock()
	p, err := d.launchLocked(ctx)
	d.mu.Unlock()
	if err != nil {
		d.cancel()
		d.ln.Close()
		return nil, err
	}
	ok = true
	go d.supervise(p)
	return d, nil
}

// listenNoDelay opens a TCP listening socket on addr with TCP_NODELAY set.
func listenNoDelay(ctx context.Context, addr string) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

func splitListen(listen string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("Listen: %q: %w", listen, err)
	}
	if host == "" {
		return "", "", fmt.Errorf("Listen: %q: no host (use 0.0.0.0 or :: for every address)", listen)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("Listen: %q: port must be a number from 1 to 65535", listen)
	}
	return host, port, nil
}

// lockDir takes an exclusive lock on path: one Daemon per directory.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("Dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("Dir: %s is in use by another storage daemon: %w", filepath.Dir(path), err)
	}
	return f, nil
}

// killStale kills a qemu-storage-daemon of this directory that outlived
// the process that supervised it (found by its pid file and checked
// against its command line), so that the new one can take the port and
// the volumes' locks.
func (d *Daemon) killStale() {
	b, err := os.ReadFile(d.pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(d.sock)) {
		return
	}
	d.log.Warn("killing a storage daemon left by a previous run", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(stopWait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return
		}
	}
}

// removeTemporaries removes half-made volumes a crash left.
func (d *Daemon) removeTemporaries() {
	ents, _ := os.ReadDir(d.volDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			os.Remove(filepath.Join(d.volDir, e.Name()))
		}
	}
}

// qemuOpt escapes a value for qemu's key=value,... option syntax.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// launchLocked starts an incarnation and sets it up: TLS credentials, the
// NBD server, every persisted export. Called with d.mu held.
func (d *Daemon) launchLocked(ctx context.Context) (*proc, error) {
	os.Remove(d.sock)
	os.Remove(d.pidFile)
	lf, err := d.ln.File() // a duplicate for the child, as its fd 3
	if err != nil {
		return nil, fmt.Errorf("NBD listening socket: %w", err)
	}
	defer lf.Close()
	// The TLS credentials and the NBD server on the inherited socket are
	// set up from the command line (an fd number is taken there, not
	// from a QMP command); exports come over QMP.
	cmd := exec.Command(d.cfg.Binary,
		"--chardev", "socket,id=qmp0,path="+qemuOpt(d.sock)+",server=on,wait=off",
		"--monitor", "chardev=qmp0,mode=control",
		"--object", "tls-creds-x509,id="+tlsID+",dir="+qemuOpt(d.tlsDir)+",endpoint=server,verify-peer=on",
		"--nbd-server", "addr.type=fd,addr.str=3,tls-creds="+tlsID,
		"--pidfile", qemuOpt(d.pidFile))
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = &logWriter{log: d.log, level: slog.LevelInfo}
	cmd.Stderr = &logWriter{log: d.log, level: slog.LevelWarn}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.cfg.Binary, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), started: time.Now()}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	fail := func(err error) (*proc, error) {
		p.kill()
		if p.q != nil {
			p.q.Close()
		}
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, launchWait)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	for {
		q, err := dialQMP(lctx, d.sock)
		if err == nil {
			p.q = q
			break
		}
		select {
		case <-p.exited:
			return fail(fmt.Errorf("%s exited at start: %v", d.cfg.Binary, p.err))
		case <-lctx.Done():
			return fail(fmt.Errorf("%s: QMP socket: %w", d.cfg.Binary, err))
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.log.Debug("storage daemon answers QMP, its NBD server started", "after", time.Since(p.started))
	d.p = p
	d.nodes = map[string]string{}
	added := 0
	for _, name := range sortedKeys(d.exports) {
		if err := d.addExportLocked(lctx, name, d.exports[name]); err != nil {
			d.log.Error("export not served", "volume", name, "err", err)
			continue
		}
		added++
	}
	close(d.up)
	d.log.Info("storage daemon up", "pid", cmd.Process.Pid, "listen", d.cfg.Listen, "exports", added, "failed", len(d.exports)-added, "after", time.Since(p.started))
	return p, nil
}

// kill stops the process at once and reaps it.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// terminate asks the process to stop (qemu flushes and closes its
// images), and kills it if it has not within stopWait.
func (p *proc) terminate() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopWait):
		p.kill()
	}
}

// supervise restarts the daemon whenever it exits, until Close.
func (d *Daemon) supervise(p *proc) {
	defer close(d.done)
	backoff := minBackoff
	for {
		select {
		case <-p.exited:
		case <-d.ctx.Done():
			// Stop the process before taking the lock: an operation
			// stuck on QMP then fails and lets go of it.
			p.terminate()
			d.mu.Lock()
			d.downLocked(p)
			d.mu.Unlock()
			return
		}
		d.mu.Lock()
		d.downLocked(p)
		d.mu.Unlock()
		if d.ctx.Err() != nil {
			return
		}
		uptime := time.Since(p.started)
		d.log.Warn("storage daemon exited; restarting", "pid", p.cmd.Process.Pid, "err", p.err, "uptime", uptime.Round(time.Millisecond))
		if uptime > stableAfter {
			backoff = minBackoff
		}
		for {
			select {
			case <-time.After(backoff):
			case <-d.ctx.Done():
				return
			}
			backoff = min(2*backoff, maxBackoff)
			d.mu.Lock()
			np, err := d.launchLocked(d.ctx)
			if err == nil {
				d.restarts++
			}
			d.mu.Unlock()
			if err == nil {
				p = np
				break
			}
			if d.ctx.Err() != nil {
				return
			}
			d.log.Error("storage daemon restart failed", "err", err, "next_try", backoff)
		}
	}
}

// downLocked forgets the incarnation p (it exited or is being stopped).
func (d *Daemon) downLocked(p *proc) {
	if d.p != p {
		return
	}
	if p.q != nil {
		go p.q.Close()
	}
	d.p = nil
	d.nodes = map[string]string{}
	d.up = make(chan struct{})
}

// lockUp waits until the daemon is up and returns its QMP client with
// d.mu held.
func (d *Daemon) lockUp(ctx context.Context) (*qmpClient, error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		if d.p != nil {
			return d.p.q, nil
		}
		up := d.up
		d.mu.Unlock()
		select {
		case <-up:
		case <-d.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("storage daemon is down: %w", ctx.Err())
		}
	}
}

// Restarts is how many times the supervisor restarted the daemon.
func (d *Daemon) Restarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.restarts
}

// PID is the current daemon's process id, 0 while it is down.
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p == nil {
		return 0
	}
	return d.p.cmd.Process.Pid
}

// Close stops the daemon (SIGTERM: it flushes and closes the volumes).
// The exports stay in exports.json for the next Start.
func (d *Daemon) Close() error {
	d.cancel() // first: a launch under way gives up at once
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	<-d.done
	d.ln.Close()
	os.Remove(d.sock)
	os.Remove(d.pidFile)
	return d.lockFile.Close()
}

// logWriter turns the daemon's output lines into log records.
type logWriter struct {
	log   *slog.Logger
	level slog.Level
	buf   []byte
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.log.Log(context.Background(), w.level, "qemu-storage-daemon: "+line)
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 4096 {
		w.buf = w.buf[:0]
	}
	return len(b), nil
}

var _ io.Writer = (*logWriter)(nil)
