package calendar

import (
	"testing"
	"time"

	"vgrid/internal/model"
)

// With ResumeInPlace a suspended lease waits for room on the host that
// holds its memory, even when another host is free; without it, it resumes
// on the free host at once.
func TestResumeInPlace(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		hosts := []Host{
			{Name: "h1", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}},
			{Name: "h2", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB}},
		}
		p := DefaultPolicy()
		p.ResumeInPlace = inPlace
		c, err := New(hosts, p)
		if err != nil {
			t.Fatal(err)
		}
		full := Request{Resources: model.Resources{MilliCPU: 2000, Memory: model.GiB}}
		on := func(h string) Request {
			r := full
			r.Labels = map[string]string{"host": h}
			return r
		}
		c.hosts[0].Labels = map[string]string{"host": "h1"}
		c.hosts[1].Labels = map[string]string{"host": "h2"}
		c.reindex()
		mustSubmit := func(l Lease) {
			t.Helper()
			if _, err := c.Submit(l, epoch); err != nil {
				t.Fatal(err)
			}
		}
		mustSubmit(Lease{ID: "be", Kind: BestEffort, Members: []Request{on("h1")}, Duration: 4 * time.Hour})
		c.Advance(epoch)
		// h2 is busy for 30 minutes, h1 is reserved from 1h to 2h.
		mustSubmit(Lease{ID: "imm", Kind: Immediate, Members: []Request{on("h2")}, Duration: 90 * time.Minute})
		mustSubmit(Lease{ID: "ar", Kind: Reservation, Members: []Request{on("h1")}, Start: epoch.Add(time.Hour), Duration: time.Hour})
		// Let the suspended lease go anywhere from now on.
		c.leases["be"].Members[0].Labels = nil
		c.leases["be"].groups[0].labels, c.leases["be"].groups[0].key = nil, ""
		var resumed Action
		for now := epoch; now.Before(epoch.Add(3 * time.Hour)); now = now.Add(time.Minute) {
			for _, a := range c.Advance(now) {
				if a.Lease == "be" && a.Kind == ActResume {
					resumed = a
				}
			}
			if resumed.Lease != "" {
				break
			}
		}
		want, wantAt := "h2", epoch.Add(90*time.Minute)
		if inPlace {
			want, wantAt = "h1", epoch.Add(2*time.Hour)
		}
		if len(resumed.Hosts) != 1 || resumed.Hosts[0] != want || !resumed.At.Equal(wantAt) {
			t.Errorf("ResumeInPlace %v: resumed %v at %s, want on %s at %s", inPlace, resumed.Hosts, rel(resumed.At), want, rel(wantAt))
		}
	}
}
