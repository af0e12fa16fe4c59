package benchkit

import (
	"fmt"
	"sort"
	"time"
)

// Sorted returns a sorted copy of ds (ds is left as it is).
func Sorted(ds []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// Stats returns the min, median and max of ds; the median of an even count
// is the mean of the two middle values. It returns zeros for no values.
func Stats(ds []time.Duration) [3]time.Duration {
	if len(ds) == 0 {
		return [3]time.Duration{}
	}
	s := Sorted(ds)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return [3]time.Duration{s[0], med, s[len(s)-1]}
}

// Median64 returns the median of xs, the upper of the two middle values of
// an even count, and 0 for no values.
func Median64(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// MS formats d in milliseconds with one decimal, as "12.3ms".
func MS(d time.Duration) string { return fmt.Sprintf("%.1fms", d.Seconds()*1000) }

// MiB returns n bytes in MiB.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }
