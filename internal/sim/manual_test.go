package sim

import (
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/sim/trace"
)

// TestHaizeaManual runs Haizea's sample workload (its quickstart: a 1 h
// best-effort lease at 13:00 on one of 4 hosts, a 4-host reservation for
// 13:30-14:00 requested at 13:15, both with a 1024 MB image) as the
// manual's quickstart configures it, and checks every lease against the
// schedule the manual prints. Haizea's units: MB of memory and image,
// suspension and resumption at 32 MB/s (the manual's 32 s for 1024 MB),
// image transfers at 100 Mbit/s (12.5 MB/s: 82 s, rounded up) multicast
// from the repository, image caches of 20480 MB. The times below are the
// manual's, from 13:00:
//
//   - with suspension, images predeployed: lease 1 runs at 13:00, is
//     suspended from 13:29:28, resumed 14:00:00-14:00:32 and ends at
//     14:31:04; lease 2 runs 13:30-14:00;
//   - with image transfers: lease 1's image comes 13:00:00-13:01:22, so it
//     starts at 13:01:22 (and, suspended and resumed the same way, ends at
//     14:32:26, 28m06s before the suspension and 31m54s after the
//     resumption); lease 2's transfer ends in time for it to start at
//     13:30 as planned.
func TestHaizeaManual(t *testing.T) {
	leases, _, err := trace.Open(filepath.Join("trace", "testdata", "sample-uncommented.lwf"))
	if err != nil {
		t.Fatal(err)
	}
	hm := func(h, m, s int) time.Duration {
		return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second
	}
	type want struct {
		start, end         time.Duration
		runs               []span // of the best-effort lease, a resumption included
		imageFrom, imageTo *time.Duration
	}
	d := func(x time.Duration) *time.Duration { return &x }
	for _, tc := range []struct {
		name      string
		transfers bool
		be, ar    want
	}{
		{"predeployed", false,
			want{start: 0, end: hm(1, 31, 4), runs: []span{{0, hm(0, 29, 28)}, {hm(1, 0, 0), hm(1, 31, 4)}}},
			want{start: hm(0, 30, 0), end: hm(1, 0, 0)}},
		{"image transfers", true,
			want{start: hm(0, 1, 22), end: hm(1, 32, 26), runs: []span{{hm(0, 1, 22), hm(0, 29, 28)}, {hm(1, 0, 0), hm(1, 32, 26)}},
				imageFrom: d(0), imageTo: d(hm(0, 1, 22))},
			want{start: hm(0, 30, 0), end: hm(1, 0, 0), imageFrom: d(hm(0, 28, 38)), imageTo: d(hm(0, 30, 0))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Hosts, cfg.HostCPUs, cfg.HostMemory = 4, 1, 1024*model.MiB
			cfg.SuspendRate, cfg.ResumeRate = 32<<20, 32<<20
			if tc.transfers {
				const mbit100 = 100 << 20 / 8 // Haizea's 100 Mbit/s in its MB
				cfg.Policy.Link.Bandwidth, cfg.Policy.Link.Multicast, cfg.Policy.Link.Cache = mbit100, true, 20480<<20
			}
			res, err := Run(leases, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Leases) != 2 {
				t.Fatalf("%d lease results, want 2", len(res.Leases))
			}
			for i, w := range []want{tc.be, tc.ar} {
				l := res.Leases[i]
				if l.State != StateDone || l.Start == nil || *l.Start != w.start || l.End == nil || *l.End != w.end {
					t.Errorf("lease %s: %s, start %v, end %v; want done, %s to %s", l.ID, l.State, dur(l.Start), dur(l.End), w.start, w.end)
				}
				if dur(l.ImageFrom) != dur(w.imageFrom) || dur(l.ImageTo) != dur(w.imageTo) {
					t.Errorf("lease %s: image transfer %v to %v, want %v to %v", l.ID, dur(l.ImageFrom), dur(l.ImageTo), dur(w.imageFrom), dur(w.imageTo))
				}
			}
			for _, r := range res.Records {
				if r.Kind != model.LeaseBestEffort {
					continue
				}
				var got []span
				for _, s := range r.Segments {
					got = append(got, span{s.Start, s.End})
				}
				if len(got) != len(tc.be.runs) || (len(got) == 2 && (got[0] != tc.be.runs[0] || got[1] != tc.be.runs[1])) {
					t.Errorf("best-effort runs %v, want %v (suspended from 00:29:28; the second begins with the resumption at 01:00:00)", got, tc.be.runs)
				}
			}
		})
	}
}

// span is a run [from, to).
type span struct{ from, to time.Duration }

func dur(d *time.Duration) string {
	if d == nil {
		return "none"
	}
	return d.String()
}
