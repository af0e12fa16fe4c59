package sim

import (
	"bytes"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/sim/trace"
)

// TestForgetChangesNothing: on grids of more than 16 hosts the engine
// has the calendar forget each lease once it is over; random workloads
// (best-effort leases ending early or withdrawn, reservations, deadline
// leases, live migration, shut-down times) give the same records and lease
// results as when the calendar keeps them.
func TestForgetChangesNothing(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var leases []trace.Lease
		var at time.Duration
		for i := range 150 {
			at += time.Duration(rng.Intn(300)) * time.Second
			d := time.Duration(5+rng.Intn(240)) * time.Minute
			tl := trace.Lease{ID: fmt.Sprint("l", i), Submit: at, Kind: model.LeaseBestEffort, Duration: d,
				RealDuration: d / time.Duration(1+rng.Intn(3)), Nodes: 1 + rng.Intn(24), CPUs: 1, MemoryMiB: 512, Preemptible: rng.Intn(4) != 0}
			switch rng.Intn(8) {
			case 0:
				tl.Kind, tl.Start = model.LeaseReservation, at+time.Duration(rng.Intn(120))*time.Minute
			case 1:
				tl.Kind, tl.Deadline = model.LeaseDeadline, at+d+time.Duration(rng.Intn(600))*time.Minute
			case 2:
				tl.CancelAfter = time.Duration(1+rng.Intn(60)) * time.Minute
			}
			leases = append(leases, tl)
		}
		cfg := Config{Hosts: 24, HostCPUs: 4, HostMemory: 4 * model.GiB, Policy: calendar.DefaultPolicy(),
			SuspendRate: 200 * int64(model.MiB), ResumeRate: 200 * int64(model.MiB)}
		cfg.Policy.Migrate = seed%2 == 0
		if seed%3 == 0 {
			cfg.Policy.Backfill = calendar.BackfillConservative
		}
		if seed >= 4 {
			// Leases over while their guests shut down are forgotten
			// once the calendar lets them go.
			cfg.Policy.ShutdownTime = time.Duration(seed-3) * 2 * time.Minute
		}
		forgot, err := Run(leases, cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.keep = true
		kept, err := Run(leases, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var a, b bytes.Buffer
		if err := WriteLeasesCSV(&a, forgot.Leases); err != nil {
			t.Fatal(err)
		}
		if err := WriteLeasesCSV(&b, kept.Leases); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() || !reflect.DeepEqual(forgot.Records, kept.Records) || forgot.Summary != kept.Summary {
			t.Fatalf("seed %d: forgetting finished leases changed the results:\n%s\n---- kept:\n%s", seed, a.String(), b.String())
		}
		t.Logf("seed %d: %v", seed, forgot.Events)
	}
}
