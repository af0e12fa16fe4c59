package browser

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/controlplane"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/server"
	"vgrid/internal/testenv"
)

const chromiumPath = "/usr/bin/chromium"

const imageName = "dash-img"

// hosts of the test grid: small, so that a few leases fill them.
var hosts = []model.Node{
	{Name: "h1", Capacity: model.Resources{MilliCPU: 4000, Memory: 4 * model.GiB, Disk: 20 * model.GiB}},
	{Name: "h2", Capacity: model.Resources{MilliCPU: 4000, Memory: 4 * model.GiB, Disk: 20 * model.GiB}},
	{Name: "h3", Capacity: model.Resources{MilliCPU: 2000, Memory: 2 * model.GiB, Disk: 20 * model.GiB}},
}

// grid is a running control plane with agents and tokens.
type grid struct {
	cp          *controlplane.ControlPlane
	url         string
	caPath      string
	admin, a, b string // tokens: admin, user of project pa, user of pb
	dir         string
}

// startGrid starts a control plane on loopback (HTTPS, its own CA) and
// one agent per host with the fake driver, in this process.
func startGrid(t *testing.T) *grid {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	lf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	lg := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cp, err := controlplane.Start(ctx, lg, controlplane.Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		RateLimit: server.RateLimit{Disabled: true}})
	if err != nil {
		cancel()
		t.Fatalf("control plane: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cp.Wait(ctx); close(done) }()
	g := &grid{cp: cp, url: cp.URL, dir: dir, caPath: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(g.caPath, []byte(cp.CAPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := cp.Server()
	for _, tk := range []struct {
		p       *string
		project string
		role    string
	}{{&g.admin, "default", server.RoleAdmin}, {&g.a, "pa", server.RoleUser}, {&g.b, "pb", server.RoleUser}} {
		if *tk.p, err = srv.CreateToken(ctx, tk.project, tk.role); err != nil {
			t.Fatal(err)
		}
	}
	img := testImage(t, dir)
	if err := srv.RegisterImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	stopAgents := startAgents(t, g, img, filepath.Join(dir, "agents"), lg)
	t.Cleanup(func() {
		stopAgents()
		cancel()
		<-done
		cp.Close()
		lf.Close()
	})
	return g
}

func (g *grid) client(t *testing.T, token string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Server: g.url, Token: token, CACert: g.cp.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// testImage writes a small direct-boot image's files (the fake driver
// never reads them).
func testImage(t *testing.T, dir string) model.Image {
	file := func(n string) *model.ImageFile {
		p := filepath.Join(dir, n)
		data := []byte(strings.Repeat("dashboard test "+n+"\n", 256))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}
	}
	return model.Image{Name: imageName, Boot: "direct", Disk: *file("rootfs.img"), DiskFormat: "raw",
		Kernel: file("vmlinux"), Initrd: file("initrd.img"), MinDisk: 64 * model.MiB}
}

// startAgents runs an agent per host on the fake driver, joining with
// the control plane's join token, their image caches filled beforehand,
// and waits until every host is Ready.
func startAgents(t *testing.T, g *grid, img model.Image, dir string, lg *slog.Logger) func() {
	t.Helper()
	actx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range hosts {
		data := filepath.Join(dir, n.Name)
		cache := filepath.Join(data, "images")
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []*model.ImageFile{&img.Disk, img.Kernel, img.Initrd} {
			b, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cache, f.SHA256), b, 0o444); err != nil {
				t.Fatal(err)
			}
		}
		drv := fake.New(filepath.Join(dir, n.Name+"-instances"))
		node := n
		node.Accel = "fake"
		a, err := agent.New(agent.Config{
			Server:  client.Config{Server: g.url, Token: g.cp.JoinToken, CACert: g.cp.CAPEM},
			DataDir: data, Node: node, Driver: drv, Logger: lg.With("host", n.Name),
			Heartbeat: 2 * time.Second, Resync: 500 * time.Millisecond, StopTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer drv.Close()
			_ = a.Run(actx)
		}()
	}
	stop := func() {
		cancel()
		ch := make(chan struct{})
		go func() { wg.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Errorf("agents did not stop within 20s")
		}
	}
	admin := g.client(t, g.admin)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ns, err := admin.Nodes(context.Background())
		ready := 0
		for _, n := range ns {
			if n.Ready {
				ready++
			}
		}
		if err == nil && ready == len(hosts) {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("agents did not register: %d of %d hosts ready (%v)", ready, len(hosts), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// browser is one headless Chromium tab with what its console said.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string // console errors, exceptions, error log entries
	allow  []string // substrings of log entries expected now (a refused token's 401)
}

// startBrowser starts Chromium with a fresh profile; it skips (fails
// under VGRID_REQUIRE_ALL) when Chromium is not installed.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Skip(t, "chromium not installed (%v): apt-get install chromium", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
		// The control plane's CA is its own: the browser is not told of it.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1400, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.add("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.add(fmt.Sprintf("exception: %s (%s:%d)", msg, d.URL, d.LineNumber))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				b.add(fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	if err != nil {
		cancel()
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); acancel() })
	return b
}

func (b *browser) add(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range b.allow {
		if strings.Contains(s, a) {
			return
		}
	}
	b.errors = append(b.errors, s)
}

// expect lets log entries containing s pass while f runs (a wrong
// token's 401 is logged by the browser as a failed load).
func (b *browser) expect(s string, f func()) {
	b.mu.Lock()
	b.allow = append(b.allow, s)
	b.mu.Unlock()
	defer func() {
		time.Sleep(200 * time.Millisecond) // entries arrive asynchronously
		b.mu.Lock()
		b.allow = b.allow[:len(b.allow)-1]
		b.mu.Unlock()
	}()
	f()
}

// consoleErrors returns what the console said since the last call.
func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errors
	b.errors = nil
	return e
}

// run runs actions with a timeout.
func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value, with a timeout.
func get[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	return get(t, b, expr, chromedp.Evaluate[T](expr))
}

// waitJS polls a JavaScript expression until it is true.
func (b *browser) waitJS(t *testing.T, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		last, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && last {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %s not true within %v", what, expr, timeout)
}

// artifacts is where screenshots go.
func artifacts(t *testing.T) string {
	dir := os.Getenv("VGRID_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.ModuleRoot(t), "test", "browser", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // the charts redraw asynchronously
	png := get(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	p := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// httpClient trusts the control plane's CA.
func (g *grid) httpClient(t *testing.T) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(g.cp.CAPEM)) {
		t.Fatal("control plane CA: no certificate")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
