package metrics

import (
	"slices"
	"time"
)

// Sample is the mean utilization over [T, T+step) (or the part of it
// inside the window), as a fraction of capacity.
type Sample struct {
	T           time.Duration
	Utilization float64
}

// maxSamples bounds the length of a series; Series widens step to stay
// under it.
const maxSamples = 1_000_000

// Series returns utilization over time in buckets of step, from the first
// submission to the last end of a record that ran (the window Summarize
// uses), so that the mean of the samples weighted by their length is the
// Summary's Utilization. The first bucket starts at the first submission;
// the last may be shorter than step and is averaged over its own length.
// Step is widened when the window would need more than 1,000,000 samples.
// It returns nil when no record ran, step ≤ 0 or capacity ≤ 0.
func Series(records []Record, capacityCPUs float64, step time.Duration) []Sample {
	if step <= 0 || !(capacityCPUs > 0) || len(records) == 0 {
		return nil
	}
	type event struct {
		t     time.Duration
		cores float64
	}
	var ev []event
	first := records[0].Submit
	var last time.Duration
	anyRan := false
	for _, r := range records {
		first = min(first, r.Submit)
		r.intervals(func(a, b time.Duration, cores float64) {
			ev = append(ev, event{a, cores}, event{b, -cores})
			if !anyRan || b > last {
				last = b
			}
			anyRan = true
		})
	}
	if !anyRan || last <= first {
		return nil
	}
	span := last - first
	if n := span / step; n >= maxSamples {
		step = span/(maxSamples-1) + 1
	}
	slices.SortFunc(ev, func(a, b event) int { return cmpDur(a.t, b.t) })

	n := int((span + step - 1) / step)
	out := make([]Sample, n)
	var (
		rate float64        // cores busy now
		t    = first        // integrated up to t
		acc  float64        // core-nanoseconds in the current bucket
		k    int            // current bucket
		i    int            // next event
		edge = first + step // end of bucket k
	)
	flush := func() {
		start := first + time.Duration(k)*step
		length := min(edge, last) - start
		out[k] = Sample{T: start, Utilization: acc / (float64(length) * capacityCPUs)}
		acc = 0
		k++
		edge += step
	}
	// Events before the window start only set the starting rate.
	for ; i < len(ev) && ev[i].t <= first; i++ {
		rate += ev[i].cores
	}
	for k < n {
		next := min(edge, last)
		if i < len(ev) && ev[i].t < next {
			next = ev[i].t
		}
		acc += rate * float64(next-t)
		t = next
		for ; i < len(ev) && ev[i].t == t; i++ {
			rate += ev[i].cores
		}
		if t == min(edge, last) {
			flush()
		}
	}
	return out
}
