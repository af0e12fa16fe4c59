package trace

import (
	"vgrid/internal/model"

	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// checkInvariants holds for every lease any reader returns.
func checkInvariants(t *testing.T, leases []Lease) {
	t.Helper()
	for i, l := range leases {
		if l.Submit < 0 || l.Duration <= 0 || l.RealDuration < 0 || l.RealDuration > l.Duration || l.Nodes < 1 || l.CPUs < 0 || l.ID == "" {
			t.Fatalf("lease %d breaks an invariant: %+v", i, l)
		}
		if i > 0 && l.Submit < leases[i-1].Submit {
			t.Fatalf("lease %d submitted at %v, before lease %d at %v", i, l.Submit, i-1, leases[i-1].Submit)
		}
	}
}

func TestRealSWF(t *testing.T) {
	dir := tracesDir(t)
	tests := []struct {
		file      string
		opt       SWFOptions
		wantStats SWFStats
		maxNodes  int
	}{
		// KTH: every one of the 28,489 jobs becomes a lease; 475 ran past
		// their requested time and 8 ran 0 s.
		{file: "KTH-SP2-1996-2.swf", wantStats: SWFStats{Jobs: 28489, Leases: 28489, RunTimeCapped: 475, RunTimeZero: 8}, maxNodes: 100},
		// Haizea's HPDC'08 workload: 5,545 requests, 437 of them cancelled
		// while queued, which Haizea 1.0 drops and the 2008 code kept.
		{file: "haizea-sdsc-blue/30days.swf", wantStats: SWFStats{Jobs: 5545, Leases: 5108, SkippedCancelled: 437, RunTimeCapped: 512}, maxNodes: 144},
		{file: "haizea-sdsc-blue/30days.swf", opt: SWFOptions{KeepCancelled: true}, wantStats: SWFStats{Jobs: 5545, Leases: 5545, Cancelled: 437, RunTimeCapped: 512}, maxNodes: 144},
		{file: "haizea-sdsc-blue/15days.swf", opt: SWFOptions{KeepCancelled: true}, wantStats: SWFStats{Jobs: 3383, Leases: 3383, Cancelled: 299, RunTimeCapped: 305}, maxNodes: 144},
		{file: "haizea-sdsc-blue/60days.swf", opt: SWFOptions{KeepCancelled: true}, wantStats: SWFStats{Jobs: 10280, Leases: 10280, Cancelled: 827, RunTimeCapped: 938}, maxNodes: 144},
		{file: "haizea-sdsc-blue/1000requests.swf", opt: SWFOptions{KeepCancelled: true}, wantStats: SWFStats{Jobs: 1000, Leases: 1000, Cancelled: 49, RunTimeCapped: 35}, maxNodes: 144},
		// LLNL Atlas (8 processors per node): 4,571 jobs have no processor
		// count and 6,294 more no requested time.
		{file: "LLNL-Atlas-2006-2.1-cln.swf", opt: SWFOptions{ProcsPerNode: 8, CPUsPerNode: 8}, wantStats: SWFStats{Jobs: 43778, Leases: 32913, SkippedNoProcs: 4571, SkippedNoRequestedTime: 6294, RunTimeCapped: 3351, RunTimeZero: 1665}, maxNodes: 1152},
		// Lublin's model has no requested times: all skipped by default.
		{file: "lublin_256.swf", wantStats: SWFStats{Jobs: 10000, SkippedNoRequestedTime: 10000}},
		{file: "lublin_256.swf", opt: SWFOptions{RuntimeAsRequested: true}, wantStats: SWFStats{Jobs: 10000, Leases: 10000}, maxNodes: 256},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, tt.file))
			if err != nil {
				t.Skip(err)
			}
			defer f.Close()
			leases, st, err := ReadSWFStats(f, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.wantStats {
				t.Errorf("got stats %+v, want %+v", st, tt.wantStats)
			}
			if len(leases) != st.Leases {
				t.Errorf("got %d leases, stats say %d", len(leases), st.Leases)
			}
			checkInvariants(t, leases)
			most := 0
			for _, l := range leases {
				most = max(most, l.Nodes)
			}
			if most > tt.maxNodes {
				t.Errorf("got a %d-node lease, want at most %d", most, tt.maxNodes)
			}
		})
	}
}

func TestRealKTHFirstJob(t *testing.T) {
	leases, f, err := Open(filepath.Join(tracesDir(t), "KTH-SP2-1996-2.swf"))
	if err != nil {
		t.Fatal(err)
	}
	// "1 0 964980 97225 56 -1 -1 56 210000 -1 1 1 1 -1 -1 -1 -1 -1"
	want := Lease{ID: "1", Kind: model.LeaseBestEffort, Duration: 210000 * time.Second, RealDuration: 97225 * time.Second,
		Nodes: 56, CPUs: 1, MemoryMiB: 1024, Image: "NONE.img", ImageSizeMiB: 600, Preemptible: true, Project: "u1"}
	if f != FormatSWF || leases[0] != want {
		t.Errorf("got %s %+v, want swf %+v", f, leases[0], want)
	}
}

func TestRealNASAGzip(t *testing.T) {
	p := filepath.Join(tracesDir(t), "NASA-iPSC-1993-3.1-cln.swf.gz")
	// NASA has no requested times (field 9 is -1 throughout), so by
	// default nothing is left.
	leases, f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if f != FormatSWF || len(leases) != 0 {
		t.Errorf("got %s with %d leases, want swf with 0", f, len(leases))
	}
	// With the run time as the request, all but the 173 jobs that ran 0 s.
	leases, _, err = OpenWith(p, SWFOptions{RuntimeAsRequested: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(leases), 18239-173; got != want {
		t.Errorf("got %d leases, want %d", got, want)
	}
	checkInvariants(t, leases)
}

func TestRealLWF(t *testing.T) {
	dir := filepath.Join(tracesDir(t), "haizea-lwf")
	m := time.Minute
	img := func(l Lease) Lease {
		l.CPUs, l.MemoryMiB, l.Image, l.ImageSizeMiB = 1, 1024, "foobar.img", 1024
		return l
	}
	// The two leases of sample.lwf, which the file itself comments out.
	sample := []Lease{
		img(Lease{ID: "1", Kind: model.LeaseBestEffort, Duration: 60 * m, Nodes: 1, Preemptible: true}),
		img(Lease{ID: "2", Submit: 15 * m, Kind: model.LeaseReservation, Start: 30 * m, Duration: 30 * m, Nodes: 4}),
	}
	tests := []struct {
		path       string
		wantFormat Format
		wantCount  int
		wantKinds  map[model.LeaseKind]int
		wantFirst  *Lease
	}{
		{path: filepath.Join(dir, "sample.lwf"), wantFormat: FormatLWF, wantCount: 0},
		{path: filepath.Join("testdata", "sample-uncommented.lwf"), wantFormat: FormatLWF, wantCount: 2, wantKinds: map[model.LeaseKind]int{model.LeaseBestEffort: 1, model.LeaseReservation: 1}},
		{path: filepath.Join(dir, "multi__inj1.lwf"), wantFormat: FormatLWF, wantCount: 13, wantKinds: map[model.LeaseKind]int{model.LeaseReservation: 13},
			wantFirst: ptr(img(Lease{ID: "1", Submit: 60 * m, Kind: model.LeaseReservation, Start: 75 * m, Duration: 7*m + 30*time.Second, Nodes: 2}))},
		{path: filepath.Join(dir, "multi__withprematureend.lwf"), wantFormat: FormatLWF, wantCount: 139, wantKinds: map[model.LeaseKind]int{model.LeaseBestEffort: 139},
			wantFirst: ptr(img(Lease{ID: "1", Kind: model.LeaseBestEffort, Duration: 60 * m, RealDuration: 15 * m, Nodes: 1, Preemptible: true}))},
		{path: filepath.Join(dir, "multi__withoutprematureend.lwf"), wantFormat: FormatLWF, wantCount: 139, wantKinds: map[model.LeaseKind]int{model.LeaseBestEffort: 139}},
		// Despite its name, generated.lwf is in the injection format.
		{path: filepath.Join(dir, "undocumented__generated.lwf"), wantFormat: FormatInjection, wantCount: 42, wantKinds: map[model.LeaseKind]int{model.LeaseReservation: 42}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			leases, f, err := Open(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if f != tt.wantFormat || len(leases) != tt.wantCount {
				t.Fatalf("got %s with %d leases, want %s with %d", f, len(leases), tt.wantFormat, tt.wantCount)
			}
			checkInvariants(t, leases)
			kinds := map[model.LeaseKind]int{}
			for _, l := range leases {
				kinds[l.Kind]++
			}
			for k, n := range tt.wantKinds {
				if kinds[k] != n {
					t.Errorf("got %d %s leases, want %d", kinds[k], k, n)
				}
			}
			if tt.wantFirst != nil && leases[0] != *tt.wantFirst {
				t.Errorf("got first lease %+v, want %+v", leases[0], *tt.wantFirst)
			}
			if filepath.Base(tt.path) == "sample-uncommented.lwf" {
				checkLeases(t, leases, sample)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRealInjection(t *testing.T) {
	dir := tracesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "haizea-sdsc-blue", "injected_leases", "*", "*.lwf"))
	if err != nil || len(files) == 0 {
		t.Skip("no injection files")
	}
	if len(files) != 246 {
		t.Errorf("got %d injection files, want 246", len(files))
	}
	var total, clamped, early int
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		leases, f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if f != FormatInjection {
			t.Fatalf("%s: got format %s, want injection", p, f)
		}
		if got, want := len(leases), bytes.Count(raw, []byte("\n")); got != want {
			t.Errorf("%s: got %d leases, want one per line (%d)", p, got, want)
		}
		checkInvariants(t, leases)
		for _, l := range leases {
			if l.Kind != model.LeaseReservation || l.Nodes > 72 || l.CPUs != 1 || l.MemoryMiB != 1024 || l.Image != "NONE.img" || l.ImageSizeMiB != 600 {
				t.Fatalf("%s: unexpected lease %+v", p, l)
			}
			if l.Start < l.Submit {
				early++
			}
		}
		clamped += bytes.Count(raw, []byte("\n-"))
		if bytes.HasPrefix(raw, []byte("-")) {
			clamped++
		}
		total += len(leases)
	}
	// 105,026 lines in all; 14 request times are negative (clamped to 0)
	// and 5 reservations ask to start before the trace does.
	if total != 105026 || clamped != 14 || early != 5 {
		t.Errorf("got %d leases, %d clamped, %d starting before submission; want 105026, 14, 5", total, clamped, early)
	}

	// The first lines of one file, field by field:
	// "0 86400 6829 6829 21 1 1024 0 'NONE.img' 600"
	// "3280 89680 8652 8652 1 1 1024 0 'NONE.img' 600"
	leases, _, err := Open(filepath.Join(dir, "haizea-sdsc-blue", "injected_leases", "15days", "work_10-dur_2h-size_1small.lwf"))
	if err != nil {
		t.Fatal(err)
	}
	s := time.Second
	want := []Lease{
		{ID: "1", Kind: model.LeaseReservation, Start: 86400 * s, Duration: 6829 * s, RealDuration: 6829 * s, Nodes: 21, CPUs: 1, MemoryMiB: 1024, Image: "NONE.img", ImageSizeMiB: 600},
		{ID: "2", Submit: 3280 * s, Kind: model.LeaseReservation, Start: 89680 * s, Duration: 8652 * s, RealDuration: 8652 * s, Nodes: 1, CPUs: 1, MemoryMiB: 1024, Image: "NONE.img", ImageSizeMiB: 600},
	}
	checkLeases(t, leases[:2], want)
}

// BenchmarkReadKTH reads the whole KTH-SP2 trace (28,489 jobs, 2.6 MB)
// from memory.
func BenchmarkReadKTH(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(tracesDir(b), "KTH-SP2-1996-2.swf"))
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		leases, err := ReadSWF(bytes.NewReader(data), SWFOptions{})
		if err != nil || len(leases) != 28489 {
			b.Fatalf("got %d leases, %v", len(leases), err)
		}
	}
}
