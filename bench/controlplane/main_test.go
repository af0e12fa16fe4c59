package main

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ok := config{n: 400, c: 8, k: 1, warmup: 20}
	for _, tc := range []struct {
		name     string
		cfg      config
		backends string
		want     []string
		err      string // part of the error; "" for none
	}{
		{"defaults", ok, "bolt,etcd1,etcd3", []string{"bolt", "etcd1", "etcd3"}, ""},
		{"spaces and order kept", ok, " etcd3, bolt", []string{"etcd3", "bolt"}, ""},
		{"unknown backend", ok, "bolt,etcd5", nil, `-backends: "etcd5"`},
		{"empty backend", ok, "bolt,", nil, `-backends: ""`},
		{"twice", ok, "bolt,bolt", nil, "given twice"},
		{"no creates", config{n: 0, c: 8, k: 1}, "bolt", nil, "-n 0"},
		{"no clients", config{n: 1, c: 0, k: 1}, "bolt", nil, "-c 0"},
		{"no repetitions", config{n: 1, c: 1, k: 0}, "bolt", nil, "-k 0"},
		{"negative warm-up", config{n: 1, c: 1, k: 1, warmup: -1}, "bolt", nil, "-warmup -1"},
		{"over the limit", config{n: 1_000_000, c: 1, k: 1, warmup: 1}, "bolt", nil, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			err := cfg.parse(tc.backends)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse(%q) = %v, want an error with %q", tc.backends, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.backends, err)
			}
			if strings.Join(cfg.backends, ",") != strings.Join(tc.want, ",") {
				t.Errorf("backends %v, want %v", cfg.backends, tc.want)
			}
		})
	}
}

func ms(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 100 is the 50th", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
		{"p0 is the min", ms(1, 2, 3), 0, 1 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummaries(t *testing.T) {
	// Latencies in start order: the last tenth is slower.
	lat := ms(10, 10, 10, 10, 10, 10, 10, 10, 50, 90)
	r := result{lat: lat, wall: 2 * time.Second, errors: 1, cpuSelf: 100 * time.Millisecond, cpuEtcd: 50 * time.Millisecond}
	if first, last := r.tenths(); first != 10*time.Millisecond || last != 90*time.Millisecond {
		t.Errorf("tenths = %v, %v; want 10ms, 90ms", first, last)
	}
	s := summarize(r)
	want := summary{perSecond: 5, p50: 10 * time.Millisecond, p99: 90 * time.Millisecond, max: 90 * time.Millisecond,
		errors: 1, cpuSelf: 10 * time.Millisecond, cpuEtcd: 5 * time.Millisecond}
	if s != want {
		t.Errorf("summarize = %+v, want %+v", s, want)
	}
	// The median of three runs takes each figure's median on its own.
	slow := result{lat: ms(100, 200, 300), wall: 3 * time.Second}
	fast := result{lat: ms(1, 2, 3), wall: time.Second / 2, errors: 2}
	m := median([]result{r, slow, fast})
	if m.perSecond != 5 || m.p50 != 10*time.Millisecond || m.max != 90*time.Millisecond || m.errors != 3 {
		t.Errorf("median = %+v, want 5/s, p50 10ms, max 90ms, 3 errors", m)
	}
	if (result{}).perSecond() != 0 || summarize(result{}) != (summary{}) {
		t.Errorf("an empty run: %+v", summarize(result{}))
	}
}

func TestStatFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want procStat
		ok   bool
	}{
		{"etcd", "4242 (etcd) S 100 4242 100 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 12 0 5000 1000 200",
			procStat{comm: "etcd", ppid: 100, cpu: 1750 * time.Millisecond}, true},
		{"a name with a space and parentheses", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0",
			procStat{comm: "a (b) c", ppid: 1, cpu: 70 * time.Millisecond}, true},
		{"cut short", "7 (x) R 1 7", procStat{}, false},
		{"no name", "7 x R 1", procStat{}, false},
		{"not numbers", "7 (x) R p 7 7 0 -1 0 0 0 0 0 u s 0 0", procStat{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := statFields(tc.stat)
			if ok != tc.ok || got != tc.want {
				t.Errorf("statFields = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
