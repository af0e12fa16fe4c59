package sim

import (
	"path/filepath"
	"sort"
	"testing"
	"time"
	"vgrid/internal/sim/trace/tracetest"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sim/metrics"
	"vgrid/internal/sim/trace"
)

// TestHaizeaSample replays Haizea's quickstart workload (traces/sample.lwf,
// uncommented copy in trace/testdata) on Haizea's 4-host example grid. The
// schedule Haizea's documentation gives: the best-effort lease starts at
// once on one host; the 4-node reservation at 00:30 preempts it by
// suspension; it resumes when the reservation ends at 01:00 and completes
// its hour at 01:30.
func TestHaizeaSample(t *testing.T) {
	leases, _, err := trace.Open(filepath.Join("trace", "testdata", "sample-uncommented.lwf"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hosts = 4
	res, err := Run(leases, cfg)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[model.LeaseKind]metrics.Record{}
	for _, r := range res.Records {
		byKind[r.Kind] = r
	}
	be, ar := byKind[model.LeaseBestEffort], byKind[model.LeaseReservation]
	want := []struct {
		name      string
		got, want time.Duration
	}{
		{"best-effort start", be.Start, 0},
		{"best-effort end", be.End, 90 * time.Minute},
		{"reservation start", ar.Start, 30 * time.Minute},
		{"reservation end", ar.End, 60 * time.Minute},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s: got %s, want %s", w.name, w.got, w.want)
		}
	}
	if be.Preemptions != 1 || len(be.Segments) != 2 {
		t.Errorf("best effort: %d preemptions, %d segments; want 1 suspension and 2 runs", be.Preemptions, len(be.Segments))
	}
	if !ar.Accepted || len(ar.Segments) != 4 {
		t.Errorf("reservation: accepted %v on %d hosts, want 4", ar.Accepted, len(ar.Segments))
	}
	if res.Events[calendar.ActSuspend] != 1 || res.Events[calendar.ActResume] != 1 {
		t.Errorf("events %v, want one suspend and one resume", res.Events)
	}
	// Without suspension the best-effort lease is requeued: it restarts
	// from scratch after the reservation and ends at 02:00.
	cfg.Policy.Suspend = false
	res, err = Run(leases, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Records {
		if r.Kind == model.LeaseBestEffort && r.End != 2*time.Hour {
			t.Errorf("without suspension the best-effort lease ends at %s, want 2h0m0s", r.End)
		}
	}
}

// checkCapacity asserts no host ever runs more CPU than it has.
func checkCapacity(t *testing.T, recs []metrics.Record, hostCPUs float64) {
	t.Helper()
	type ev struct {
		at   time.Duration
		cpus float64
	}
	byHost := map[string][]ev{}
	for _, r := range recs {
		for _, s := range r.Segments {
			if s.End > s.Start {
				byHost[s.Host] = append(byHost[s.Host], ev{s.Start, r.CPUs}, ev{s.End, -r.CPUs})
			}
		}
	}
	for h, evs := range byHost {
		sort.Slice(evs, func(i, j int) bool {
			if evs[i].at != evs[j].at {
				return evs[i].at < evs[j].at
			}
			return evs[i].cpus < evs[j].cpus // ends before starts at one instant
		})
		use := 0.0
		for _, e := range evs {
			use += e.cpus
			if use > hostCPUs+1e-9 {
				t.Fatalf("host %s runs %.2f CPUs at %s, has %.2f", h, use, e.at, hostCPUs)
			}
		}
	}
}

func TestSDSCWithInjectedReservations(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 30 days")
	}
	dir := filepath.Join(tracetest.Dir(t), "haizea-sdsc-blue")
	base, _, err := trace.Open(filepath.Join(dir, "30days.swf"))
	if err != nil {
		t.Fatal(err)
	}
	ars, _, err := trace.Open(filepath.Join(dir, "injected_leases", "30days", "work_20-dur_2h-size_2medium.lwf"))
	if err != nil {
		t.Fatal(err)
	}
	leases := trace.Merge(trace.Prefix(base, "t"), trace.Prefix(ars, "ar"))
	for _, suspend := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Policy.Suspend = suspend
		res, err := Run(leases, cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := res.Summary
		t.Logf("suspend=%v: %d leases, ARs %d accepted %d rejected, %d preemptions, utilization %.3f, total completion %.0f s",
			suspend, s.Leases, s.ARAccepted, s.ARRejected, s.Preemptions, s.Utilization, s.TotalCompletionS)
		if s.ARAccepted+s.ARRejected != len(ars) {
			t.Errorf("ARs: %d accepted + %d rejected, want %d", s.ARAccepted, s.ARRejected, len(ars))
		}
		if s.Completed < len(base) {
			t.Errorf("only %d of %d best-effort leases ran", s.Completed, len(base))
		}
		checkCapacity(t, res.Records, cfg.HostCPUs)
		// Reservations start exactly when they asked to.
		for _, r := range res.Records {
			if r.Kind == model.LeaseReservation && r.Accepted {
				for _, l := range ars {
					if "ar"+l.ID == r.ID || l.ID == r.ID {
						if r.Start != l.Start {
							t.Fatalf("reservation %s started at %s, asked for %s", r.ID, r.Start, l.Start)
						}
					}
				}
			}
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {Hosts: 1, HostCPUs: 1}, {Hosts: -1, HostCPUs: 1, HostMemory: model.GiB}} {
		if _, err := Run(nil, cfg); err == nil {
			t.Errorf("Run with %+v: no error", cfg)
		}
	}
}

// BenchmarkKTH simulates the whole KTH SP2 trace (28,489 jobs on its 100
// nodes) end to end, reading included.
func BenchmarkKTH(b *testing.B) {
	benchKTH(b, func(cfg *Config) { cfg.Hosts = 100 })
}

// BenchmarkKTHConservative is BenchmarkKTH with conservative backfilling
// on the default 144 hosts (vgrid sim --backfill conservative): every
// waiting lease gets a reservation.
func BenchmarkKTHConservative(b *testing.B) {
	benchKTH(b, func(cfg *Config) { cfg.Policy.Backfill = calendar.BackfillConservative })
}

// BenchmarkAtlas simulates the LLNL Atlas trace (43,778 jobs, 32,913 of
// them leases of 1-CPU, 1 GiB VMs, 9.8 M VMs in all) on its full machine
// of 1,152 hosts of 8 CPUs, given 8 GiB each (vgrid sim --hosts 1152
// --host-cpus 8 --host-memory 8Gi), reading included.
func BenchmarkAtlas(b *testing.B) {
	benchTrace(b, "LLNL-Atlas-2006-2.1-cln.swf", func(cfg *Config) {
		cfg.Hosts, cfg.HostCPUs, cfg.HostMemory = 1152, 8, 8*model.GiB
	})
}

// BenchmarkAtlasConservative is BenchmarkAtlas with conservative
// backfilling.
func BenchmarkAtlasConservative(b *testing.B) {
	benchTrace(b, "LLNL-Atlas-2006-2.1-cln.swf", func(cfg *Config) {
		cfg.Hosts, cfg.HostCPUs, cfg.HostMemory = 1152, 8, 8*model.GiB
		cfg.Policy.Backfill = calendar.BackfillConservative
	})
}

// BenchmarkAtlasQuarter is BenchmarkAtlas on a quarter of the machine
// (288 hosts): the queue grows long.
func BenchmarkAtlasQuarter(b *testing.B) {
	benchTrace(b, "LLNL-Atlas-2006-2.1-cln.swf", func(cfg *Config) {
		cfg.Hosts, cfg.HostCPUs, cfg.HostMemory = 288, 8, 8*model.GiB
	})
}

// benchKTH reads and simulates the KTH trace under the default
// configuration as set changes it.
func benchKTH(b *testing.B, set func(*Config)) {
	benchTrace(b, "KTH-SP2-1996-2.swf", set)
}

// benchTrace reads and simulates the trace file under the default
// configuration as set changes it.
func benchTrace(b *testing.B, file string, set func(*Config)) {
	path := filepath.Join(tracetest.Dir(b), file)
	b.ReportAllocs()
	for b.Loop() {
		leases, _, err := trace.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		cfg := DefaultConfig()
		set(&cfg)
		if _, err := Run(leases, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMigrateInsteadOfSuspend: two hosts of 2 CPUs, spread placement: be1
// runs on h001 and be2 on h002, 1 CPU each; a reservation of a whole host
// at 00:30 needs h002 (be2 started last). With migration on, be2 moves to
// h001 (512 MiB at the default 100 MiB/s: 6 s, plus 1 s of setup) and is
// never suspended: it ends when its 3 h are up; without, it is suspended
// (6 s at 100 MiB/s, from 00:29:54) and resumed on h001 (6 s more), and
// ends 12 s later.
func TestMigrateInsteadOfSuspend(t *testing.T) {
	leases := []trace.Lease{
		{ID: "be1", Kind: model.LeaseBestEffort, Duration: 3 * time.Hour, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
		{ID: "be2", Submit: time.Minute, Kind: model.LeaseBestEffort, Duration: 3 * time.Hour, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
		{ID: "ar", Submit: 10 * time.Minute, Kind: model.LeaseReservation, Start: 30 * time.Minute, Duration: 30 * time.Minute, Nodes: 1, CPUs: 2, MemoryMiB: 1024},
	}
	rate := 100 * int64(model.MiB)
	cfg := Config{Hosts: 2, HostCPUs: 2, HostMemory: 2 * model.GiB, Policy: calendar.DefaultPolicy(), SuspendRate: rate, ResumeRate: rate}
	cfg.Policy.Placement = calendar.Spread
	for _, migrate := range []bool{true, false} {
		cfg.Policy.Migrate = migrate
		res, err := Run(leases, cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkCapacity(t, res.Records, cfg.HostCPUs)
		var be2 metrics.Record
		for _, r := range res.Records {
			if r.ID == "be2" {
				be2 = r
			}
		}
		s := res.Summary
		if migrate {
			want := []metrics.Segment{{Host: "h002", Start: time.Minute, End: 30 * time.Minute}, {Host: "h001", Start: 30 * time.Minute, End: 3*time.Hour + time.Minute}}
			if s.Migrations != 1 || s.MigrationS != 7 || s.Preemptions != 0 || s.Suspensions != 0 || be2.End != 3*time.Hour+time.Minute ||
				len(be2.Segments) != 2 || be2.Segments[0] != want[0] || be2.Segments[1] != want[1] || res.Events[calendar.ActMigrate] != 1 {
				t.Errorf("with migration: summary %+v, be2 %+v, events %v", s, be2, res.Events)
			}
			continue
		}
		if s.Migrations != 0 || s.Preemptions != 1 || s.Suspensions != 1 || s.Requeues != 0 || be2.End != 3*time.Hour+time.Minute+12*time.Second {
			t.Errorf("without migration: summary %+v, be2 %+v", s, be2)
		}
	}
}

// TestHostCounts: a grid of any size runs the workload (the disk the
// engine gives hosts when none is set once overflowed the calendar's sum
// of free capacity with 8 or 72 hosts, and no lease started).
func TestHostCounts(t *testing.T) {
	ls := []trace.Lease{{ID: "a", Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 4, CPUs: 1, MemoryMiB: 1024, Preemptible: true}}
	for _, n := range []int{2, 8, 16, 72, 144, 1000} {
		res, err := Run(ls, Config{Hosts: n, HostCPUs: 2, HostMemory: 2 * model.GiB, Policy: calendar.DefaultPolicy()})
		if err != nil || res.Summary.Completed != 1 || res.Records[0].End != time.Hour {
			t.Errorf("%d hosts: %v, summary %+v", n, err, res.Summary)
		}
	}
}

// TestShutdownTime: under Policy.ShutdownTime (5 min) a lease's guests
// hold its host for 5 min after its run, and the next lease on the host
// starts after them. A lease's End is its run's end; its segment (what
// utilization counts, as it counts the boot) goes on to the end of the
// shutdown. be3 needs 30 min of its hour: it finishes early, and its
// host is held 5 min more.
func TestShutdownTime(t *testing.T) {
	m := time.Minute
	leases := []trace.Lease{
		{ID: "be1", Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
		{ID: "be2", Kind: model.LeaseBestEffort, Duration: time.Hour, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
		{ID: "be3", Kind: model.LeaseBestEffort, Duration: time.Hour, RealDuration: 30 * m, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
	}
	cfg := Config{Hosts: 1, HostCPUs: 1, HostMemory: model.GiB, Policy: calendar.DefaultPolicy()}
	cfg.Policy.ShutdownTime = 5 * m
	res, err := Run(leases, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkCapacity(t, res.Records, cfg.HostCPUs)
	want := map[string][3]time.Duration{ // start, end, segment end
		"be1": {0, 60 * m, 65 * m},
		"be2": {65 * m, 125 * m, 130 * m},
		"be3": {130 * m, 160 * m, 165 * m},
	}
	for _, r := range res.Records {
		w := want[r.ID]
		if r.Start != w[0] || r.End != w[1] || len(r.Segments) != 1 || r.Segments[0].Start != w[0] || r.Segments[0].End != w[2] {
			t.Errorf("%s: start %v end %v segments %+v, want %v", r.ID, r.Start, r.End, r.Segments, w)
		}
	}
	if u := res.Summary.Utilization; u < 0.999 || u > 1.001 {
		t.Errorf("utilization %v, want 1 (the host is held all the time)", u)
	}
}

// TestEndAsSuspended: a best-effort lease started in a gap whose real
// work ends at the very instant of its planned suspension (be2: in the
// gap on h2 from 2s to 30m, its work 29m58s) is not an error: the
// calendar suspends it at that instant, and it ends once resumed.
func TestEndAsSuspended(t *testing.T) {
	m := time.Minute
	leases := []trace.Lease{
		{ID: "be0", Kind: model.LeaseBestEffort, Duration: 30 * m, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
		{ID: "big", Kind: model.LeaseBestEffort, Submit: time.Second, Duration: time.Hour, Nodes: 2, CPUs: 1, MemoryMiB: 512, Preemptible: true},
		{ID: "be2", Kind: model.LeaseBestEffort, Submit: 2 * time.Second, Duration: time.Hour, RealDuration: 30*m - 2*time.Second, Nodes: 1, CPUs: 1, MemoryMiB: 512, Preemptible: true},
	}
	cfg := Config{Hosts: 2, HostCPUs: 1, HostMemory: model.GiB, Policy: calendar.DefaultPolicy()}
	res, err := Run(leases, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Leases {
		if r.State != StateDone {
			t.Errorf("%s: %s (%s), want done", r.ID, r.State, r.Reason)
		}
		if r.ID == "be2" && (r.Suspensions != 1 || r.End == nil || *r.End != 90*m) {
			t.Errorf("be2: %d suspensions, end %v; want suspended at 30m, ended at 1h30m once resumed", r.Suspensions, dur(r.End))
		}
	}
}
