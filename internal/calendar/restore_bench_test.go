package calendar

import (
	"fmt"
	"testing"
	"time"

	"vgrid/internal/model"
)

// BenchmarkRestore10000Leases1000Hosts restores a calendar of 1,000 hosts
// holding 10,000 leases (reservations, running and queued best effort)
// from its snapshot, as a control plane does at start.
func BenchmarkRestore10000Leases1000Hosts(b *testing.B) {
	var hosts []Host
	for i := 0; i < 1000; i++ {
		hosts = append(hosts, Host{Name: fmt.Sprintf("h%04d", i), Capacity: model.Resources{MilliCPU: 16000, Memory: 64 * model.GiB}})
	}
	c, err := New(hosts, DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	req := []Request{{Resources: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}}}
	for i := 0; i < 10000; i++ {
		l := Lease{ID: fmt.Sprintf("p%d/l%05d", i%7, i), Project: fmt.Sprintf("p%d", i%7), Members: req, Duration: time.Duration(1+i%8) * time.Hour}
		switch i % 4 {
		case 0:
			l.Kind, l.Start = Reservation, epoch.Add(time.Duration(1+i%48)*time.Hour)
		default:
			l.Kind = BestEffort
		}
		if _, err := c.Submit(l, epoch); err != nil {
			continue // refused reservations are not stored
		}
	}
	c.Advance(epoch)
	snap := c.Snapshot()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Restore(hosts, DefaultPolicy(), snap); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(snap.Leases)), "leases")
}
