package control

import (
	"math"
	"testing"
	"time"

	"vgrid/internal/model"
)

func TestBooked(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	core := model.Resources{MilliCPU: 1000, Memory: model.GiB, Disk: 10 * model.GiB}
	at := func(d time.Duration) time.Time { return now.Add(d) }
	for _, c := range []struct {
		name   string
		holds  []hold
		nowCPU int64
		avgCPU float64 // millicores over the hour
	}{
		{"none", nil, 0, 0},
		{"held through the hour", []hold{{core, at(-time.Minute), at(2 * time.Hour)}}, 1000, 1000},
		{"ends at half", []hold{{core, at(-time.Minute), at(30 * time.Minute)}}, 1000, 500},
		{"begins at half", []hold{{core, at(30 * time.Minute), at(3 * time.Hour)}}, 0, 500},
		{"begins exactly now", []hold{{core, now, at(time.Hour)}}, 1000, 1000},
		{"ended exactly now", []hold{{core, at(-time.Hour), now}}, 0, 0},
		{"beyond the window", []hold{{core, at(time.Hour), at(2 * time.Hour)}}, 0, 0},
		{"two", []hold{{core, at(-time.Minute), at(15 * time.Minute)}, {core, at(45 * time.Minute), at(5 * time.Hour)}}, 1000, 500},
	} {
		got, avg := booked(c.holds, now, time.Hour)
		if got.MilliCPU != c.nowCPU || math.Abs(avg[0]-c.avgCPU) > 1e-6 {
			t.Errorf("%s: now %d, average %v; want %d, %v", c.name, got.MilliCPU, avg[0], c.nowCPU, c.avgCPU)
		}
		if c.nowCPU > 0 && (got.Memory != model.GiB || got.Disk != 10*model.GiB) {
			t.Errorf("%s: memory %v, disk %v booked now", c.name, got.Memory, got.Disk)
		}
		if math.Abs(avg[1]-c.avgCPU/1000*float64(model.GiB)) > 1 {
			t.Errorf("%s: memory average %v", c.name, avg[1])
		}
	}
}
