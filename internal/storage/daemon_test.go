package storage

import (
	"bytes"
	"context"
	"encoding/json"
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
	"testing"
	"time"

	"vgrid/internal/testenv"
)

const MiB = 1 << 20

func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-storage-daemon", "qemu-io", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, "%s not installed", tool)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testLog sends the daemon's log to the test's output.
type testLog struct {
	mu sync.Mutex
	t  *testing.T
	b  bytes.Buffer
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *testLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// client is an NBD+TLS client of a Daemon's exports, by qemu-io and
// qemu-img.
type client struct {
	t    *testing.T
	port int
	tls  string // tls-creds-x509 client directory
}

// with is c reporting to t (a subtest).
func (c client) with(t *testing.T) client {
	c.t = t
	return c
}

func (c client) imageOpts(export string) string {
	return fmt.Sprintf("driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=%d,export=%s,tls-creds=t", c.port, export)
}

// io runs qemu-io commands on the export; it fails on a non-zero exit or
// any failed pattern check.
func (c client) io(export string, readOnly bool, cmds ...string) (string, error) {
	args := []string{"--object", "tls-creds-x509,id=t,dir=" + c.tls + ",endpoint=client", "--image-opts"}
	if readOnly {
		args = append(args, "-r")
	}
	args = append(args, c.imageOpts(export))
	for _, cmd := range cmds {
		args = append(args, "-c", cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-io", args...).CombinedOutput()
	s := string(out)
	if err == nil && (strings.Contains(s, "verification failed") || strings.Contains(s, "error") || strings.Contains(s, "failed")) {
		err = errors.New("command failed")
	}
	if err != nil {
		return s, fmt.Errorf("qemu-io %v: %v: %s", cmds, err, s)
	}
	return s, nil
}

func (c client) mustIO(export string, readOnly bool, cmds ...string) {
	c.t.Helper()
	if _, err := c.io(export, readOnly, cmds...); err != nil {
		c.t.Fatal(err)
	}
}

// size is the export's size as a new client sees it.
func (c client) size(export string) int64 {
	c.t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json",
		"--object", "tls-creds-x509,id=t,dir="+c.tls+",endpoint=client",
		"--image-opts", c.imageOpts(export)).CombinedOutput()
	if err != nil {
		c.t.Fatalf("qemu-img info: %v: %s", err, out)
	}
	var info struct {
		Size int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		c.t.Fatalf("qemu-img info: %v: %s", err, out)
	}
	return info.Size
}

type fixture struct {
	cfg    Config
	ca     *testCA
	client client
	log    *testLog
}

func newFixture(t *testing.T) *fixture {
	needTools(t)
	ca := newTestCA(t, "vgrid test CA")
	cert, key := ca.issue(t, "storage-1", certOpts{})
	ccert, ckey := ca.issue(t, "host-2", certOpts{})
	port := freePort(t)
	lw := &testLog{t: t}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("daemon log:\n%s", lw.String())
		}
	})
	return &fixture{
		cfg: Config{
			Dir:    t.TempDir(),
			Listen: "127.0.0.1:" + strconv.Itoa(port),
			CACert: ca.certPEM, Cert: cert, Key: key,
			Log: slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
		ca:     ca,
		client: client{t: t, port: port, tls: clientDir(t, ca.certPEM, ccert, ckey)},
		log:    lw,
	}
}

func (f *fixture) start(t *testing.T) *Daemon {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Start(ctx, f.cfg)
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, f.log.String())
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func volumeOf(t *testing.T, d *Daemon, name string) Volume {
	t.Helper()
	vols, err := d.Volumes()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("volume %q not listed in %+v", name, vols)
	return Volume{}
}

// TestDaemon goes through a volume's life against a real
// qemu-storage-daemon, one step after the other on one daemon.
func TestDaemon(t *testing.T) {
	f := newFixture(t)
	d := f.start(t)
	ctx := ctxT(t)
	c := f.client

	t.Run("create", func(t *testing.T) {
		if err := d.Create(ctx, "vol", 4*MiB); err != nil {
			t.Fatal(err)
		}
		if err := d.Create(ctx, "vol", 4*MiB); err != nil {
			t.Fatalf("same size again: %v", err)
		}
		if err := d.Create(ctx, "vol", 8*MiB); !errors.Is(err, ErrExists) {
			t.Fatalf("another size: %v, want ErrExists", err)
		}
		for _, bad := range []struct {
			name string
			size int64
		}{{"Vol", MiB}, {"", MiB}, {"a_b", MiB}, {strings.Repeat("a", 64), MiB}, {"ok", 0}, {"ok", -512}, {"ok", 1000}} {
			if err := d.Create(ctx, bad.name, bad.size); err == nil {
				t.Errorf("Create(%q, %d): no error", bad.name, bad.size)
			}
		}
		v := volumeOf(t, d, "vol")
		if v.Size != 4*MiB || v.Exported || v.Allocated <= 0 {
			t.Fatalf("volume %+v, want 4 MiB, allocated > 0, not exported", v)
		}
		out, err := exec.Command("qemu-img", "info", "--output=json", filepath.Join(f.cfg.Dir, "volumes", "vol.qcow2")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"format": "qcow2"`) {
			t.Fatalf("qemu-img info: %v: %s", err, out)
		}
	})

	t.Run("export", func(t *testing.T) {
		c := c.with(t)
		exp, err := d.Export(ctx, "vol", false)
		if err != nil {
			t.Fatal(err)
		}
		if exp != (Export{Name: "vol", Addr: f.cfg.Listen}) {
			t.Fatalf("export %+v", exp)
		}
		if _, err := d.Export(ctx, "vol", false); err != nil {
			t.Fatalf("again: %v", err)
		}
		if _, err := d.Export(ctx, "vol", true); !errors.Is(err, ErrExported) {
			t.Fatalf("read-only while writable: %v, want ErrExported", err)
		}
		if _, err := d.Export(ctx, "nope", false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing volume: %v, want ErrNotFound", err)
		}
		c.mustIO("vol", false, "write -P 0xab 0 1M", "flush")
		c.mustIO("vol", true, "read -P 0xab 0 1M", "read -P 0 1M 3M")
		if v := volumeOf(t, d, "vol"); !v.Exported || v.ReadOnly {
			t.Fatalf("volume %+v, want exported writable", v)
		}
		b, err := os.ReadFile(filepath.Join(f.cfg.Dir, "exports.json"))
		if err != nil {
			t.Fatal(err)
		}
		if m, err := decodeExports(b); err != nil || len(m) != 1 || m["vol"] {
			t.Fatalf("exports.json %s: %v %v", b, m, err)
		}
	})

	t.Run("tls", func(t *testing.T) {
		c := c.with(t)
		other := newTestCA(t, "another CA")
		ocert, okey := other.issue(t, "intruder", certOpts{})
		for _, tc := range []struct {
			name string
			dir  string
		}{
			{"no client certificate", clientDir(t, f.ca.certPEM, nil, nil)},
			// The client trusts both CAs (so it accepts the server's
			// certificate and its own), the server only its own.
			{"certificate of another CA", clientDir(t, append(append([]byte{}, f.ca.certPEM...), other.certPEM...), ocert, okey)},
		} {
			bad := client{t: t, port: c.port, tls: tc.dir}
			out, err := bad.io("vol", true, "read 0 4k")
			if err == nil || !strings.Contains(out, "TLS") {
				t.Errorf("%s: %v: %s; want a refusal in the TLS handshake", tc.name, err, out)
			}
		}
		if !strings.Contains(f.log.String(), "Verify failed") {
			t.Error("the daemon did not log refusing the clients")
		}
	})

	t.Run("two writers at once", func(t *testing.T) {
		c := c.with(t)
		// One client stays connected while a second one writes; the
		// first then reads what the second wrote.
		cmd := exec.Command("qemu-io", "--object", "tls-creds-x509,id=t,dir="+c.tls+",endpoint=client",
			"--image-opts", c.imageOpts("vol"))
		stdin, _ := cmd.StdinPipe()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		io.WriteString(stdin, "read -P 0xab 0 4k\n")
		time.Sleep(300 * time.Millisecond) // connected
		c.mustIO("vol", false, "write -P 0x22 2M 4k", "flush")
		io.WriteString(stdin, "read -P 0x22 2M 4k\nquit\n")
		stdin.Close()
		if err := cmd.Wait(); err != nil || strings.Contains(out.String(), "fail") {
			t.Fatalf("first client: %v: %s", err, out.String())
		}
		if n := strings.Count(out.String(), "read 4096/4096"); n != 2 {
			t.Fatalf("first client did %d reads, want 2: %s", n, out.String())
		}
	})

	t.Run("read-only export", func(t *testing.T) {
		c := c.with(t)
		if err := d.Create(ctx, "ro", MiB); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Export(ctx, "ro", true); err != nil {
			t.Fatal(err)
		}
		out, err := c.io("ro", false, "write -P 1 0 4k")
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Fatalf("write to a read-only export succeeded: %s", out)
		}
		c.mustIO("ro", true, "read -P 0 0 4k")
		if v := volumeOf(t, d, "ro"); !v.Exported || !v.ReadOnly {
			t.Fatalf("volume %+v, want exported read-only", v)
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		c := c.with(t)
		c.mustIO("vol", false, "write -P 0xcd 1M 1M", "flush")
		old := d.PID()
		killed := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// An operation issued while the daemon is down waits for it (or
		// runs again once it is back).
		if err := d.Create(ctx, "during", MiB); err != nil {
			t.Fatalf("Create during the restart: %v", err)
		}
		var back time.Duration
		for {
			if pid := d.PID(); pid != 0 && pid != old && d.Restarts() == 1 {
				back = time.Since(killed)
				break
			}
			if time.Since(killed) > 5*time.Second {
				t.Fatalf("not restarted after 5 s (pid %d, restarts %d)", d.PID(), d.Restarts())
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("restarted in %v", back)
		if back > 1500*time.Millisecond {
			t.Errorf("restart took %v, want about 1 s at most", back)
		}
		c.mustIO("vol", true, "read -P 0xab 0 1M", "read -P 0xcd 1M 1M", "read -P 0x22 2M 4k")
		c.mustIO("ro", true, "read -P 0 0 4k")
		if !strings.Contains(f.log.String(), "restarting") {
			t.Error("the restart is not logged")
		}
	})

	t.Run("resize while exported", func(t *testing.T) {
		c := c.with(t)
		if err := d.Resize(ctx, "vol", 2*MiB); err == nil {
			t.Fatal("shrinking: no error")
		}
		if err := d.Resize(ctx, "vol", 8*MiB); err != nil {
			t.Fatal(err)
		}
		if got := c.size("vol"); got != 8*MiB {
			t.Fatalf("a new client sees %d bytes, want %d", got, 8*MiB)
		}
		c.mustIO("vol", false, "write -P 0x33 7M 1M", "flush")
		c.mustIO("vol", true, "read -P 0xab 0 1M", "read -P 0x33 7M 1M")
		if v := volumeOf(t, d, "vol"); v.Size != 8*MiB {
			t.Fatalf("volume %+v, want 8 MiB", v)
		}
		// Not exported: opened for the resize and closed again.
		if err := d.Resize(ctx, "ro", 2*MiB); err != nil {
			t.Fatalf("resizing a read-only export: %v", err)
		}
		if err := d.Resize(ctx, "nope", 2*MiB); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing volume: %v", err)
		}
	})

	t.Run("snapshot while exported and written", func(t *testing.T) {
		c := c.with(t)
		// A writer keeps writing to the end of the volume during the
		// snapshot.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.io("vol", false, fmt.Sprintf("write -P %d 6M 512k", i%200+1))
			}
		}()
		err := d.Snapshot(ctx, "vol", "snap1")
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		c.mustIO("vol", false, "write -P 0x77 0 1M", "flush")
		if _, err := d.Export(ctx, "snap1", true); err != nil {
			t.Fatal(err)
		}
		c.mustIO("snap1", true, "read -P 0xab 0 1M", "read -P 0xcd 1M 1M", "read -P 0x33 7M 1M")
		if got := c.size("snap1"); got != 8*MiB {
			t.Fatalf("snapshot size %d, want %d", got, 8*MiB)
		}
		if err := d.Snapshot(ctx, "vol", "snap1"); !errors.Is(err, ErrExists) {
			t.Fatalf("snapshot onto an existing volume: %v", err)
		}
		// Of a volume that is not exported.
		if err := d.Create(ctx, "plain", MiB); err != nil {
			t.Fatal(err)
		}
		if err := d.Snapshot(ctx, "plain", "plain-copy"); err != nil {
			t.Fatal(err)
		}
		if v := volumeOf(t, d, "plain-copy"); v.Size != MiB || v.Exported {
			t.Fatalf("copy %+v", v)
		}
	})

	t.Run("delete", func(t *testing.T) {
		c := c.with(t)
		if err := d.Delete(ctx, "vol"); !errors.Is(err, ErrExported) {
			t.Fatalf("delete while exported: %v, want ErrExported", err)
		}
		if err := d.Delete(ctx, "plain-copy"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(f.cfg.Dir, "volumes", "plain-copy.qcow2")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("file still there: %v", err)
		}
		if err := d.Delete(ctx, "plain-copy"); err != nil {
			t.Fatalf("deleting again: %v", err)
		}
		if err := d.Unexport(ctx, "ro"); err != nil {
			t.Fatal(err)
		}
		if err := d.Unexport(ctx, "ro"); err != nil {
			t.Fatalf("unexport again: %v", err)
		}
		if out, err := c.io("ro", true, "read 0 4k"); err == nil {
			t.Fatalf("unexported volume still served: %s", out)
		}
		if err := d.Delete(ctx, "ro"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("close and start again", func(t *testing.T) {
		c := c.with(t)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if out, err := c.io("vol", true, "read 0 4k"); err == nil {
			t.Fatalf("served after Close: %s", out)
		}
		if _, err := d.Export(ctx, "plain", false); !errors.Is(err, ErrClosed) {
			t.Fatalf("Export after Close: %v, want ErrClosed", err)
		}
		d2 := f.start(t)
		if d2.Restarts() != 0 {
			t.Fatalf("restarts %d", d2.Restarts())
		}
		c.mustIO("vol", true, "read -P 0x77 0 1M", "read -P 0xcd 1M 1M", "read -P 0x33 7M 1M")
		c.mustIO("snap1", true, "read -P 0xab 0 1M")
		var names []string
		vols, _ := d2.Volumes()
		for _, v := range vols {
			names = append(names, fmt.Sprintf("%s:%t", v.Name, v.Exported))
		}
		if got := strings.Join(names, " "); got != "during:false plain:false snap1:true vol:true" {
			t.Fatalf("volumes %s", got)
		}
	})
}
