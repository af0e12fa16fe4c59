package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/store"
	"vgrid/internal/store/bolt"
)

// BenchmarkRestoreFromStore restores the calendar of a control plane whose
// store holds 1,000 hosts and 10,000 leases (reservations, running and
// queued best effort): reading and decoding the records and rebuilding
// the calendar, as at every start.
func BenchmarkRestoreFromStore(b *testing.B) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "store.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var hosts []calendar.Host
	var ops []store.Op
	flush := func() {
		if _, err := st.Txn(ctx, ops); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := 0; i < 1000; i++ {
		n := model.Node{Name: fmt.Sprintf("h%04d", i), Capacity: model.Resources{MilliCPU: 16000, Memory: 64 * model.GiB}, LastHeartbeat: t0}
		hosts = append(hosts, calHost(n))
		v, _ := json.Marshal(n)
		ops = append(ops, store.Op{Key: "nodes/" + n.Name, Value: v})
		if len(ops) == 100 {
			flush()
		}
	}
	flush()
	c, err := calendar.New(hosts, calendar.DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	req := []calendar.Request{{Resources: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}
	for i := 0; i < 10000; i++ {
		l := calendar.Lease{ID: fmt.Sprintf("p%d/l%05d", i%7, i), Project: fmt.Sprintf("p%d", i%7), Members: req, Duration: time.Duration(1+i%8) * time.Hour}
		if i%4 == 0 {
			l.Kind, l.Start = calendar.Reservation, t0.Add(time.Duration(1+i%48)*time.Hour)
		} else {
			l.Kind = calendar.BestEffort
		}
		_, _ = c.Submit(l, t0)
	}
	c.Advance(t0)
	snap := c.Snapshot()
	stored := 0
	for _, r := range snap.Leases {
		if r.State == calendar.StateRefused {
			continue
		}
		v, _ := json.Marshal(r)
		ops = append(ops, store.Op{Key: leaseKey(r.ID), Value: v})
		stored++
		if len(ops) == 100 {
			flush()
		}
	}
	cs, _ := json.Marshal(calendarState{Now: snap.Now})
	ops = append(ops, store.Op{Key: calendarStateKey, Value: cs})
	flush()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctl, err := New(Config{Store: st, Logger: log, Now: func() time.Time { return t0 }})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ctl.CalendarSnapshot(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(stored), "leases")
}
