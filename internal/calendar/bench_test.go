package calendar

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"vgrid/internal/sim/trace"

	"vgrid/internal/model"
)

// benchGrid builds nHosts hosts (32 cores, 128Gi, 100 per rack), each
// holding 10 reservations (24 cores for 1h every 3h, staggered by rack),
// admitted through Submit, and queues nQueued best-effort leases (1-4
// cores, 30m-3h). It returns the calendar and the time the queue is due.
func benchGrid(tb testing.TB, nHosts, nQueued int, pl Placement) (*Calendar, time.Time, int) {
	t0 := epoch
	hosts := make([]Host, nHosts)
	for i := range hosts {
		hosts[i] = Host{
			Name:     fmt.Sprintf("h%05d", i),
			Capacity: model.Resources{MilliCPU: 32000, Memory: 128 * model.GiB},
			Labels:   map[string]string{"rack": fmt.Sprintf("r%03d", i/100)},
		}
	}
	pol := DefaultPolicy()
	pol.Placement = pl
	c, err := New(hosts, pol)
	if err != nil {
		tb.Fatal(err)
	}
	racks := (nHosts + 99) / 100
	ars := 0
	for r := 0; r < racks; r++ {
		perRack := min(100, nHosts-r*100)
		for j := 0; j < 10; j++ {
			start := t0.Add(time.Duration(j)*3*time.Hour + time.Hour + time.Duration(r%12)*5*time.Minute)
			for k := 0; k < perRack; k++ {
				ars++
				_, err := c.Submit(Lease{ID: fmt.Sprintf("ar%d", ars), Project: "res", Kind: Reservation,
					Members: []Request{{Resources: model.Resources{MilliCPU: 24000, Memory: 64 * model.GiB},
						Labels: map[string]string{"rack": fmt.Sprintf("r%03d", r)}}},
					Start: start, Duration: time.Hour}, t0)
				if err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	for i := 0; i < nQueued; i++ {
		_, err := c.Submit(Lease{ID: fmt.Sprintf("be%d", i), Project: fmt.Sprintf("p%d", i%7), Kind: BestEffort,
			Members:  []Request{{Resources: model.Resources{MilliCPU: int64(1000 * (1 + i%4)), Memory: model.ByteSize(2+i%7) * model.GiB}}},
			Duration: time.Duration(30+(i*37)%150) * time.Minute}, t0)
		if err != nil {
			tb.Fatal(err)
		}
	}
	return c, t0, ars
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchPlace measures placement decisions on a grid of n hosts holding 10
// reservations each, with 10,000 best-effort leases queued.
//
// The timed work is the Advance that places the queue: each queued lease
// is one decision (started now, or given a backfill plan). placements/s
// counts decisions per second of that Advance.
func benchPlace(b *testing.B, n int) {
	for _, pl := range []Placement{FirstFit, Pack, Spread} {
		b.Run(string(pl), func(b *testing.B) {
			const queued = 10000
			var started, decided int
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c, t0, _ := benchGrid(b, n, queued, pl)
				b.StartTimer()
				as := c.Advance(t0)
				b.StopTimer()
				started += len(as)
				decided += queued
				b.StartTimer()
			}
			b.ReportMetric(float64(decided)/b.Elapsed().Seconds(), "placements/s")
			b.ReportMetric(float64(started)/float64(b.N), "started/op")
		})
	}
	b.Run("steady-immediate", func(b *testing.B) {
		// One decision per iteration once the queue is placed: submit an
		// immediate lease and cancel it.
		c, t0, _ := benchGrid(b, n, 10000, FirstFit)
		c.Advance(t0)
		refused := 0
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			id := "im" + strconv.Itoa(i)
			if _, err := c.Submit(Lease{ID: id, Project: "x", Kind: Immediate,
				Members:  []Request{{Resources: model.Resources{MilliCPU: 1000, Memory: 2 * model.GiB}}},
				Duration: 20 * time.Minute}, t0); err != nil {
				var r *Refusal
				if !errors.As(err, &r) {
					b.Fatal(err)
				}
				refused++
				continue
			}
			if _, err := c.Cancel(id, t0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "placements/s")
		b.ReportMetric(float64(refused)/float64(b.N), "refused/op")
	})
	b.Run("memory", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			h0 := heap()
			hosts := make([]Host, n)
			for k := range hosts {
				hosts[k] = Host{Name: fmt.Sprintf("h%05d", k), Capacity: model.Resources{MilliCPU: 32000, Memory: 128 * model.GiB},
					Labels: map[string]string{"rack": fmt.Sprintf("r%03d", k/100)}}
			}
			c, _ := New(hosts, DefaultPolicy())
			h1 := heap()
			runtime.KeepAlive(hosts)
			hosts = nil
			c2, t0, ars := benchGrid(b, n, 10000, FirstFit)
			c2.Advance(t0)
			h2 := heap()
			b.ReportMetric(float64(h1-h0)/float64(n), "bytes/host")
			b.ReportMetric(float64(h2-h1-(h1-h0))/float64(ars+10000), "bytes/lease")
			runtime.KeepAlive(c)
			runtime.KeepAlive(c2)
		}
	})
}

func BenchmarkPlace1000Hosts(b *testing.B)  { benchPlace(b, 1000) }
func BenchmarkPlace10000Hosts(b *testing.B) { benchPlace(b, 10000) }

// job is one trace record: arrival, requested nodes and time, real run time.
type job struct {
	submit, nodes int64
	req, run      int64 // seconds
	id            string
}

// replay runs jobs through the calendar as a simulator would: submit at
// arrival as best-effort leases of nodes members (1 core, 1Gi each), jump
// the virtual clock from event to event, and finish each lease when its
// real run time is up. It returns the number of leases that ended.
func replay(tb testing.TB, jobs []job, nodes int, pol Policy) int {
	hosts := make([]Host, nodes)
	for i := range hosts {
		hosts[i] = Host{Name: fmt.Sprintf("n%04d", i), Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB}}
	}
	c, err := New(hosts, pol)
	if err != nil {
		tb.Fatal(err)
	}
	type fin struct {
		at time.Time
		id string
	}
	// Pending finishes, kept sorted by time (a simple heap).
	var fins []fin
	pushFin := func(f fin) {
		fins = append(fins, f)
		for i := len(fins) - 1; i > 0; {
			p := (i - 1) / 2
			if !fins[i].at.Before(fins[p].at) {
				break
			}
			fins[i], fins[p] = fins[p], fins[i]
			i = p
		}
	}
	popFin := func() fin {
		f := fins[0]
		n := len(fins) - 1
		fins[0] = fins[n]
		fins = fins[:n]
		for i := 0; ; {
			l, m := 2*i+1, i
			if l < n && fins[l].at.Before(fins[m].at) {
				m = l
			}
			if r := l + 1; r < n && fins[r].at.Before(fins[m].at) {
				m = r
			}
			if m == i {
				break
			}
			fins[i], fins[m] = fins[m], fins[i]
			i = m
		}
		return f
	}
	runOf := map[string]int64{}
	ended := 0
	handle := func(as []Action) {
		for _, a := range as {
			switch a.Kind {
			case ActStart:
				if r := runOf[a.Lease]; r > 0 {
					pushFin(fin{a.At.Add(time.Duration(r) * time.Second), a.Lease})
				}
			case ActEnd:
				ended++
			}
		}
	}
	reqs := make([]Request, nodes)
	for i := range reqs {
		reqs[i] = Request{Resources: model.Resources{MilliCPU: 1000, Memory: model.GiB}}
	}
	next := 0
	for {
		// The next thing to happen: an arrival, a finish or a calendar event.
		var t time.Time
		have := false
		if next < len(jobs) {
			t, have = epoch.Add(time.Duration(jobs[next].submit)*time.Second), true
		}
		if len(fins) > 0 && (!have || fins[0].at.Before(t)) {
			t, have = fins[0].at, true
		}
		if e, ok := c.NextEvent(); ok && (!have || e.Before(t)) {
			t, have = e, true
		}
		if !have {
			break
		}
		handle(c.Advance(t))
		for len(fins) > 0 && !fins[0].at.After(t) {
			f := popFin()
			as, err := c.Finish(f.id, f.at)
			if err == nil {
				ended++
			}
			handle(as)
		}
		for next < len(jobs) && !epoch.Add(time.Duration(jobs[next].submit)*time.Second).After(t) {
			j := jobs[next]
			next++
			if j.run < j.req {
				runOf[j.id] = j.run
			}
			_, err := c.Submit(Lease{ID: j.id, Project: "p" + strconv.Itoa(int(j.nodes%5)), Kind: BestEffort,
				Members: reqs[:j.nodes], Duration: time.Duration(j.req) * time.Second}, t)
			if err != nil {
				tb.Fatalf("submit %s: %v", j.id, err)
			}
		}
	}
	return ended
}

// syntheticTrace is a KTH-like workload: n jobs on 100 nodes, power-of-two
// sizes, requested times up to 36h, real times shorter, about 70% load.
func syntheticTrace(n int) []job {
	rng := rand.New(rand.NewSource(7))
	jobs := make([]job, n)
	var t int64
	for i := range jobs {
		t += int64(rng.ExpFloat64() * 1800)
		nodes := int64(1) << rng.Intn(7)
		if nodes > 100 {
			nodes = 100
		}
		req := int64(60 + rng.Intn(4*3600))
		if rng.Intn(10) == 0 {
			req = int64(60 + rng.Intn(36*3600))
		}
		run := max(1, req*int64(10+rng.Intn(90))/100)
		jobs[i] = job{submit: t, nodes: nodes, req: req, run: run, id: "j" + strconv.Itoa(i)}
	}
	return jobs
}

// readSWF reads a Standard Workload Format trace: submit (field 2), run
// time (4), requested processors (8, else allocated 5), requested time (9,
// else run time).
func readSWF(r io.Reader, maxNodes int64) ([]job, error) {
	var jobs []job
	sc := bufio.NewScanner(r)
	var t0 int64 = -1
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 18 || strings.HasPrefix(f[0], ";") {
			continue
		}
		num := func(i int) int64 { v, _ := strconv.ParseFloat(f[i], 64); return int64(v) }
		submit, run, alloc, procs, req := num(1), num(3), num(4), num(7), num(8)
		if procs <= 0 {
			procs = alloc
		}
		if req <= 0 {
			req = run
		}
		if procs <= 0 || req <= 0 || run < 0 {
			continue
		}
		if t0 < 0 {
			t0 = submit
		}
		jobs = append(jobs, job{submit: submit - t0, nodes: min(procs, maxNodes), req: req, run: max(run, 1), id: "j" + f[0]})
	}
	return jobs, sc.Err()
}

func benchTrace(b *testing.B, jobs []job, nodes int) {
	for _, bf := range []Backfill{BackfillNone, BackfillAggressive, BackfillConservative} {
		b.Run(string(bf), func(b *testing.B) {
			pol := DefaultPolicy()
			pol.Backfill = bf
			ended := 0
			for i := 0; i < b.N; i++ {
				ended = replay(b, jobs, nodes, pol)
			}
			if ended < len(jobs)*9/10 {
				b.Fatalf("only %d of %d jobs ended", ended, len(jobs))
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/trace")
			b.ReportMetric(float64(len(jobs)), "jobs")
		})
	}
}

// BenchmarkTraceSynthetic replays a synthetic 28,000-job KTH-like trace on
// 100 nodes end to end.
func BenchmarkTraceSynthetic(b *testing.B) { benchTrace(b, syntheticTrace(28000), 100) }

// BenchmarkTraceKTH replays the KTH SP2 trace (28,489 jobs, 100 nodes)
// when the shared traces are there (not part of the repo; found as every
// benchmark finds them, trace.Dir).
func BenchmarkTraceKTH(b *testing.B) {
	dir, err := trace.Dir()
	if err != nil {
		b.Skip(err)
	}
	f, err := os.Open(filepath.Join(dir, "KTH-SP2-1996-2.swf"))
	if err != nil {
		b.Skip("KTH trace not found: ", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(f.Name(), ".gz") {
		if r, err = gzip.NewReader(f); err != nil {
			b.Fatal(err)
		}
	}
	jobs, err := readSWF(r, 100)
	if err != nil {
		b.Fatal(err)
	}
	benchTrace(b, jobs, 100)
}
