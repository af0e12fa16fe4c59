package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/profiler"
	"github.com/chromedp/chromedp"

	"vgrid/internal/controlplane"
	"vgrid/internal/model"
	"vgrid/internal/server"
)

func main() {
	nHosts := flag.Int("hosts", 100, "hosts (registered, no agents: nothing runs)")
	nLeases := flag.Int("leases", 2000, "leases to book")
	pans := flag.Int("pans", 60, "pans of the Gantt chart")
	chrome := flag.String("chromium", "/usr/bin/chromium", "Chromium binary")
	runs := flag.Int("runs", 1, "loads of the page to measure (the median by load time is reported)")
	cpuProfile := flag.String("cpuprofile", "", "write the page's CPU profile (load and pans; Chrome .cpuprofile JSON) to this file")
	flag.Parse()
	if err := run(*nHosts, *nLeases, *pans, *runs, *chrome, *cpuProfile); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard bench:", err)
		os.Exit(1)
	}
}

func run(nHosts, nLeases, pans, runs int, chrome, cpuProfile string) error {
	dir, err := os.MkdirTemp("", "vgrid-dash-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Hosts without agents stay Ready for a day: the calendar books them.
	cp, err := controlplane.Start(ctx, lg, controlplane.Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		RateLimit: server.RateLimit{Disabled: true}, NodeTimeout: 24 * time.Hour, NodeLostAfter: 48 * time.Hour})
	if err != nil {
		return err
	}
	// Close waits for the control plane's background work, which ends
	// with ctx: cancel first.
	defer func() { cancel(); cp.Close() }()
	go cp.Wait(ctx)
	srv := cp.Server()
	ctl := srv.Controller()
	admin, err := srv.CreateToken(ctx, "default", server.RoleAdmin)
	if err != nil {
		return err
	}
	img, err := image(dir)
	if err != nil {
		return err
	}
	if err := srv.RegisterImage(ctx, img); err != nil {
		return err
	}
	t0 := time.Now()
	for i := 0; i < nHosts; i++ {
		n := model.Node{Name: fmt.Sprintf("host-%03d", i), Accel: "fake",
			Capacity: model.Resources{MilliCPU: 16000, Memory: 32 * model.GiB, Disk: 500 * model.GiB}}
		if _, err := ctl.RegisterNode(ctx, n); err != nil {
			return fmt.Errorf("register %s: %w", n.Name, err)
		}
	}
	// Reservations spread over three days, a third best effort; five
	// projects. Created through the controller, 4 at a time.
	now := time.Now()
	rng := rand.New(rand.NewSource(1))
	type job struct {
		project string
		spec    model.WorkspaceSpec
	}
	jobs := make(chan job)
	var made, refused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if _, err := ctl.CreateWorkspace(ctx, j.project, j.spec); err != nil {
					refused.Add(1)
				} else if n := made.Add(1); n%250 == 0 {
					fmt.Fprintf(os.Stderr, "  %d leases booked after %v\n", n, time.Since(t0).Round(time.Second))
				}
			}
		}()
	}
	for i := 0; i < nLeases; i++ {
		sp := model.WorkspaceSpec{Name: fmt.Sprintf("ws-%04d", i), Image: img.Name,
			Quantum:  model.Quantum{VCPUs: 1 + rng.Intn(4), Memory: model.ByteSize(1+rng.Intn(4)) * model.GiB},
			Duration: model.Duration(time.Duration(1+rng.Intn(6)) * time.Hour)}
		if i%3 == 0 {
			sp.Lease = &model.LeaseSpec{Kind: model.LeaseBestEffort}
		} else {
			start := now.Add(time.Duration(rng.Intn(72*60)) * time.Minute).Truncate(time.Minute).Add(10 * time.Minute)
			sp.Lease = &model.LeaseSpec{Kind: model.LeaseReservation, Start: start}
		}
		jobs <- job{fmt.Sprintf("proj-%d", i%5), sp}
	}
	close(jobs)
	wg.Wait()
	setup := time.Since(t0)
	fmt.Printf("setup: %d hosts, %d leases booked (%d refused) in %v\n", nHosts, made.Load(), refused.Load(), setup.Round(time.Millisecond))

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1600, 1000),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// Log in once (the token lives in session storage), then load the
	// calendar page afresh: that load is measured.
	if err := chromedp.Do(bctx, chromedp.Navigate(cp.URL+"/#/login"), chromedp.WaitVisible("#token")); err != nil {
		return err
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(`sessionStorage.setItem('vgrid.token', %q), true`, admin))); err != nil {
		return err
	}
	var all []result
	for r := 0; r < runs; r++ {
		res, err := measure(bctx, cp.URL, pans, cpuProfile != "" && r == 0)
		if err != nil {
			return err
		}
		if cpuProfile != "" && r == 0 {
			if err := writeProfile(bctx, cpuProfile); err != nil {
				return err
			}
		}
		if runs > 1 {
			fmt.Printf("run %d: load %.0f ms, render %.0f ms, frames p95 %.1f ms, longest %.1f ms, %d bars loaded, %d fetches while panning\n",
				r+1, res.loadMs, res.loadMs-res.dataMs, res.p95, res.longest, res.loaded, res.panFetches)
			if len(res.steps) == 5 {
				fmt.Printf("  steps (ms from navigation start): DOM ready %.0f, app started %.0f, login checked %.0f, calendar read %.0f, rows drawn %.0f, bars drawn %.0f\n",
					res.steps[0], res.steps[1], res.steps[2], res.steps[3], res.steps[4], res.loadMs)
			}
		}
		all = append(all, res)
	}
	// The median run by load time, and the worst frame of all runs.
	sort.Slice(all, func(i, j int) bool { return all[i].loadMs < all[j].loadMs })
	m := all[len(all)/2]
	worst := 0.0
	for _, r := range all {
		worst = max(worst, r.longest)
	}
	fmt.Println()
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| hosts / leases booked / bars in the calendar (−24 h … +14 days) | %d / %d / %d |\n", nHosts, made.Load(), m.total)
	fmt.Printf("| bars loaded by the page at first render | %d |\n", m.loaded)
	fmt.Printf("| bars drawn in the DOM (visible window, 24 h) | %d |\n", m.drawn)
	fmt.Printf("| page load → first Gantt render (navigation start → gantt-rendered) | %.0f ms |\n", m.loadMs)
	fmt.Printf("| Gantt render (calendar JSON in → gantt-rendered) | %.0f ms |\n", m.loadMs-m.dataMs)
	fmt.Printf("| pans | %d (%d frames, %d calendar fetches while panning) |\n", pans, m.frames, m.panFetches)
	fmt.Printf("| frame time while panning: p95 / longest | %.1f ms / %.1f ms |\n", m.p95, m.longest)
	if runs > 1 {
		fmt.Printf("| runs | %d (median by load shown; longest frame of all runs %.1f ms) |\n", runs, worst)
	}
	verdict := "no freeze (longest frame < 200 ms)"
	if worst >= 200 {
		verdict = "FROZE: a frame took 200 ms or more"
	}
	fmt.Printf("| verdict | %s; page load target < 1 s: %v |\n", verdict, m.loadMs < 1000)
	return nil
}

// result is one load of the calendar page and its pans.
type result struct {
	loadMs, dataMs float64
	total, loaded  int // bars in the whole calendar, bars the page loaded
	drawn          int
	frames         int
	p95, longest   float64
	panFetches     int
	steps          []float64 // see measure
}

// measure loads the calendar page afresh (logged in: the token is in
// session storage) and pans its chart. With profile set, it opens the
// overview first and starts the CPU profiler there, then switches to
// the calendar within the page: a profile lives in one document (the
// load time then excludes the page's own load).
func measure(bctx context.Context, url string, pans int, profile bool) (result, error) {
	var res result
	if !profile {
		if err := chromedp.Do(bctx, chromedp.Navigate("about:blank"), chromedp.Navigate(url+"/#/calendar")); err != nil {
			return res, err
		}
	} else {
		if err := chromedp.Do(bctx, chromedp.Navigate(url+"/#/overview"), chromedp.WaitVisible("#overview table"),
			chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				if _, err := cdp.Call(ctx, t, profiler.Enable, cdp.Empty{}); err != nil {
					return err
				}
				if _, err := cdp.Call(ctx, t, profiler.SetSamplingInterval, profiler.SetSamplingIntervalParams{Interval: 200}); err != nil {
					return err
				}
				_, err := cdp.Call(ctx, t, profiler.Start, cdp.Empty{})
				return err
			})); err != nil {
			return res, err
		}
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`location.hash = '#/calendar', true`)); err != nil {
			return res, err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[[]float64](`(() => { const r = performance.getEntriesByName('gantt-rendered'); const d = performance.getEntriesByName('gantt-data'); return r.length && d.length ? [r[0].startTime, d[0].startTime, window.vgrid.timelineItems().length] : [] })()`))
		if err == nil && len(v) == 3 {
			res.loadMs, res.dataMs, res.loaded = v[0], v[1], int(v[2])
			// Where the load went: the document parsed, the login
			// checked, the calendar read, the rows drawn (ms from the
			// navigation's start; -1: no such mark).
			res.steps, _ = chromedp.Run(bctx, chromedp.Evaluate[[]float64](`(() => {
				const m = (n) => { const e = performance.getEntriesByName(n); return e.length ? e[0].startTime : -1; };
				const nav = performance.getEntriesByType('navigation')[0];
				return [nav ? nav.domContentLoadedEventEnd : -1, m('app-start'), m('who'), m('gantt-data'), m('rows-drawn')];
			})()`))
			break
		}
		if time.Now().After(deadline) {
			status, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("cal-status").textContent + JSON.stringify(window.vgrid.timeline() && window.vgrid.timeline().getWindow())`))
			return res, fmt.Errorf("no gantt-rendered mark within 60s (%v; the page says %q)", err, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The whole calendar, as the page would read it without windowing.
	total, err := chromedp.Run(bctx, chromedp.Evaluate[int](`(async () => {
		const r = await fetch('/api/v1/calendar?format=json&from=-24h&to=336h', { headers: { Authorization: 'Bearer ' + sessionStorage.getItem('vgrid.token') } });
		const c = await r.json();
		return (c.rows || []).reduce((n, row) => n + (row.bars || []).length, 0);
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		return res, err
	}
	res.total = total
	if res.drawn, err = chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#gantt .vis-item.bar').length`)); err != nil {
		return res, err
	}
	// Pans: each moves the window by a fifth of its width, the next one
	// on the next frame; requestAnimationFrame gaps are sampled all along,
	// and the calendar fetches the page makes meanwhile are counted.
	frames, err := chromedp.Run(bctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(async () => {
		const tl = window.vgrid.timeline();
		const fetches = () => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/calendar')).length;
		const before = fetches();
		const gaps = [];
		let last = performance.now(), on = true;
		const tick = (t) => { gaps.push(t - last); last = t; if (on) requestAnimationFrame(tick); };
		requestAnimationFrame(tick);
		const frame = () => new Promise(r => requestAnimationFrame(() => r()));
		for (let i = 0; i < %d; i++) {
			const w = tl.getWindow();
			const d = (w.end - w.start) / 5 * (i %% 20 < 10 ? 1 : -1);
			tl.setWindow(new Date(+w.start + d), new Date(+w.end + d), { animation: false });
			await frame();
		}
		await frame(); await frame();
		on = false;
		return [fetches() - before, ...gaps.slice(1)];
	})()`, pans), chromedp.EvalAwaitPromise))
	if err != nil {
		return res, err
	}
	res.panFetches = int(frames[0])
	frames = frames[1:]
	sort.Float64s(frames)
	res.frames = len(frames)
	res.p95 = frames[int(float64(len(frames)-1)*0.95)]
	res.longest = frames[len(frames)-1]
	return res, nil
}

// writeProfile stops the page's CPU profiler and writes its profile as
// JSON (open it in Chrome DevTools' Performance panel).
func writeProfile(bctx context.Context, path string) error {
	return chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, profiler.Stop, cdp.Empty{})
		if err != nil {
			return err
		}
		data, err := json.Marshal(res.Profile)
		if err != nil {
			return err
		}
		return os.WriteFile(path, data, 0o644)
	}))
}

// image writes a small image's files (nothing boots it).
func image(dir string) (model.Image, error) {
	var files []*model.ImageFile
	for _, n := range []string{"rootfs.img", "vmlinux", "initrd.img"} {
		p := filepath.Join(dir, n)
		data := []byte("dashboard bench " + n)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return model.Image{}, err
		}
		h := sha256.Sum256(data)
		files = append(files, &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))})
	}
	return model.Image{Name: "bench-img", Boot: "direct", Disk: *files[0], DiskFormat: "raw",
		Kernel: files[1], Initrd: files[2], MinDisk: 64 * model.MiB}, nil
}
