package trace

import (
	"bytes"
	"strings"
	"testing"
	"vgrid/internal/model"
)

// The seed corpora live in testdata/fuzz/<FuzzName>; the f.Add calls below
// add the unit tests' happy paths.

func FuzzReadSWF(f *testing.F) {
	f.Add([]byte("; c\n1 10 5 100 4 -1 -1 4 200 -1 1 7 3 -1 -1 -1 -1 -1\n"), uint8(0))
	f.Add([]byte("2 5 30 -1 -1 -1 -1 1 200 -1 5 7 3 -1 -1 -1 -1 -1\n"), uint8(0xff))
	f.Fuzz(func(t *testing.T, data []byte, flags uint8) {
		opt := SWFOptions{
			ProcsPerNode:       int(flags&3) * 4,
			PreferAllocated:    flags&4 != 0,
			RuntimeAsRequested: flags&8 != 0,
			KeepCancelled:      flags&16 != 0,
			ProjectByGroup:     flags&32 != 0,
		}
		leases, st, err := ReadSWFStats(bytes.NewReader(data), opt)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "read swf: line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if len(leases) != st.Leases || st.Leases+st.Skipped() != st.Jobs {
			t.Fatalf("got %d leases, stats %+v", len(leases), st)
		}
		fuzzInvariants(t, leases)
	})
}

func FuzzReadLWF(f *testing.F) {
	f.Add([]byte(lwfDoc(lwfReq("00:15:00", `id="2" preemptible="false"`, `<start><exact time="00:30:00"/></start><duration time="00:30:00"/>`))))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := ReadLWFWorkload(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "read lwf: line ") && err.Error() != "read lwf: no <lease-workload> element" {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if st := w.Site; st != nil && (st.Hosts <= 0 || !(st.CPUs > 0) || st.MemoryMiB < 0 || st.DiskMiB < 0) {
			t.Fatalf("site accepted with %+v", *st)
		}
		leases := w.Leases
		fuzzInvariants(t, leases)
		ids := map[string]bool{}
		for _, l := range leases {
			if ids[l.ID] {
				t.Fatalf("duplicate id %q", l.ID)
			}
			ids[l.ID] = true
		}
	})
}

func FuzzReadInjection(f *testing.F) {
	f.Add([]byte("# c\n0 86400 6829 6829 21 1 1024 0 'NONE.img' 600\n10 -1 100 50 2 0.5 512 20 img 300\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		leases, err := ReadInjection(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "read injection: line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		fuzzInvariants(t, leases)
		for _, l := range leases {
			if l.RealDuration <= 0 {
				t.Fatalf("lease without a real duration: %+v", l)
			}
		}
	})
}

func fuzzInvariants(t *testing.T, leases []Lease) {
	t.Helper()
	kinds := map[model.LeaseKind]bool{model.LeaseBestEffort: true, model.LeaseReservation: true, model.LeaseImmediate: true, model.LeaseDeadline: true}
	for i, l := range leases {
		if l.Submit < 0 || l.Duration <= 0 || l.RealDuration < 0 || l.RealDuration > l.Duration ||
			l.Nodes < 1 || !(l.CPUs >= 0) || l.MemoryMiB < 0 || l.DiskMiB < 0 || l.ImageSizeMiB < 0 ||
			l.CancelAfter < 0 || l.ID == "" || !kinds[l.Kind] {
			t.Fatalf("lease %d breaks an invariant: %+v", i, l)
		}
		if i > 0 && l.Submit < leases[i-1].Submit {
			t.Fatalf("lease %d is out of order", i)
		}
	}
}
