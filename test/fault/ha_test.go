package fault

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/store/etcd"
	"vgrid/internal/store/etcd/etcdtest"
)

// TestHAFailover runs the control plane as three `vgrid server` replicas
// on a three-member etcd cluster (all on loopback; each replica reaches
// each etcd member through a proxy of its own, which can cut it off),
// with the agents of the fault suite on the fake driver, under the mixed
// lease load of TestKillRestart. It kills the leading replica with
// SIGKILL at random moments (VGRID_HA_KILLS, default 10), and once each:
// kills an etcd member and restarts it, cuts the leading replica off
// from etcd, and pauses the leading replica (SIGSTOP) past its election
// lease and resumes it. After each it stops the load and checks, on the
// store read from etcd at one revision, what TestKillRestart checks on a
// dead server's store: every acknowledged object is there, nothing
// refused is, no host is booked beyond its capacity at any instant,
// reservations start on time, usage matches the leases' history. It
// measures, for each leader kill, the time from the kill to the new
// leader's first placement decision (the answer to a create sent right
// after the kill, through the client's failover) and fails if the
// median exceeds 3 s.
func TestHAFailover(t *testing.T) {
	seed := envInt(t, "VGRID_FAULT_SEED", time.Now().UnixNano()%1_000_000_007)
	target := int(envInt(t, "VGRID_HA_KILLS", 10))
	if raceEnabled && os.Getenv("VGRID_HA_KILLS") == "" {
		// The run without the race detector does the ten kills; this one
		// looks for races in the replicas and the failover paths.
		target = 4
	}
	t.Logf("seed %d (replay with VGRID_FAULT_SEED=%d), %d leader kills", seed, seed, target)
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	bin := buildVgrid(t)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	ec := etcdtest.New(t, 3)
	eps := ec.Endpoints()

	// Three replicas, each with its own proxies to the etcd members.
	const nRep = 3
	reps := make([]*vgridServer, nRep)
	links := make([][]*tcpProxy, nRep)
	for i := range reps {
		var via []string
		for _, ep := range eps {
			p := newTCPProxy(t, strings.TrimPrefix(ep, "http://"))
			links[i] = append(links[i], p)
			via = append(via, "http://"+p.addr())
		}
		rdir := filepath.Join(dir, fmt.Sprintf("r%d", i+1))
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := newVgridServer(t, bin, rdir, policy)
		s.extra = []string{"--store", "etcd", "--etcd-endpoints", strings.Join(via, ","), "--election-ttl", "1s",
			"--replica-name", fmt.Sprintf("r%d", i+1), "--blob-dir", filepath.Join(dir, "blobs"), "--write-config=false"}
		reps[i] = s
	}
	failed := false
	defer func() {
		if failed || t.Failed() {
			for i, s := range reps {
				t.Logf("replica r%d log (last lines, whole log in %s):\n%s", i+1, s.keep(seed, fmt.Sprintf("r%d", i+1)), s.logTail(40))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "agents.log")); err == nil {
				kept := filepath.Join(os.TempDir(), fmt.Sprintf("vgrid-fault-%d-agents.log", seed))
				if os.WriteFile(kept, b, 0o644) == nil {
					t.Logf("the agents' log: %s", kept)
				}
			}
		}
	}()
	// The first replica makes the shared CA; the others take it.
	for _, s := range reps {
		s.start()
	}
	var urls []string
	for _, s := range reps {
		urls = append(urls, "https://"+s.listen)
	}
	cfg, err := reps[0].clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server = strings.Join(urls, ",")
	ctx := context.Background()
	// The test's own view of the store, straight from etcd.
	view, err := etcd.Open(ctx, etcd.Config{Endpoints: eps, Prefix: "/vgrid/"})
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	leaderOf := func() int {
		kvs, err := view.List(ctx, "cluster/election/")
		if err != nil || len(kvs) == 0 {
			return -1
		}
		sort.Slice(kvs, func(a, b int) bool { return kvs[a].Revision < kvs[b].Revision })
		for i, u := range urls {
			if string(kvs[0].Value) == u {
				return i
			}
		}
		return -1
	}
	waitLeader := func(not int) int {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if l := leaderOf(); l >= 0 && l != not {
				return l
			}
			time.Sleep(20 * time.Millisecond)
		}
		failed = true
		t.Fatalf("no replica other than %d leads within 20s", not)
		return -1
	}
	lead := waitLeader(-1)
	t.Logf("replicas %s; r%d leads", strings.Join(urls, " "), lead+1)

	// The image is registered through the leader, from its data directory
	// (the agents' caches hold it already: they never fetch it).
	img := writeImage(t, filepath.Join(reps[lead].dataDir, "images", imageName))
	lc := cfg
	lc.Server = urls[lead]
	lcl, err := client.New(lc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lcl.RegisterImage(ctx, img); err != nil {
		t.Fatalf("register image: %v", err)
	}
	admin, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	beta, err := admin.CreateProject(ctx, "beta")
	if err != nil {
		t.Fatalf("create project beta: %v", err)
	}
	tokens := map[string]string{"default": cfg.Token, "beta": beta.Token}
	clients := map[string]*client.Client{}
	for p, tok := range tokens {
		cl, err := client.New(client.Config{Server: cfg.Server, Token: tok, CACert: cfg.CACert})
		if err != nil {
			t.Fatal(err)
		}
		clients[p] = cl
	}
	startAgents(t, reps[0], cfg, img, filepath.Join(dir, "agents"))

	tr := newTracker()
	cycle, events := 0, 0
	var takeovers []time.Duration
	// check stops the load, reads the store from etcd at one revision and
	// checks it.
	check := func(what string) {
		kvs, err := view.List(ctx, "")
		if err != nil {
			failed = true
			t.Fatalf("%s: read the store from etcd: %v", what, err)
		}
		at := time.Now()
		st, err := readKVs(kvs)
		if err != nil {
			failed = true
			t.Fatalf("%s: %v", what, err)
		}
		events++
		r := checkStore(st, storeCheck{kill: events, killedAt: at, ops: tr.opsOf(cycle), halfLife: halfLife, tr: tr})
		t.Logf("%-40s store: %d leases, %d workspaces; (a) %d acked present, %d refused absent, unknown creates %d found %d absent; "+
			"(d) %d segments within capacity on %d hosts; (e) %d reservations, %d started on time",
			what, len(st.leases), len(st.ws), r.n["acked workspaces present"], r.n["refused workspaces absent"],
			r.n["unknown creates found"], r.n["unknown creates absent"], r.n["segments"], r.n["hosts"],
			r.n["reservations"], r.n["reservations started on time"])
		for _, f := range r.fails {
			failed = true
			t.Errorf("%s: %s", what, f)
		}
		if len(r.fails) > 0 {
			t.Fatalf("%s: %d failed checks (seed %d)", what, len(r.fails), seed)
		}
	}
	// loadWhile runs the load, calls fault a random while into it, lets
	// the load run on for settle, and stops it.
	loadWhile := func(fault func(), settle time.Duration) {
		cycle++
		ld := &load{tr: tr, clients: clients, cycle: cycle}
		stop := ld.workers(ctx, seed)
		time.Sleep(time.Duration(300+rng.Intn(1700)) * time.Millisecond)
		fault()
		time.Sleep(settle)
		stop()
	}
	// probe measures the time from `from` to the answer of a create sent
	// now: the new leader's first placement decision (a refusal for want
	// of room is one too).
	// A create that got no answer (sent on a connection the dead replica
	// had open: it may have been done) is followed by another, as a user
	// would.
	probe := func(from time.Time) time.Duration {
		ld := &load{tr: tr, clients: clients, cycle: cycle}
		prng := rand.New(rand.NewSource(seed + int64(cycle)))
		for time.Since(from) < 30*time.Second {
			o := ld.create(prng, "default", "immediate")
			if o.out != unknown {
				return o.done.Sub(from)
			}
			t.Logf("probe create without an answer (%s); another", o.err)
		}
		failed = true
		t.Fatalf("no create was answered within 30s of the fault")
		return 0
	}

	for k := 1; k <= target; k++ {
		lead = waitLeader(-1)
		var took time.Duration
		loadWhile(func() {
			at := reps[lead].kill()
			took = probe(at)
		}, 300*time.Millisecond)
		next := waitLeader(lead)
		takeovers = append(takeovers, took)
		check(fmt.Sprintf("leader kill %d (r%d, then r%d leads; %s)", k, lead+1, next+1, took.Round(time.Millisecond)))
		reps[lead].start()
	}

	// An etcd member killed and restarted under load.
	m := rng.Intn(len(eps))
	loadWhile(func() {
		if err := ec.Kill(m); err != nil {
			t.Errorf("kill etcd member %d: %v", m+1, err)
		}
	}, time.Second)
	check(fmt.Sprintf("etcd member %d killed", m+1))
	loadWhile(func() {
		if err := ec.Restart(m); err != nil {
			t.Fatalf("restart etcd member %d: %v", m+1, err)
		}
	}, time.Second)
	check(fmt.Sprintf("etcd member %d restarted", m+1))

	// The leading replica cut off from etcd: another takes over, and the
	// cut one steps down (its writes fenced meanwhile).
	lead = waitLeader(-1)
	var cutTook time.Duration
	loadWhile(func() {
		at := time.Now()
		for _, p := range links[lead] {
			p.setCut(true)
		}
		cutTook = probe(at)
	}, 500*time.Millisecond)
	next := waitLeader(lead)
	check(fmt.Sprintf("r%d cut off from etcd (r%d leads; %s)", lead+1, next+1, cutTook.Round(time.Millisecond)))
	for _, p := range links[lead] {
		p.setCut(false)
	}
	if !strings.Contains(reps[lead].logTail(400), "lost the leadership") {
		failed = true
		t.Errorf("r%d, cut off from etcd, did not say it lost the leadership", lead+1)
	}

	// The leading replica paused past its election's lease and resumed.
	lead = waitLeader(-1)
	loadWhile(func() {
		pid := reps[lead].cur.cmd.Process.Pid
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		waitLeader(lead)
		time.Sleep(500 * time.Millisecond)
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}, 2*time.Second)
	check(fmt.Sprintf("r%d paused past its lease and resumed", lead+1))
	if l := leaderOf(); l == lead {
		failed = true
		t.Errorf("r%d leads again right after its pause (the election should have moved)", lead+1)
	}
	if !strings.Contains(reps[lead].logTail(400), "lost the leadership") {
		failed = true
		t.Errorf("r%d, paused past its lease, did not say it lost the leadership", lead+1)
	}

	sorted := append([]time.Duration{}, takeovers...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	med, worst := sorted[len(sorted)/2], sorted[len(sorted)-1]
	t.Logf("takeover (SIGKILL of the leader to the new leader's first placement decision), %d kills: median %s, max %s, all %v; cut off: %s; target < 3s",
		len(takeovers), med.Round(time.Millisecond), worst.Round(time.Millisecond), takeovers, cutTook.Round(time.Millisecond))
	t.Logf("requests: %s", tr.summary())
	// The target holds for the replicas as built; under the race
	// detector (several times slower) only a bound that says the
	// failover works at all.
	bound := 3 * time.Second
	if raceEnabled {
		bound = 10 * time.Second
	}
	if med > bound {
		failed = true
		t.Errorf("median takeover %s is over %s", med, bound)
	}
}
