package fault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
)

const imageName = "fault-img"

// The calendar policy of the run: fair share between two projects (with a
// half-life, so that usage decays), a quota on one of them.
const (
	halfLife   = 10 * time.Minute
	policyYAML = `backfill: aggressive
placement: first-fit
suspend: true
fair_share:
  half_life: 10m
  weights: {default: 1, beta: 2}
quotas:
  beta: {workspaces: 4}
`
)

// hosts are small, so that leases compete and reservations displace best
// effort.
var hosts = []model.Node{
	{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 2 * model.GiB, Disk: 20 * model.GiB}},
	{Name: "h2", Capacity: model.Resources{MilliCPU: 2000, Memory: 2 * model.GiB, Disk: 20 * model.GiB}},
	{Name: "h3", Capacity: model.Resources{MilliCPU: 3000, Memory: 3 * model.GiB, Disk: 20 * model.GiB}},
}

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestKillRestart kills the control plane with SIGKILL at random moments of
// a mixed lease load, restarts it on the same data directory, and checks
// after every kill, on the store the dead server left (read-only):
//
//	(a) every acknowledged create left its workspace and lease, no refused
//	    one left anything, a create without an answer is decided once and
//	    stays decided, and so does a delete without an answer; the last
//	    acknowledged stop, cancel, start or delete is in effect; every
//	    lease runs for its spec's duration plus its acknowledged
//	    extensions; every workspace's lease is stored;
//	(b) lease records that nothing could have changed since the previous
//	    kill are byte for byte the same, though a restarted server restored
//	    and ran them in between; the clock never goes back;
//	(c) each project's fair-share usage equals what its leases' runs
//	    accrue (decayed), its charged core-seconds the sum of its leases';
//	(d) at no instant is a host booked beyond its capacity (every hold,
//	    past and current), and a current hold is its last chart segment;
//	(e) reservations keep their requested start, are held and started
//	    exactly there and never preempted; deadline leases end by their
//	    deadline; immediate ones hold their slots from their admission;
//	    non-preemptible best effort is never preempted; a lease is owed no
//	    more than it asked, and one that nobody stopped, cancelled or
//	    deleted and that was not requeued ran exactly its duration;
//	and that a workspace and its lease agree (the calendar's decisions are
//	stored with their effects).
//
// and after every restart, through the API: (a) again; (b) every lease's
// view (kind, state, start, end, hosts, suspensions, requeues, reason,
// remaining) equals the view of the record the dead server left, for the
// leases no event of which fell due during the downtime (remaining exact
// for a lease that does not run, for a running one as of the instant of
// the answer), and equals the view answered just before the kill (a
// running lease's remaining less the run time between, within 1 s) when
// the record did not change between that answer and the kill; (c) GET
// /usage shows the stored fair-share usage (when no lease began or ended
// since the kill) and counts every stored lease.
func TestKillRestart(t *testing.T) {
	seed := envInt(t, "VGRID_FAULT_SEED", time.Now().UnixNano()%1_000_000_007)
	target := int(envInt(t, "VGRID_FAULT_KILLS", 24))
	if testing.Short() && os.Getenv("VGRID_FAULT_KILLS") == "" {
		target = 6
	}
	budget := 150 * time.Second
	if raceEnabled {
		budget = 360 * time.Second
	}
	t.Logf("seed %d (replay with VGRID_FAULT_SEED=%d), %d kills, time budget %s", seed, seed, target, budget)
	// VGRID_FAULT_KEEP_GOING=1 reports failed checks and carries on
	// (to see every finding of a run) instead of stopping at the first kill
	// with one.
	keepGoing := os.Getenv("VGRID_FAULT_KEEP_GOING") != ""
	t0 := time.Now()
	rng := rand.New(rand.NewSource(seed))

	dir := t.TempDir()
	bin := buildVgrid(t)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newVgridServer(t, bin, dir, policy)
	failed := false
	defer func() {
		if failed || t.Failed() {
			t.Logf("seed %d; server log (last lines, whole log in %s):\n%s", seed, srv.keep(seed, "server"), srv.logTail(60))
		}
	}()
	srv.start()
	t.Logf("vgrid server up at %s (data %s)", srv.listen, srv.dataDir)
	cfg, err := srv.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Images are registered from the data directory's images/ only.
	img := writeImage(t, filepath.Join(srv.dataDir, "images", imageName))
	if _, err := admin.RegisterImage(ctx, img); err != nil {
		t.Fatalf("register image: %v", err)
	}
	beta, err := admin.CreateProject(ctx, "beta")
	if err != nil {
		t.Fatalf("create project beta: %v", err)
	}
	tokens := map[string]string{"default": cfg.Token, "beta": beta.Token}
	clients := func() map[string]*client.Client {
		out := map[string]*client.Client{}
		for p, tok := range tokens {
			// One server, killed on purpose: the load records what a
			// client that does not wait for it learns.
			cl, err := client.New(client.Config{Server: cfg.Server, Token: tok, CACert: cfg.CACert, FailoverWait: -1})
			if err != nil {
				t.Fatal(err)
			}
			out[p] = cl
		}
		return out
	}
	startAgents(t, srv, cfg, img, filepath.Join(dir, "agents"))

	tr := newTracker()
	var prev *storeState
	kills, restarts, cycle := 0, 0, 0
	totals := map[string]int{}
	add := func(r *report) {
		for k, v := range r.n {
			totals[k] += v
		}
	}
	fail := func(what string, r *report) {
		for _, k := range r.known {
			t.Logf("kill %d: known finding, allowed by VGRID_FAULT_ALLOW: %s", kills, k)
		}
		if len(r.fails) == 0 {
			return
		}
		failed = true
		for _, f := range r.fails {
			t.Errorf("kill %d: %s", kills, f)
		}
		if keepGoing {
			return
		}
		t.Fatalf("kill %d: %d failed checks %s (seed %d)", kills, len(r.fails), what, seed)
	}
	// killAndCheck kills the server and checks the store it left.
	killAndCheck := func(mode string, cycle int, wait func()) {
		at := srv.kill()
		if at.IsZero() {
			failed = true
			t.Fatalf("kill %d (%s): the server was not running: %s\nlog:\n%s", kills+1, mode, srv.exited, srv.logTail(30))
		}
		waitFrom := time.Now()
		if wait != nil {
			wait() // the load's requests are over: their outcomes are final
		}
		waited := time.Since(waitFrom)
		ops := tr.opsOf(cycle)
		kills++
		if rep := srv.raceReports(); rep != "" {
			failed = true
			t.Fatalf("the server's race detector reported:\n%s", rep)
		}
		st, err := readStore(filepath.Join(srv.dataDir, "store.db"))
		if err != nil {
			failed = true
			t.Fatalf("kill %d: read the store: %v", kills, err)
		}
		r := checkStore(st, storeCheck{kill: kills, killedAt: at, prev: prev, ops: ops, halfLife: halfLife, tr: tr})
		add(r)
		nOps := map[outcome]int{}
		for _, o := range ops {
			nOps[o.out]++
		}
		t.Logf("kill %2d (%s, %d requests: %d acked, %d refused, %d unknown; load stopped in %s): store: %d leases, %d workspaces, clock %s; "+
			"(a) %d acked present, %d refused absent, unknown creates %d found %d absent, %d acked changes; (b) %d records unchanged, %d skipped; "+
			"(c) %d projects' usage = history; (d) %d segments within capacity on %d hosts; (e) %d reservations, %d started on time",
			kills, mode, len(ops), nOps[acked], nOps[refused], nOps[unknown], waited.Round(time.Millisecond), len(st.leases), len(st.ws), fmtT(st.clock),
			r.n["acked workspaces present"], r.n["refused workspaces absent"], r.n["unknown creates found"], r.n["unknown creates absent"], r.n["acked changes in effect"],
			r.n["records unchanged"], r.n["records skipped (requests)"]+r.n["records skipped (own events)"]+r.n["records skipped (may be displaced)"]+r.n["records skipped (waiting)"],
			r.n["projects' usage"], r.n["segments"], r.n["hosts"], r.n["reservations"], r.n["reservations started on time"])
		fail("on the store", r)
		prev = st
	}
	listLeases := func(cls map[string]*client.Client) (map[string]api.Lease, time.Time, time.Time, error) {
		out := map[string]api.Lease{}
		from := time.Now()
		for _, p := range projects {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			ls, err := cls[p].Leases(c)
			cancel()
			if err != nil {
				return nil, from, time.Now(), err
			}
			for _, l := range ls {
				out[l.ID] = l
			}
		}
		return out, from, time.Now(), nil
	}

	// On a machine too busy to do every kill within the budget, the run
	// stops there, but it fails with fewer than minKills.
	minKills := min(20, target)
	for kills < target {
		if time.Since(t0) > budget {
			if kills < minKills {
				failed = true
				t.Fatalf("only %d kills within the time budget of %s (want at least %d)", kills, budget, minKills)
			}
			t.Logf("time budget of %s reached after %d of %d kills", budget, kills, target)
			break
		}
		cycle++
		cls := clients()
		ld := &load{tr: tr, clients: cls, cycle: cycle}
		mode := "under load"
		if rng.Intn(3) == 0 {
			mode = "mid-request"
		}
		// The load: three clients at once, for a random while.
		stopLoad := ld.workers(ctx, seed)
		var wg sync.WaitGroup
		time.Sleep(time.Duration(300+rng.Intn(2200)) * time.Millisecond)
		pre, preFrom, preTo, preErr := listLeases(cls)
		if mode == "mid-request" {
			// A create of our own, and the kill a few milliseconds after
			// it is sent: during its TLS handshake, its admission, its
			// fsync, or its answer.
			kind := []string{"immediate", "best-effort", "reservation", "deadline"}[rng.Intn(4)]
			project := projects[rng.Intn(2)]
			crng := rand.New(rand.NewSource(seed + int64(cycle)))
			wg.Add(1)
			go func() { defer wg.Done(); ld.create(crng, project, kind) }()
			time.Sleep(time.Duration(rng.Intn(8000)) * time.Microsecond)
		}
		killAndCheck(mode, cycle, func() { stopLoad(); wg.Wait() })
		if kills < target && rng.Intn(5) == 0 {
			// Kill it again while it starts: opening the store, restoring
			// the calendar, its first reconcile, the agents reconnecting.
			cycle++
			if _, err := srv.spawn(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(20+rng.Intn(600)) * time.Millisecond)
			killAndCheck("during start", cycle, nil)
		}
		down := time.Duration(rng.Intn(1200)) * time.Millisecond
		time.Sleep(down)
		restartFrom := time.Now()
		srv.start()
		restarts++
		restartTook := time.Since(restartFrom)
		cls = clients()
		post, postFrom, postTo, err := listLeases(cls)
		if err != nil {
			failed = true
			t.Fatalf("kill %d: GET /leases after the restart: %v", kills, err)
		}
		wsPost := map[string]model.Workspace{}
		for _, p := range projects {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			l, err := cls[p].ListWorkspaces(c)
			cancel()
			if err != nil {
				failed = true
				t.Fatalf("kill %d: GET /workspaces after the restart: %v", kills, err)
			}
			for _, w := range l {
				wsPost[p+"/"+w.Spec.Name] = w
			}
		}
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		usageFrom := time.Now()
		usage, err := cls["default"].Usage(uctx, "", true, time.Time{})
		cancel()
		usageTo := time.Now()
		if err != nil {
			failed = true
			t.Fatalf("kill %d: GET /usage after the restart: %v", kills, err)
		}
		usagePost := map[string]api.ProjectUsage{}
		for _, u := range usage.Projects {
			usagePost[u.Project] = u
		}
		ac := apiCheck{st: prev, post: post, postFrom: postFrom, postTo: postTo, usageFrom: usageFrom, usageTo: usageTo, halfLife: halfLife, wsPost: wsPost, usagePost: usagePost, tr: tr}
		if preErr == nil {
			ac.pre, ac.preFrom, ac.preTo = pre, preFrom, preTo
		}
		r := checkAPI(ac)
		add(r)
		t.Logf("restart %2d (after %s down, up in %s): API lists %d workspaces, %d leases: (a) %d failed checks of the workspaces; (b) %d views = store, %d skipped (events due in the downtime); %d views = before the kill, %d changed between that GET and the kill; (c) %d projects' usage = store",
			restarts, down, restartTook.Round(time.Millisecond), len(wsPost), len(post), countPrefix(r.fails, "(a)"), r.n["views compared with the store"], r.n["views skipped (due in the downtime)"],
			r.n["views compared before/after"], r.n["views changed before the kill"], r.n["usage = store"])
		fail("after the restart", r)
	}
	if err := srv.stop(15 * time.Second); err != nil {
		t.Errorf("vgrid server on SIGTERM: %v", err)
	}
	if !failed {
		cleanRestart(t, srv)
	}
	t.Logf("summary: seed %d; %d kills, %d restarts in %s; %s", seed, kills, restarts, time.Since(t0).Round(time.Millisecond), tr.summary())
	t.Logf("summary: objects checked (summed over the kills): %d acknowledged workspaces present, %d refused absent, %d deleted gone, %d unknown creates decided (%d found, %d absent), %d unknown deletes decided, %d acknowledged changes in effect, %d lease durations, %d workspace/lease pairs agree",
		totals["acked workspaces present"], totals["refused workspaces absent"], totals["deleted workspaces gone"], totals["unknown creates found"]+totals["unknown creates absent"],
		totals["unknown creates found"], totals["unknown creates absent"], totals["unknown deletes decided"], totals["acked changes in effect"], totals["lease durations"], totals["workspace/lease pairs"])
	t.Logf("summary: leases compared: %d records unchanged across a restart, %d views after a restart = the dead server's records, %d = the views just before the kill; %d usage = lease history, %d usage API = store; %d segments within capacity; %d reservations checked (%d started on time); %d done leases ran their time",
		totals["records unchanged"], totals["views compared with the store"], totals["views compared before/after"], totals["projects' usage"], totals["usage = store"],
		totals["segments"], totals["reservations"], totals["reservations started on time"], totals["done leases ran their time"])
}

// writeImage writes a small image's files; the control plane serves them
// to the agents from there.
func writeImage(t *testing.T, dir string) model.Image {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := func(n string) *model.ImageFile {
		p := filepath.Join(dir, n)
		data := []byte(strings.Repeat("fault suite "+n+"\n", 512))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}
	}
	return model.Image{Name: imageName, Boot: "direct", Disk: *file("rootfs.img"), DiskFormat: "raw",
		Kernel: file("vmlinux"), Initrd: file("initrd.img"), MinDisk: 64 * model.MiB}
}

// startAgents runs one agent per host in this process, with the fake
// driver, joining the server with its join token over HTTPS as a remote
// agent does. Their image caches are filled beforehand: an agent that
// cannot fetch an image (the server being down) fails the workspace.
func startAgents(t *testing.T, srv *vgridServer, cfg client.Config, img model.Image, dir string) {
	t.Helper()
	join, err := os.ReadFile(filepath.Join(srv.dataDir, "join.token"))
	if err != nil {
		t.Fatalf("join token: %v", err)
	}
	lf, err := os.Create(filepath.Join(dir + ".log"))
	if err != nil {
		t.Fatal(err)
	}
	// (Info: what each agent did to its guests, for a failure's story.)
	log := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo}))
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
			Server:  client.Config{Server: cfg.Server, Token: strings.TrimSpace(string(join)), CACert: cfg.CACert},
			DataDir: data, Node: node, Driver: drv, Logger: log.With("host", n.Name),
			Heartbeat: time.Second, Resync: 300 * time.Millisecond, StopTimeout: time.Second,
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
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("agents did not stop within 20s")
		}
		lf.Close()
	})
	// All hosts registered and ready.
	admin, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
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
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents did not register: %d of %d hosts ready (%v)", ready, len(hosts), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countPrefix(ss []string, prefix string) int {
	n := 0
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// cleanRestart stops nothing by surprise: after a clean stop, a start and
// a clean stop again, the calendar's stored state (every lease record, every
// project's usage) is byte for byte what it was, except for leases that had
// something due in between (and then only those and the queue).
func cleanRestart(t *testing.T, srv *vgridServer) {
	t.Helper()
	path := filepath.Join(srv.dataDir, "store.db")
	a, err := readStore(path)
	if err != nil {
		t.Fatal(err)
	}
	srv.start()
	time.Sleep(500 * time.Millisecond) // the calendar is restored and advanced
	if err := srv.stop(15 * time.Second); err != nil {
		t.Errorf("vgrid server on SIGTERM: %v", err)
	}
	b, err := readStore(path)
	if err != nil {
		t.Fatal(err)
	}
	from, to := a.clock, b.clock.Add(time.Second)
	due := func(r model.LeaseRecord) bool {
		h := r.Hold
		if h == nil {
			return false
		}
		for _, at := range []time.Time{h.From, h.Start.Add(-h.Boot.D()), h.Start.Add(-h.Pre.D()), h.Start, h.RunEnd, h.To} {
			if at.After(from) && !at.After(to) {
				return true
			}
		}
		return false
	}
	busy := map[string]bool{} // projects with something due
	anyDue := false
	for _, r := range a.leases {
		if due(r) {
			busy[r.Project], anyDue = true, true
		}
	}
	// What falls due may let a waiting lease start, which counts in its
	// project's usage too.
	for _, r := range a.leases {
		if anyDue && (r.Queued || r.State == model.LeaseScheduled) {
			busy[r.Project] = true
		}
	}
	same, skipped := 0, 0
	for id, raw := range a.leaseRaw {
		r := a.leases[id]
		if due(r) || anyDue && r.Queued {
			skipped++
			continue
		}
		if got, ok := b.leaseRaw[id]; !ok || !bytes.Equal(got, raw) {
			t.Errorf("clean restart: lease %s changed\nbefore %s\nafter  %s", id, raw, got)
			continue
		}
		same++
	}
	if n := len(b.leaseRaw) - len(a.leaseRaw); n != 0 {
		t.Errorf("clean restart: %d leases appeared", n)
	}
	usame := 0
	for p, raw := range a.usageRaw {
		if busy[p] {
			continue
		}
		if !bytes.Equal(b.usageRaw[p], raw) {
			t.Errorf("clean restart: usage of %s changed\nbefore %s\nafter  %s", p, raw, b.usageRaw[p])
			continue
		}
		usame++
	}
	t.Logf("clean restart: %d lease records and %d projects' usage identical field by field, %d leases skipped (due in [%s, %s])",
		same, usame, skipped, from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	if same == 0 {
		t.Errorf("clean restart: no lease record compared")
	}
}
