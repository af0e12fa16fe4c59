package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/guest/proto"
	"vgrid/internal/model"
)

const (
	defaultPortWait = 10 * time.Second
	maxLine         = 1 << 20
	// disconnectedPoll is how often a read is retried while no host is
	// connected (the port then reads EOF at once instead of blocking).
	disconnectedPoll = 100 * time.Millisecond
)

// Config configures an Agent. The zero value is what the guest uses; the
// hooks exist so that tests on the host do not touch the real system.
type Config struct {
	// Root is where proc, sys, dev, etc, root and var are looked up; "" is "/".
	Root string
	// PortWait is how long to poll quickly for the virtio-serial port before
	// logging that it is missing (polling then goes on, slower). Default 10 s.
	PortWait time.Duration
	// Log receives diagnostics; nil means the standard logger.
	Log *log.Logger
	// PowerOff replaces sync + reboot(POWER_OFF).
	PowerOff func() error
	// SetHostname replaces sethostname(2).
	SetHostname func(name string) error
	// RunUserData replaces starting the user-data script.
	RunUserData func(script string, env []string) error
	// Links replaces the guest's interfaces (netlink) that a
	// network-config is applied to. Nil: netlink when Root is "/", else
	// a network-config is not applied.
	Links Links
	// LinkWait is how long a network-config's interfaces are waited for
	// (default 5 s).
	LinkWait time.Duration
	// StartDHCP replaces starting the DHCP client on an interface
	// (busybox udhcpc), which is done when the seed has no
	// network-config. Nil: udhcpc when Root is "/", else nothing.
	StartDHCP func(iface string) error
	// WatchEvery is how often Run looks for changes of the machine that
	// the host makes while the guest runs (MemTotal moved by the balloon,
	// the root disk grown, CPUs online) to report them unasked, and grows
	// the root filesystem when its disk grew. Default 1 s.
	WatchEvery time.Duration
	// VolumeWait bounds the wait for the network volumes' disks at boot
	// (default 30 s; volumes.go).
	VolumeWait time.Duration
	// FormatVolume replaces mke2fs on a new volume's disk.
	FormatVolume func(dev string) error
	// MountVolume replaces mount(2) of a volume. Nil: mount(2) when Root
	// is "/", else volumes are not mounted.
	MountVolume func(dev, dir string, readOnly bool) error
}

// Agent is the in-guest agent. Create it with New.
type Agent struct {
	root        string
	portWait    time.Duration
	log         *log.Logger
	powerOff    func() error
	setHostname func(string) error
	runUserData func(string, []string) error
	links       Links
	linkWait    time.Duration
	startDHCP   func(string) error
	dhcpStarted bool // by this agent, for eth0

	context bool // the seed was read
	roster  int  // the revision of the cluster roster applied (0: none)
	lines   lineReader
	execs   chan struct{} // one token per running command (MaxExecs)
	// watchEvery and changed: watchMachine signals a change of the
	// machine on changed, and Serve sends the host fresh facts.
	watchEvery time.Duration
	changed    chan struct{}
	// Network volumes (volumes.go): the hooks, and what became of the
	// seed's volumes, sent with the facts.
	volumeWait   time.Duration
	formatVolume func(string) error
	mountVolume  func(string, string, bool) error
	volMu        sync.Mutex
	volumes      []proto.VolumeStatus
}

// New returns an agent with cfg's defaults filled in.
func New(cfg Config) *Agent {
	a := &Agent{
		root:        cfg.Root,
		portWait:    cfg.PortWait,
		log:         cfg.Log,
		powerOff:    cfg.PowerOff,
		setHostname: cfg.SetHostname,
		runUserData: cfg.RunUserData,
		links:       cfg.Links,
		linkWait:    cfg.LinkWait,
		startDHCP:   cfg.StartDHCP,
		execs:       make(chan struct{}, MaxExecs),
		watchEvery:  cfg.WatchEvery,
		changed:     make(chan struct{}, 1),

		volumeWait:   cfg.VolumeWait,
		formatVolume: cfg.FormatVolume,
		mountVolume:  cfg.MountVolume,
	}
	if a.volumeWait <= 0 {
		a.volumeWait = defaultVolumeWait
	}
	if a.formatVolume == nil {
		a.formatVolume = formatVolume
	}
	if a.watchEvery <= 0 {
		a.watchEvery = defaultWatchEvery
	}
	if a.root == "" {
		a.root = "/"
	}
	if a.root == "/" {
		// Only in a real guest: tests on the host must not touch its
		// interfaces.
		if a.links == nil {
			a.links = netlinkLinks{}
		}
		if a.startDHCP == nil {
			a.startDHCP = startUDHCPC
		}
		if a.mountVolume == nil {
			a.mountVolume = mountVolume
		}
	}
	if a.linkWait <= 0 {
		a.linkWait = linkWait
	}
	if a.portWait <= 0 {
		a.portWait = defaultPortWait
	}
	if a.log == nil {
		a.log = log.Default()
	}
	if a.powerOff == nil {
		a.powerOff = powerOff
	}
	if a.setHostname == nil {
		a.setHostname = func(name string) error { return unix.Sethostname([]byte(name)) }
	}
	if a.runUserData == nil {
		a.runUserData = runUserDataScript
	}
	return a
}

// Run applies the workspace context, watches the power button and serves
// the host on the virtio-serial port until ctx ends. It does not return
// while ctx is live: a missing port or a disconnected host is waited out.
func (a *Agent) Run(ctx context.Context) error {
	start := time.Now()
	// Changes of the machine from now on are reported (and a disk grown
	// after the growRoot below grown too): the host may resize the guest
	// while it boots.
	go a.watchMachine(ctx)
	if a.root == "" || a.root == "/" {
		// Only in a real guest: the workspace's disk may be larger than
		// the image's filesystem.
		if grew, err := growRoot(""); err != nil {
			a.log.Printf("grow root filesystem: %v", err)
		} else if grew {
			a.log.Printf("root filesystem grown to fill the disk")
		}
	}
	ok, err := a.applyContext()
	if err != nil {
		a.log.Printf("context: %v", err)
	}
	a.context = ok
	for _, dev := range powerButtons(a.root) {
		go func() {
			if err := watchPowerButton(dev, a.powerOff); err != nil {
				a.log.Print(err)
			}
		}()
	}
	readySent := false
	for ctx.Err() == nil {
		path, err := a.waitPort(ctx)
		if err != nil {
			return err
		}
		port, err := openPort(path)
		if err != nil {
			a.log.Print(err)
			sleep(ctx, time.Second)
			continue
		}
		if !readySent {
			a.waitAddress(ctx)
			// Blocks until the host connects.
			info := a.facts()
			if err := writeMessage(port, proto.Message{Type: proto.TypeReady, Info: &info, Volumes: a.volumeStatus()}); err != nil {
				a.log.Printf("send ready: %v", err)
				port.Close()
				sleep(ctx, time.Second)
				continue
			}
			readySent = true
			a.log.Printf("ready on %s, %.2fs after agent start, guest uptime %.2fs",
				path, time.Since(start).Seconds(), info.UptimeS)
		}
		for ctx.Err() == nil {
			err = a.Serve(port)
			if !errors.Is(err, io.EOF) {
				break
			}
			// No host connected: wait for one.
			sleep(ctx, disconnectedPoll)
		}
		if err != nil && ctx.Err() == nil {
			a.log.Printf("port %s: %v; reopening", path, err)
		}
		port.Close()
		sleep(ctx, 500*time.Millisecond)
	}
	return ctx.Err()
}

// Serve answers requests from rw, one JSON message per line, until reading
// fails, and returns that error (io.EOF when the host went away). Commands
// (proto.TypeExec) run in the background, their output interleaved with
// other replies; those still running when Serve returns are killed and
// waited for. A change of the machine that the agent's watcher saw (Run)
// is sent as a facts message without an ID.
func (a *Agent) Serve(rw io.ReadWriter) error {
	ctx, cancel := context.WithCancel(context.Background())
	var execs sync.WaitGroup
	defer func() {
		cancel()
		execs.Wait()
	}()
	var wmu sync.Mutex
	send := func(m proto.Message) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeMessage(rw, m)
	}
	execs.Add(1)
	go func() {
		defer execs.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.changed:
			}
			if ctx.Err() != nil {
				// The host went away: the next one asks for facts anyway.
				return
			}
			info := a.facts()
			if err := send(proto.Message{Type: proto.TypeFacts, Info: &info, Volumes: a.volumeStatus()}); err != nil {
				a.log.Printf("send changed facts: %v", err)
				return
			}
		}
	}()
	for {
		line, err := a.lines.next(rw)
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var req proto.Message
		var reply proto.Message
		var after func() error
		if err := json.Unmarshal(line, &req); err != nil {
			reply = proto.Message{Type: proto.TypeError, Message: fmt.Sprintf("bad request: %v", err)}
		} else if req.Type == proto.TypeExec {
			a.startExec(ctx, &execs, req, send)
			continue
		} else {
			reply, after = a.Handle(req)
		}
		if err := send(reply); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
		if after != nil {
			if err := after(); err != nil {
				a.log.Print(err)
			}
		}
	}
}

// Handle answers one request. after, when set, runs once the reply is sent.
func (a *Agent) Handle(req proto.Message) (reply proto.Message, after func() error) {
	switch req.Type {
	case proto.TypeFacts:
		info := a.facts()
		return proto.Message{Type: proto.TypeFacts, ID: req.ID, Info: &info, Volumes: a.volumeStatus()}, nil
	case proto.TypePing:
		return proto.Message{Type: proto.TypePong, ID: req.ID}, nil
	case proto.TypeShutdown:
		return proto.Message{Type: proto.TypeShutdown, ID: req.ID}, a.powerOff
	default:
		return proto.Message{Type: proto.TypeError, ID: req.ID,
			Message: fmt.Sprintf("unknown request type %q", req.Type)}, nil
	}
}

// facts is Facts with what the agent applied of the seed.
func (a *Agent) facts() model.GuestInfo {
	info := Facts(a.root, a.context)
	info.Roster = a.roster
	if a.roster > 0 {
		// A roster pushed since the boot (ApplyRoster) is newer.
		info.Roster = max(a.roster, appliedRoster(a.root))
	}
	return info
}

func writeMessage(w io.Writer, m proto.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// lineReader splits a stream into lines and keeps a partial line between
// calls. A read error drops the partial line: it belonged to a host
// connection that is gone.
type lineReader struct {
	buf     []byte
	discard bool // skipping the rest of an over-long line
}

func (l *lineReader) next(r io.Reader) ([]byte, error) {
	chunk := make([]byte, 4096)
	for {
		if i := bytes.IndexByte(l.buf, '\n'); i >= 0 {
			line := l.buf[:i]
			rest := l.buf[i+1:]
			l.buf = append(make([]byte, 0, len(rest)), rest...)
			if l.discard {
				l.discard = false
				continue
			}
			return line, nil
		}
		if len(l.buf) > maxLine {
			l.buf = l.buf[:0]
			l.discard = true
		}
		n, err := r.Read(chunk)
		l.buf = append(l.buf, chunk[:n]...)
		if err != nil {
			l.buf = l.buf[:0]
			l.discard = false
			return nil, err
		}
	}
}

// findPort returns the /dev node of the virtio-serial port named
// proto.PortName, or "" when there is none (yet).
func findPort(root string) string {
	names, _ := filepath.Glob(filepath.Join(root, "sys/class/virtio-ports/*/name"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(b)) != proto.PortName {
			continue
		}
		dev := filepath.Join(root, "dev", filepath.Base(filepath.Dir(n)))
		if _, err := os.Stat(dev); err == nil {
			return dev
		}
	}
	return ""
}

// waitPort polls for the port, quickly for portWait and then every second.
func (a *Agent) waitPort(ctx context.Context) (string, error) {
	deadline := time.Now().Add(a.portWait)
	warned := false
	for {
		if p := findPort(a.root); p != "" {
			return p, nil
		}
		every := 50 * time.Millisecond
		if time.Now().After(deadline) {
			if !warned {
				a.log.Printf("no virtio-serial port named %s after %s; still waiting", proto.PortName, a.portWait)
				warned = true
			}
			every = time.Second
		}
		if !sleep(ctx, every) {
			return "", ctx.Err()
		}
	}
}

// sleep waits for d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// rawPort is a virtio-serial port used with plain blocking system calls.
// (The Go poller would put it in non-blocking mode, which changes how the
// port behaves while no host is connected.) A read returns io.EOF when no
// host is connected; a write blocks until one is.
type rawPort struct {
	fd   int
	path string
}

func openPort(path string) (*rawPort, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open port %s: %w", path, err)
	}
	return &rawPort{fd: fd, path: path}, nil
}

func (p *rawPort) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(p.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, fmt.Errorf("read %s: %w", p.path, err)
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (p *rawPort) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(p.fd, b[done:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("write %s: %w", p.path, err)
		}
		done += n
	}
	return done, nil
}

func (p *rawPort) Close() error { return unix.Close(p.fd) }
