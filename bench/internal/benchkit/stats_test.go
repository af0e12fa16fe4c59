package benchkit

import (
	"slices"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want [3]time.Duration
	}{
		{"none", nil, [3]time.Duration{}},
		{"one", []time.Duration{5 * ms}, [3]time.Duration{5 * ms, 5 * ms, 5 * ms}},
		{"odd, unsorted", []time.Duration{9 * ms, 1 * ms, 4 * ms}, [3]time.Duration{1 * ms, 4 * ms, 9 * ms}},
		{"even: mean of the middle two", []time.Duration{8 * ms, 2 * ms, 4 * ms, 1 * ms}, [3]time.Duration{1 * ms, 3 * ms, 8 * ms}},
		{"repeated values", []time.Duration{3 * ms, 3 * ms, 3 * ms, 7 * ms}, [3]time.Duration{3 * ms, 3 * ms, 7 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := Stats(tc.in); got != tc.want {
				t.Errorf("Stats(%v) = %v, want %v", in, got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("Stats changed its input: %v, was %v", tc.in, in)
			}
		})
	}
}

func TestSorted(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	got := Sorted(in)
	if want := []time.Duration{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("Sorted = %v, want %v", got, want)
	}
	if want := []time.Duration{3, 1, 2}; !slices.Equal(in, want) {
		t.Errorf("Sorted changed its input to %v", in)
	}
	if got := Sorted(nil); len(got) != 0 {
		t.Errorf("Sorted(nil) = %v, want empty", got)
	}
}

func TestMedian64(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []int64
		want int64
	}{
		{"none", nil, 0},
		{"one", []int64{7}, 7},
		{"odd, unsorted", []int64{30, 10, 20}, 20},
		{"even: the upper middle", []int64{40, 10, 30, 20}, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Median64(tc.in); got != tc.want {
				t.Errorf("Median64(%v) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.0ms"},
		{1234567 * time.Nanosecond, "1.2ms"},
		{1500 * time.Millisecond, "1500.0ms"},
	} {
		if got := MS(tc.d); got != tc.want {
			t.Errorf("MS(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n    int64
		want float64
	}{
		{0, 0},
		{1 << 20, 1},
		{3 << 19, 1.5},
	} {
		if got := MiB(tc.n); got != tc.want {
			t.Errorf("MiB(%d) = %g, want %g", tc.n, got, tc.want)
		}
	}
}
