package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// outcome is what the client learnt of a request.
type outcome int

const (
	pending outcome = iota
	acked           // a 2xx answer, fully read
	refused         // an error status: nothing may have happened
	unknown         // no (complete) answer: the server may have died during it
)

func (o outcome) String() string {
	return [...]string{"pending", "acked", "refused", "unknown"}[o]
}

// opRec is one request of the load.
type opRec struct {
	id        int
	cycle     int
	kind      string        // create, stop, start, cancel, delete, extend
	by        time.Duration // for extend
	leaseKind string        // for create: immediate, best-effort, reservation, deadline
	ws        string        // project/name
	sent      time.Time
	done      time.Time
	out       outcome
	status    int    // HTTP status (0: none)
	lease     string // the workspace's lease in a 2xx answer to create or start
	err       string
}

func (o *opRec) String() string {
	s := fmt.Sprintf("op %d (%s", o.id, o.kind)
	if o.leaseKind != "" {
		s += " " + o.leaseKind
	}
	if o.by != 0 {
		s += fmt.Sprintf(" by %s", o.by)
	}
	s += fmt.Sprintf(" %s, cycle %d, sent %s): %s", o.ws, o.cycle, fmtT(o.sent), o.out)
	if o.status != 0 {
		s += fmt.Sprintf(" %d", o.status)
	}
	if o.err != "" && o.out != acked {
		s += ": " + o.err
	}
	return s
}

// existence is what is known of whether a created workspace exists.
type existence int

const (
	existUnknown existence = iota // its create had no answer: the next store read decides
	existYes                      // acknowledged (or found after an unknown create): must stay
	existNo                       // refused (or not found after an unknown create): must never appear
	existGone                     // an acknowledged delete: absent, or present only as being deleted
	existMaybe                    // a delete without an answer: the next store read decides
)

// wsTrack is what the load knows of one workspace it tried to create.
type wsTrack struct {
	key         string // project/name
	project     string
	name        string
	leaseKind   string
	preemptible bool
	start       time.Time // a reservation's requested start
	deadline    time.Time
	dur         time.Duration            // the spec's duration: every lease of it starts with it
	extended    map[string]time.Duration // acknowledged extensions, by lease ID
	extUnknown  bool                     // an extension had no answer: durations are unknown
	create      *opRec
	exists      existence
	busy        bool   // a request on it is under way (one at a time)
	last        *opRec // the last request on it, create included
}

// tracker records every request of the load and what it implies.
type tracker struct {
	mu      sync.Mutex
	ws      map[string]*wsTrack
	order   []string // ws keys in creation order
	ops     []*opRec
	queued  map[string]int // best-effort leases waiting, per project, as last listed
	nextSeq int
}

func newTracker() *tracker {
	return &tracker{ws: map[string]*wsTrack{}, queued: map[string]int{}}
}

func (tr *tracker) begin(o *opRec) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.nextSeq++
	o.id = tr.nextSeq
	o.sent = time.Now()
	tr.ops = append(tr.ops, o)
}

// finish classifies a request's result.
func (tr *tracker) finish(o *opRec, err error, lease string) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	o.done = now
	var ce *client.Error
	switch {
	case err == nil:
		o.out, o.lease = acked, lease
	case errors.As(err, &ce) && ce.Status < 500:
		o.out, o.status, o.err = refused, ce.Status, ce.Error()
	default:
		o.out, o.err = unknown, err.Error()
	}
	w := tr.ws[o.ws]
	if w == nil {
		return
	}
	w.busy = false
	w.last = o
	if o.kind == "extend" {
		switch o.out {
		case acked:
			if w.extended == nil {
				w.extended = map[string]time.Duration{}
			}
			w.extended[o.lease] += o.by
		case unknown:
			w.extUnknown = true
		}
	}
	if o.kind == "delete" {
		switch o.out {
		case acked:
			w.exists = existGone
		case unknown:
			w.exists = existMaybe
		}
	}
	if o.kind == "create" {
		switch o.out {
		case acked:
			w.exists = existYes
		case refused:
			w.exists = existNo
		default:
			w.exists = existUnknown
		}
	}
}

// opsOf returns the requests of a cycle.
func (tr *tracker) opsOf(cycle int) []*opRec {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []*opRec
	for _, o := range tr.ops {
		if o.cycle == cycle {
			out = append(out, o)
		}
	}
	return out
}

// pick chooses a workspace of project known to exist that no request is
// busy with, and marks it busy.
func (tr *tracker) pick(rng *rand.Rand, project string) *wsTrack {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var cand []*wsTrack
	// Prefer recent ones: old ones have mostly ended.
	for i := len(tr.order) - 1; i >= 0 && len(cand) < 24; i-- {
		w := tr.ws[tr.order[i]]
		if w.project == project && w.exists == existYes && !w.busy {
			cand = append(cand, w)
		}
	}
	if len(cand) == 0 {
		return nil
	}
	w := cand[rng.Intn(len(cand))]
	w.busy = true
	return w
}

// shape is a workspace size.
type shape struct {
	vcpus  int
	cpu    float64
	memory string
}

var shapes = []shape{{1, 0.5, "256Mi"}, {1, 1, "512Mi"}, {2, 1.5, "768Mi"}, {1, 1, "1Gi"}}

// load drives the mixed workload against the API.
type load struct {
	tr      *tracker
	clients map[string]*client.Client // by project
	cycle   int
}

var projects = []string{"default", "beta"}

// workers runs the load with three clients at once (each its own seeded
// choices) until the returned stop is called; stop waits for their
// requests to end, so that their outcomes are final.
func (l *load) workers(ctx context.Context, seed int64) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wrng := rand.New(rand.NewSource(seed*7919 + int64(l.cycle)*31 + int64(w)))
		wg.Add(1)
		go func() { defer wg.Done(); l.run(lctx, wrng, 200) }()
	}
	return func() { cancel(); wg.Wait() }
}

func (l *load) run(ctx context.Context, rng *rand.Rand, maxOps int) {
	for i := 0; i < maxOps && ctx.Err() == nil; i++ {
		l.step(rng)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(40+rng.Intn(200)) * time.Millisecond):
		}
	}
}

// step issues one request.
func (l *load) step(rng *rand.Rand) {
	project := projects[0]
	if rng.Intn(10) < 3 {
		project = projects[1]
	}
	r := rng.Intn(100)
	switch {
	case r < 18:
		l.create(rng, project, "immediate")
	case r < 36:
		l.tr.mu.Lock()
		q := l.tr.queued[project]
		l.tr.mu.Unlock()
		if q < 10 {
			l.create(rng, project, "best-effort")
		} else {
			l.create(rng, project, "immediate")
		}
	case r < 52:
		l.create(rng, project, "reservation")
	case r < 62:
		l.create(rng, project, "deadline")
	case r < 72:
		l.mutate(rng, project, "cancel")
	case r < 82:
		l.mutate(rng, project, "stop")
	case r < 88:
		l.mutate(rng, project, "start")
	case r < 92:
		l.mutate(rng, project, "delete")
	case r < 97:
		l.mutate(rng, project, "extend")
	default:
		l.list(project)
	}
}

// specFor writes a workspace spec of the given lease kind.
func specFor(rng *rand.Rand, w *wsTrack) []byte {
	sh := shapes[rng.Intn(len(shapes))]
	now := time.Now()
	var dur time.Duration
	lease := ""
	switch w.leaseKind {
	case "immediate":
		dur = time.Duration(2+rng.Intn(5)) * time.Second
	case "best-effort":
		dur = time.Duration(2+rng.Intn(5)) * time.Second
		w.preemptible = rng.Intn(3) != 0
		lease = fmt.Sprintf("{kind: best-effort, preemptible: %v}", w.preemptible)
	case "reservation":
		dur = time.Duration(1+rng.Intn(4)) * time.Second
		w.start = now.Truncate(time.Second).Add(time.Duration(2+rng.Intn(5)) * time.Second).UTC()
		lease = fmt.Sprintf("{kind: reservation, start: %q}", w.start.Format(time.RFC3339))
	case "deadline":
		dur = time.Duration(1+rng.Intn(3)) * time.Second
		w.deadline = now.Truncate(time.Second).Add(time.Duration(5+rng.Intn(9)) * time.Second).UTC()
		lease = fmt.Sprintf("{kind: deadline, deadline: %q}", w.deadline.Format(time.RFC3339))
	}
	w.dur = dur
	s := fmt.Sprintf("name: %s\nimage: %s\nquantum: {vcpus: %d, cpu: %g, memory: %s, disk: 1Gi}\nduration: %s\n",
		w.name, imageName, sh.vcpus, sh.cpu, sh.memory, dur)
	if lease != "" {
		s += "lease: " + lease + "\n"
	}
	return []byte(s)
}

// create creates a workspace under a fresh name (names are never reused,
// so that "this refused create must not exist" is unambiguous).
func (l *load) create(rng *rand.Rand, project, kind string) *opRec {
	l.tr.mu.Lock()
	name := fmt.Sprintf("w%02d-%d", l.cycle, len(l.tr.order)+1)
	w := &wsTrack{key: project + "/" + name, project: project, name: name, leaseKind: kind, busy: true}
	spec := specFor(rng, w)
	o := &opRec{cycle: l.cycle, kind: "create", leaseKind: kind, ws: w.key}
	w.create = o
	l.tr.ws[w.key] = w
	l.tr.order = append(l.tr.order, w.key)
	l.tr.mu.Unlock()
	l.tr.begin(o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, err := l.clients[project].CreateWorkspace(ctx, spec)
	l.tr.finish(o, err, ws.Status.Lease)
	return o
}

// mutate stops, starts, deletes, extends or cancels the lease of an
// existing workspace.
func (l *load) mutate(rng *rand.Rand, project, kind string) {
	w := l.tr.pick(rng, project)
	if w == nil {
		return
	}
	o := &opRec{cycle: l.cycle, kind: kind, ws: w.key}
	if kind == "extend" {
		o.by = []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, -time.Second}[rng.Intn(4)]
	}
	l.tr.begin(o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := l.clients[project]
	var err error
	lease := ""
	switch kind {
	case "stop":
		var ws model.Workspace
		ws, err = cl.StopWorkspace(ctx, w.name)
		lease = ws.Status.Lease
	case "start":
		var ws model.Workspace
		ws, err = cl.StartWorkspace(ctx, w.name)
		lease = ws.Status.Lease
	case "cancel":
		_, err = cl.CancelLease(ctx, w.name)
	case "delete":
		err = cl.DeleteWorkspace(ctx, w.name)
	case "extend":
		var v api.Lease
		v, err = cl.ExtendLease(ctx, w.name, o.by, time.Time{})
		lease = v.ID
	}
	l.tr.finish(o, err, lease)
}

// list reads the project's leases (a read under load) and notes how many
// best-effort leases wait, to keep the queue short.
func (l *load) list(project string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ls, err := l.clients[project].Leases(ctx)
	if err != nil {
		return
	}
	n := 0
	for _, x := range ls {
		if x.State == string(model.LeaseQueued) || x.State == string(model.LeaseSuspended) {
			n++
		}
	}
	l.tr.mu.Lock()
	l.tr.queued[project] = n
	l.tr.mu.Unlock()
}

// summary counts the requests by kind and outcome.
func (tr *tracker) summary() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := map[string]int{}
	for _, o := range tr.ops {
		k := o.kind
		if o.leaseKind != "" {
			k += " " + o.leaseKind
		}
		n[k+" "+o.out.String()]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := fmt.Sprintf("%d requests:", len(tr.ops))
	for _, k := range keys {
		s += fmt.Sprintf(" %s %d,", k, n[k])
	}
	return s[:len(s)-1]
}
