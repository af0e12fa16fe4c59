package server

import (
	"errors"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// FuzzDecodeMigrationBodies feeds the same bytes to the user's bodies of
// POST /workspaces/{name}/migrate and /resize and to an agent's migration
// report: each is refused with a 400 that names the problem, or decoded
// to a value the controller's checks bound, which survives a round trip.
func FuzzDecodeMigrationBodies(f *testing.F) {
	f.Add([]byte(`{"to":"h2"}`))
	f.Add([]byte(`{"cancel":true}`))
	f.Add([]byte(`{"cpu":1.5,"memory":"512Mi","disk":"2Gi","bandwidth":"200Mbit","disk_iops":100,"allow_migrate":true}`))
	f.Add([]byte(`{"vcpus":-1,"memory":"-1"}`))
	f.Add([]byte(`{"id":"w0123456789ab","since":"2026-11-24T11:00:00Z","endpoint":{"memory":"10.0.0.2:4000","disk":"nbd://10.0.0.2:4001/vda"}}`))
	f.Add([]byte(`{"id":"w0123456789ab","since":"2026-11-24T11:00:00Z","progress":{"phase":"memory","memory_total":268435456,"memory_transferred":1000,"dirty_rate":4096,"passes":2}}`))
	f.Add([]byte(`{"id":"w0123456789ab","since":"2026-11-24T11:00:00Z","done":true,"total":"2s","downtime":"0.05s","memory_bytes":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m api.MigrateRequest
		if err := decodeStrict("migration", data, &m); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "migration", m)
		}
		var r api.ResizeRequest
		if err := decodeStrict("resize", data, &r); err != nil {
			refusal(t, err)
		} else {
			roundTrip(t, "resize", r)
			// What the controller checks of the quantum a resize gives.
			q := control.Resized(model.Quantum{VCPUs: 2, CPU: 1, Memory: 256 << 20}, r)
			if err := spec.ValidateQuantum(q); err != nil {
				var fe *spec.FieldErrors
				if !errors.As(err, &fe) || fe.Len() == 0 {
					t.Fatalf("quantum refused without field errors: %v", err)
				}
			} else if q.VCPUs < 1 || q.Memory <= 0 || q.CPU < 0 || q.Disk < 0 || q.DiskIOPS < 0 || q.DiskBPS < 0 || q.Bandwidth < 0 {
				t.Fatalf("quantum %+v accepted", q)
			}
		}
		var rep api.MigrationReport
		if err := decodeStrict("migration report", data, &rep); err != nil {
			refusal(t, err)
			return
		}
		if fe := control.ValidateMigrationReport(rep, fuzzNow); len(fe) > 0 {
			for _, e := range fe {
				if e.Field == "" || e.Reason == "" {
					t.Fatalf("a field error without field or reason: %+v", fe)
				}
			}
			return
		}
		n := 0
		for _, b := range []bool{rep.Endpoint != nil, rep.Progress != nil, rep.Done, rep.Failed != ""} {
			if b {
				n++
			}
		}
		switch {
		case n != 1:
			t.Fatalf("a report saying %d things accepted: %+v", n, rep)
		case rep.Endpoint != nil && !strings.HasPrefix(rep.Endpoint.Disk, "nbd://"):
			t.Fatalf("disk endpoint %q accepted", rep.Endpoint.Disk)
		case len(rep.Failed) > control.MaxReason:
			t.Fatalf("a reason of %d bytes accepted", len(rep.Failed))
		case rep.Total < 0 || rep.Downtime < 0 || rep.MemoryBytes < 0 || rep.DiskBytes < 0:
			t.Fatalf("negative numbers accepted: %+v", rep)
		}
		roundTrip(t, "migration report", rep)
	})
}
