package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func value(t *testing.T, name string) float64 {
	t.Helper()
	fs, err := Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if m.Gauge != nil {
			return m.Gauge.GetValue()
		}
		return m.Counter.GetValue()
	}
	t.Fatalf("no %s", name)
	return 0
}

func TestSetLeader(t *testing.T) {
	if value(t, "vgrid_leader") != 1 {
		t.Fatalf("a control plane that ran no election does not lead")
	}
	c0 := value(t, "vgrid_leadership_changes_total")
	for _, c := range []struct {
		on      bool
		leader  float64
		changes float64
	}{
		{true, 1, 0}, {false, 0, 1}, {false, 0, 1}, {true, 1, 2},
	} {
		SetLeader(c.on)
		if l, n := value(t, "vgrid_leader"), value(t, "vgrid_leadership_changes_total")-c0; l != c.leader || n != c.changes {
			t.Errorf("SetLeader(%v): leader %v, %v changes; want %v, %v", c.on, l, n, c.leader, c.changes)
		}
	}
}

// Every metric of the process's registries gathers without clashes, and
// every name has the project's prefix (or is the Go runtime's and the
// process's).
func TestRegistriesGather(t *testing.T) {
	Heartbeats.WithLabelValues("h").Inc()
	Stage.WithLabelValues("img").Observe(1)
	fs, err := Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*dto.MetricFamily{}
	for _, f := range fs {
		seen[f.GetName()] = f
	}
	for _, n := range []string{"vgrid_leader", "vgrid_heartbeats_total", "vgrid_image_stage_duration_seconds", "go_goroutines"} {
		if seen[n] == nil {
			t.Errorf("no %s", n)
		}
	}
}
