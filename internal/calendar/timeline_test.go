package calendar

import (
	"math/rand"
	"testing"
)

func v1(cpu int64) vec { return vec{cpu, 0, 0, 0, 0} }

func TestTimeline(t *testing.T) {
	type op struct{ from, to, cpu int64 }
	tests := []struct {
		name string
		ops  []op
		want []point // cpu only
	}{
		{"empty", nil, nil},
		{"one", []op{{10, 20, 2}}, []point{{10, v1(2)}, {20, v1(0)}}},
		{"empty window ignored", []op{{10, 10, 2}}, nil},
		{"overlap", []op{{10, 30, 2}, {20, 40, 1}}, []point{{10, v1(2)}, {20, v1(3)}, {30, v1(1)}, {40, v1(0)}}},
		{"adjacent merge", []op{{10, 20, 2}, {20, 30, 2}}, []point{{10, v1(2)}, {30, v1(0)}}},
		{"add and take away", []op{{10, 20, 2}, {10, 20, -2}}, nil},
		{"take away middle", []op{{10, 40, 2}, {20, 30, -2}}, []point{{10, v1(2)}, {20, v1(0)}, {30, v1(2)}, {40, v1(0)}}},
		{"nested back to flat", []op{{10, 40, 1}, {20, 30, 1}, {20, 30, -1}}, []point{{10, v1(1)}, {40, v1(0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tl timeline
			for _, o := range tt.ops {
				tl.add(o.from, o.to, v1(o.cpu))
			}
			if len(tl.pts) != len(tt.want) {
				t.Fatalf("got %v, want %v", tl.pts, tt.want)
			}
			for i := range tt.want {
				if tl.pts[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", tl.pts, tt.want)
				}
			}
		})
	}
}

func TestTimelineQueries(t *testing.T) {
	var tl timeline
	tl.add(10, 30, v1(2))
	tl.add(20, 40, vec{1, 5, 0, 0, 0})
	tests := []struct {
		name     string
		from, to int64
		want     vec
	}{
		{"before", 0, 10, vec{}},
		{"first", 10, 20, v1(2)},
		{"straddle", 15, 25, vec{3, 5, 0, 0, 0}},
		{"per dimension max", 25, 35, vec{3, 5, 0, 0, 0}},
		{"tail", 30, 40, vec{1, 5, 0, 0, 0}},
		{"after", 40, 100, vec{}},
		{"point inside", 19, 20, v1(2)},
	}
	for _, tt := range tests {
		if got := tl.max(tt.from, tt.to); got != tt.want {
			t.Errorf("%s: max(%d, %d): got %v, want %v", tt.name, tt.from, tt.to, got, tt.want)
		}
	}
	if got := tl.at(25); got != (vec{3, 5, 0, 0, 0}) {
		t.Errorf("at(25): got %v, want [3 5 0 0 0]", got)
	}
	if n, ok := tl.next(20); !ok || n != 30 {
		t.Errorf("next(20): got %d %v, want 30 true", n, ok)
	}
	tl.gc(25)
	if tl.pts[0].t != 20 || tl.at(25) != (vec{3, 5, 0, 0, 0}) || len(tl.pts) != 3 {
		t.Errorf("gc(25): got %v, want the point at 20 kept and 2 after it", tl.pts)
	}
	tl.gc(50)
	if len(tl.pts) != 0 {
		t.Errorf("gc(50): got %v, want empty (all zero from 40)", tl.pts)
	}
}

// TestTimelineRandom checks the step function against a brute-force array.
func TestTimelineRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const span = 60
	for round := 0; round < 200; round++ {
		var tl timeline
		var ref [span]int64
		type iv struct{ from, to, v int64 }
		var live []iv
		for step := 0; step < 40; step++ {
			if len(live) > 0 && rng.Intn(3) == 0 {
				i := rng.Intn(len(live))
				x := live[i]
				live = append(live[:i], live[i+1:]...)
				tl.add(x.from, x.to, v1(-x.v))
				for k := x.from; k < x.to; k++ {
					ref[k] -= x.v
				}
			} else {
				from := int64(rng.Intn(span - 1))
				to := from + 1 + int64(rng.Intn(span-int(from)-1))
				x := iv{from, to, int64(1 + rng.Intn(4))}
				live = append(live, x)
				tl.add(x.from, x.to, v1(x.v))
				for k := x.from; k < x.to; k++ {
					ref[k] += x.v
				}
			}
			for k := int64(0); k < span; k++ {
				if got := tl.at(k)[dCPU]; got != ref[k] {
					t.Fatalf("round %d step %d: at(%d): got %d, want %d", round, step, k, got, ref[k])
				}
			}
			a := int64(rng.Intn(span))
			b := a + 1 + int64(rng.Intn(span-int(a)))
			var m int64
			for k := a; k < b && k < span; k++ {
				m = max(m, ref[k])
			}
			if got := tl.max(a, b)[dCPU]; got != m {
				t.Fatalf("round %d: max(%d, %d): got %d, want %d", round, a, b, got, m)
			}
			// firstOver: the first instant of [a, b) at which one more
			// exceeds the limit.
			for lim := int64(0); lim < 8; lim++ {
				want, wantOK := int64(0), false
				for k := a; k < b; k++ {
					if k < span && ref[k]+1 > lim || k >= span && 1 > lim {
						want, wantOK = k, true
						break
					}
				}
				limit := vec{lim, unlimited, unlimited, unlimited, unlimited}
				if got, ok := tl.firstOver(a, b, v1(1), limit); ok != wantOK || got != want {
					t.Fatalf("round %d: firstOver(%d, %d, limit %d): got %d %v, want %d %v", round, a, b, lim, got, ok, want, wantOK)
				}
			}
			for i := 1; i < len(tl.pts); i++ {
				if tl.pts[i].t <= tl.pts[i-1].t || tl.pts[i].v == tl.pts[i-1].v {
					t.Fatalf("round %d: not strictly sorted and merged: %v", round, tl.pts)
				}
			}
		}
	}
}

func TestCopies(t *testing.T) {
	tests := []struct {
		free, v vec
		limit   int
		want    int
	}{
		{vec{8, 8}, vec{2, 2}, 10, 4},
		{vec{8, 3}, vec{2, 2}, 10, 1},
		{vec{8, 8}, vec{2, 2}, 3, 3},
		{vec{-1, 8}, vec{2, 2}, 3, 0},
		{vec{0, 0}, vec{}, 5, 5},
	}
	for _, tt := range tests {
		if got := copies(tt.free, tt.v, tt.limit); got != tt.want {
			t.Errorf("copies(%v, %v, %d): got %d, want %d", tt.free, tt.v, tt.limit, got, tt.want)
		}
	}
}
