package control

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/metrics"
	"vgrid/internal/model"
)

// Metrics. The controller's state is read at scrape time by a collector
// (MetricsCollector): leases by kind and state and the booked share of the
// hosts from the calendar, the hosts' heartbeat age from the store. Events
// are observed where they happen, with the helpers below, on the
// process-wide metrics of internal/metrics.

// MetricsCollector returns a collector that reads the controller when
// scraped. Register it in a registry of the server's own (several
// controllers may live in one process).
func (ctl *Controller) MetricsCollector() prometheus.Collector { return ctlCollector{ctl} }

type ctlCollector struct{ ctl *Controller }

func (c ctlCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- metrics.Leases
	ch <- metrics.Booked
	ch <- metrics.Nodes
	ch <- metrics.HeartbeatAge
}

// bookedWindow is the look ahead of vgrid_calendar_booked_ratio{window="1h"}.
const bookedWindow = time.Hour

var (
	metricKinds  = []model.LeaseKind{model.LeaseImmediate, model.LeaseBestEffort, model.LeaseReservation, model.LeaseDeadline}
	metricStates = []model.LeaseState{model.LeaseQueued, model.LeaseScheduled, model.LeaseRunning, model.LeaseSuspended,
		model.LeaseDone, model.LeaseCancelled, model.LeaseRefused, model.LeaseFailed}
)

// hold is one member's slots: res on a host over [from, to).
type hold struct {
	res      model.Resources
	from, to time.Time
}

// calendarFigures is what a scrape reads of the calendar under the lock.
type calendarFigures struct {
	loaded bool
	leases map[[2]string]int // by kind, state
	holds  []hold
	// started is when the controller began (or began to lead): host
	// health counts from then.
	started time.Time
}

// metricsFigures copies, under the controller's lock, what the scrape
// needs of the calendar: it never loads a calendar (a follower, or a
// controller that has decided nothing yet, has none to show).
func (ctl *Controller) metricsFigures() calendarFigures {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	f := calendarFigures{started: ctl.started}
	if ctl.cal == nil {
		return f
	}
	f.loaded, f.leases = true, map[[2]string]int{}
	for _, v := range ctl.cal.Leases() {
		f.leases[[2]string{string(v.Kind), string(v.State)}]++
		if v.State.Over() {
			continue
		}
		r, ok := ctl.cal.Record(v.ID)
		if !ok || r.Hold == nil {
			continue
		}
		h := r.Hold
		for i, m := range r.Members {
			if i < len(h.Hosts) {
				f.holds = append(f.holds, hold{m.Resources, h.From, h.To})
			}
		}
		// A member moving holds its size on the destination too.
		for _, mv := range h.Moves {
			if mv.Member < 0 || mv.Member >= len(r.Members) {
				continue
			}
			res := r.Members[mv.Member].Resources
			if mv.Resources != nil {
				res = *mv.Resources
			}
			f.holds = append(f.holds, hold{res, mv.Start, h.To})
		}
	}
	return f
}

func (c ctlCollector) Collect(ch chan<- prometheus.Metric) {
	ctl := c.ctl
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := ctl.now()
	f := ctl.metricsFigures()
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(metrics.Nodes, err)
		return
	}
	var capacity model.Resources
	states := map[model.NodeState]int{model.NodeReady: 0, model.NodeNotReady: 0, model.NodeLost: 0}
	for _, n := range nodes {
		st := hostState(n, now, f.started, ctl.cfg.NodeTimeout, ctl.cfg.NodeLostAfter)
		states[st]++
		if st != model.NodeLost {
			capacity = capacity.Add(n.Capacity)
		}
		if !n.LastHeartbeat.IsZero() {
			ch <- prometheus.MustNewConstMetric(metrics.HeartbeatAge, prometheus.GaugeValue, max(now.Sub(n.LastHeartbeat).Seconds(), 0), n.Name)
		}
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(metrics.Nodes, prometheus.GaugeValue, float64(n), string(st))
	}
	if !f.loaded {
		return
	}
	for _, k := range metricKinds {
		for _, s := range metricStates {
			f.leases[[2]string{string(k), string(s)}] += 0
		}
	}
	for ks, n := range f.leases {
		ch <- prometheus.MustNewConstMetric(metrics.Leases, prometheus.GaugeValue, float64(n), ks[0], ks[1])
	}
	nowB, aheadB := booked(f.holds, now, bookedWindow)
	for _, r := range []struct {
		name       string
		cap, n, ah float64
	}{
		{"cpu", float64(capacity.MilliCPU), float64(nowB.MilliCPU), aheadB[0]},
		{"memory", float64(capacity.Memory), float64(nowB.Memory), aheadB[1]},
		{"disk", float64(capacity.Disk), float64(nowB.Disk), aheadB[2]},
	} {
		if r.cap <= 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(metrics.Booked, prometheus.GaugeValue, r.n/r.cap, r.name, "now")
		ch <- prometheus.MustNewConstMetric(metrics.Booked, prometheus.GaugeValue, r.ah/r.cap, r.name, "1h")
	}
}

// booked sums the holds at now, and their average over [now, now+window)
// (cpu in millicores, memory and disk in bytes). It is pure.
func booked(hs []hold, now time.Time, window time.Duration) (at model.Resources, avg [3]float64) {
	end := now.Add(window)
	for _, h := range hs {
		if !h.from.After(now) && h.to.After(now) {
			at = at.Add(h.res)
		}
		from, to := maxTime(h.from, now), minTime(h.to, end)
		if !to.After(from) {
			continue
		}
		share := to.Sub(from).Seconds() / window.Seconds()
		avg[0] += float64(h.res.MilliCPU) * share
		avg[1] += float64(h.res.Memory) * share
		avg[2] += float64(h.res.Disk) * share
	}
	return at, avg
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// submitTimed is c.Submit, observed as placement latency.
func submitTimed(c *calendar.Calendar, l calendar.Lease, now time.Time) (calendar.Admission, error) {
	defer metrics.Since(metrics.Placement.WithLabelValues(string(l.Kind)), time.Now())
	return c.Submit(l, now)
}

// observeAdmission records the time since t0 as a lease admission of kind
// (deferred at the start of a decision).
func observeAdmission(kind model.LeaseKind, t0 time.Time) {
	metrics.Since(metrics.Admission.WithLabelValues(string(kind)), t0)
}

// observeLag records how late the actions due by now are carried out,
// and returns them.
func observeLag(now time.Time, acts []calendar.Action) []calendar.Action {
	for _, a := range acts {
		if !a.At.IsZero() {
			metrics.ReconcileLag.WithLabelValues(string(a.Kind)).Observe(max(now.Sub(a.At).Seconds(), 0))
		}
	}
	return acts
}

// observeHeartbeat counts a heartbeat of node.
func observeHeartbeat(node string) { metrics.Heartbeats.WithLabelValues(node).Inc() }

// observeGuestTimes records what a report that changed a workspace's
// state says of its host's speed: the same measures learnHostTimes keeps.
func observeGuestTimes(node string, ws model.Workspace) {
	t := ws.Status.Timings
	switch ws.Status.State {
	case model.StateRunning:
		switch {
		case !t.Resumed.IsZero() && t.ResumeTook > 0:
			metrics.Duration(metrics.Resume.WithLabelValues(node), t.ResumeTook.D())
		case t.Resumed.IsZero() && !t.ProcessStarted.IsZero() && t.GuestReady.After(t.ProcessStarted):
			if boot := t.GuestReady.Sub(t.ProcessStarted); boot <= 10*time.Minute {
				metrics.Duration(metrics.Boot.WithLabelValues(node), boot)
			}
		}
	case model.StateSuspended:
		metrics.Duration(metrics.Suspend.WithLabelValues(node), t.SuspendTook.D())
	}
}

// observeMigration records an ended live migration: the source's measure
// when it succeeded with one, else the time since it began.
func observeMigration(ok bool, since, now time.Time, rep *api.MigrationReport) {
	outcome, d := "failed", now.Sub(since)
	if ok {
		outcome = "succeeded"
		if rep != nil && rep.Total > 0 {
			d = rep.Total.D()
		}
	}
	metrics.Duration(metrics.Migration.WithLabelValues(outcome), d)
}
