package metrics

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"vgrid/internal/model"
)

// Segment is one VM of a lease running on a host without interruption,
// or VMs of them that ran there over the same interval.
type Segment struct {
	Host       string
	Start, End time.Duration
	// VMs is how many of the lease's VMs the segment stands for; 0 and 1
	// both mean one. (A lease of thousands of VMs, a few on each host,
	// needs one segment per host, not one per VM.)
	VMs int
}

// vms is how many VMs s stands for.
func (s Segment) vms() int { return max(s.VMs, 1) }

// Record is what happened to one lease in a run.
type Record struct {
	ID, Project string
	Kind        model.LeaseKind
	// Submit, Start and End are offsets from the trace start: submission,
	// first start, and end (completion). Start and End are meaningless for
	// a record that never ran.
	Submit, Start, End time.Duration
	// Nodes is the number of VMs, CPUs the CPUs of each.
	Nodes int
	CPUs  float64
	// Requested is the requested duration, Real the time the lease actually
	// ran (0: unknown, taken from Segments or End − Start).
	Requested, Real time.Duration
	// Preemptions counts how often the lease was suspended or preempted;
	// Suspensions and Requeues, when set, say which.
	Preemptions, Suspensions, Requeues int
	// Migrations counts its members' live migrations to other hosts (done
	// while they ran, instead of a preemption), MigrationTime their total
	// duration.
	Migrations    int
	MigrationTime time.Duration
	// Accepted and Rejected record admission (of reservations, mostly).
	Accepted, Rejected bool
	// Hosts names the host of each VM when the lease ran on them from Start
	// to End without interruption; used when Segments is empty.
	Hosts []string
	// Segments lists every uninterrupted run of every VM (one per VM per
	// run between preemptions; VMs on one host over the same interval
	// may share one, Segment.VMs). When set, it is authoritative for
	// utilization and for the Gantt chart. Leases that were suspended and
	// resumed should carry it; without it they count as running from Start
	// to End.
	Segments []Segment
}

// Runs returns the record's run intervals: its Segments, one per VM (a
// segment of several VMs given as many times), or one segment per VM
// from Start to End (on Hosts[i], "" when unknown). It returns nil
// for rejected records and records without a positive run.
func (r Record) Runs() []Segment {
	if r.Rejected {
		return nil
	}
	if len(r.Segments) > 0 {
		out := make([]Segment, 0, len(r.Segments))
		for _, s := range r.Segments {
			if s.End > s.Start {
				one := s
				one.VMs = 0
				for range s.vms() {
					out = append(out, one)
				}
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	if r.End <= r.Start {
		return nil
	}
	n := max(r.Nodes, len(r.Hosts), 1)
	out := make([]Segment, n)
	for i := range out {
		out[i] = Segment{Start: r.Start, End: r.End}
		if i < len(r.Hosts) {
			out[i].Host = r.Hosts[i]
		}
	}
	return out
}

// ran reports whether the record has a positive run interval.
func (r Record) ran() bool {
	if r.Rejected {
		return false
	}
	if len(r.Segments) == 0 {
		return r.End > r.Start
	}
	for _, s := range r.Segments {
		if s.End > s.Start {
			return true
		}
	}
	return false
}

// intervals calls f for each run interval with the cores it uses.
func (r Record) intervals(f func(start, end time.Duration, cores float64)) {
	if !r.ran() {
		return
	}
	cpus := max(r.CPUs, 0)
	if len(r.Segments) == 0 {
		f(r.Start, r.End, float64(max(r.Nodes, 1))*cpus)
		return
	}
	for _, s := range r.Segments {
		if s.End > s.Start {
			// Once per VM, as if each had its own segment (the same sums,
			// in the same order).
			for range s.vms() {
				f(s.Start, s.End, cpus)
			}
		}
	}
}

// runTime returns how long the lease ran: Real, or the time covered by
// its segments, or End − Start.
func (r Record) runTime() time.Duration {
	if r.Real > 0 {
		return r.Real
	}
	if len(r.Segments) == 0 {
		return r.End - r.Start
	}
	iv := make([]Segment, 0, len(r.Segments))
	for _, s := range r.Segments {
		if s.End > s.Start {
			iv = append(iv, s)
		}
	}
	slices.SortFunc(iv, func(a, b Segment) int { return cmpDur(a.Start, b.Start) })
	var total time.Duration
	var curS, curE time.Duration
	for i, s := range iv {
		if i == 0 || s.Start > curE {
			total += curE - curS
			curS, curE = s.Start, s.End
			continue
		}
		curE = max(curE, s.End)
	}
	return total + curE - curS
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Summary is the headline numbers of a run; see the package documentation
// for the definitions.
type Summary struct {
	Leases              int     `json:"leases"`
	Completed           int     `json:"completed"`
	Rejected            int     `json:"rejected"`
	Utilization         float64 `json:"utilization"`
	SpanS               float64 `json:"span_s"`
	MeanWaitS           float64 `json:"mean_wait_s"`
	P50WaitS            float64 `json:"p50_wait_s"`
	P90WaitS            float64 `json:"p90_wait_s"`
	P99WaitS            float64 `json:"p99_wait_s"`
	MaxWaitS            float64 `json:"max_wait_s"`
	MeanBoundedSlowdown float64 `json:"mean_bounded_slowdown"`
	TotalCompletionS    float64 `json:"total_completion_s"`
	ARAccepted          int     `json:"ar_accepted"`
	ARRejected          int     `json:"ar_rejected"`
	Preemptions         int     `json:"preemptions"`
	// Suspensions and Requeues split Preemptions; Migrations counts live
	// migrations done instead, MigrationS their total time.
	Suspensions int     `json:"suspensions"`
	Requeues    int     `json:"requeues"`
	Migrations  int     `json:"migrations"`
	MigrationS  float64 `json:"migration_s"`
}

// slowdownBound is the run time below which bounded slowdown stops
// shrinking the denominator.
const slowdownBound = 10 * time.Second

// Summarize computes the summary of a run on capacityCPUs cores.
func Summarize(records []Record, capacityCPUs float64) Summary {
	s := Summary{Leases: len(records)}
	if len(records) == 0 {
		return s
	}
	first := records[0].Submit
	var last, lastBE time.Duration
	anyRan, anyBE := false, false
	var waits []float64
	var slowSum float64
	for _, r := range records {
		first = min(first, r.Submit)
		s.Preemptions += r.Preemptions
		s.Suspensions += r.Suspensions
		s.Requeues += r.Requeues
		s.Migrations += r.Migrations
		s.MigrationS += r.MigrationTime.Seconds()
		if r.Rejected {
			s.Rejected++
		}
		if r.Kind == model.LeaseReservation {
			if r.Accepted {
				s.ARAccepted++
			}
			if r.Rejected {
				s.ARRejected++
			}
		}
		if !r.ran() {
			continue
		}
		s.Completed++
		end := r.end()
		if !anyRan || end > last {
			last = end
		}
		anyRan = true
		if r.Kind == model.LeaseBestEffort {
			if !anyBE || end > lastBE {
				lastBE = end
			}
			anyBE = true
		}
		if r.Kind == model.LeaseReservation {
			continue
		}
		wait := max(r.Start-r.Submit, 0)
		waits = append(waits, wait.Seconds())
		run := max(r.runTime(), slowdownBound)
		slowSum += max(1, float64(end-r.Submit)/float64(run))
	}
	if !anyRan {
		return s
	}
	if anyBE {
		s.TotalCompletionS = (lastBE - first).Seconds()
	} else {
		s.TotalCompletionS = (last - first).Seconds()
	}
	span := last - first
	s.SpanS = span.Seconds()
	if span > 0 && capacityCPUs > 0 {
		var used float64
		for _, r := range records {
			r.intervals(func(a, b time.Duration, cores float64) {
				a, b = max(a, first), min(b, last)
				if b > a {
					used += (b - a).Seconds() * cores
				}
			})
		}
		s.Utilization = used / (capacityCPUs * span.Seconds())
	}
	if len(waits) > 0 {
		var sum float64
		for _, w := range waits {
			sum += w
		}
		s.MeanWaitS = sum / float64(len(waits))
		s.MeanBoundedSlowdown = slowSum / float64(len(waits))
		slices.Sort(waits)
		s.P50WaitS = percentile(waits, 50)
		s.P90WaitS = percentile(waits, 90)
		s.P99WaitS = percentile(waits, 99)
		s.MaxWaitS = waits[len(waits)-1]
	}
	return s
}

// end returns the end of the record's last run: End, or the latest
// segment end when there are segments.
func (r Record) end() time.Duration {
	if len(r.Segments) == 0 {
		return r.End
	}
	var e time.Duration
	for i, s := range r.Segments {
		if i == 0 || s.End > e {
			e = s.End
		}
	}
	return max(e, r.End)
}

// percentile returns the nearest-rank p-th percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Table renders the summary as an aligned two-column text table.
func (s Summary) Table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	row("leases", fmt.Sprintf("%d (%d ran, %d rejected)", s.Leases, s.Completed, s.Rejected))
	row("utilization", fmt.Sprintf("%.1f %% over %s", 100*s.Utilization, human(s.SpanS)))
	row("wait mean", human(s.MeanWaitS))
	row("wait p50 / p90 / p99", human(s.P50WaitS)+" / "+human(s.P90WaitS)+" / "+human(s.P99WaitS))
	row("wait max", human(s.MaxWaitS))
	row("bounded slowdown mean", fmt.Sprintf("%.2f", s.MeanBoundedSlowdown))
	row("total completion", human(s.TotalCompletionS))
	row("reservations accepted", fmt.Sprint(s.ARAccepted))
	row("reservations rejected", fmt.Sprint(s.ARRejected))
	row("preemptions", fmt.Sprintf("%d (%d suspended, %d requeued)", s.Preemptions, s.Suspensions, s.Requeues))
	row("migrations", fmt.Sprintf("%d, %s in all", s.Migrations, human(s.MigrationS)))
	w.Flush()
	return b.String()
}

// human formats seconds as "1234 s" followed by a rounded duration when
// that is longer than a minute, e.g. "5400 s (1h30m)".
func human(secs float64) string {
	str := fmt.Sprintf("%.0f s", secs)
	if secs < 10 {
		str = fmt.Sprintf("%.2f s", secs)
	}
	if secs >= 60 {
		str += " (" + shortDur(time.Duration(secs*float64(time.Second))) + ")"
	}
	return str
}

// shortDur renders a duration briefly: minutes and seconds under an hour,
// hours and minutes under two days, days and hours beyond.
func shortDur(d time.Duration) string {
	switch {
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d/time.Second)%60)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d/time.Minute)%60)
	}
	d = d.Round(time.Hour)
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d/time.Hour)%24)
}
