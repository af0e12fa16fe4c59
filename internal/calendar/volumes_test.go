package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

const gi = model.GiB

func diskHost(name string, disk model.ByteSize) Host {
	return Host{Name: name, Capacity: model.Resources{MilliCPU: 8000, Memory: 16 * gi, Disk: disk}}
}

func diskLease(id string, kind Kind, disk model.ByteSize, start time.Time) Lease {
	return Lease{ID: id, Project: "p", Kind: kind, Start: start, Duration: 2 * time.Hour,
		Members: []Request{{Resources: model.Resources{MilliCPU: 1000, Memory: gi, Disk: disk}}}}
}

func mustCal(t *testing.T, hosts []Host, p Policy) *Calendar {
	t.Helper()
	c, err := New(hosts, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPlaceVolume(t *testing.T) {
	storage := func(h Host) Host { h.Storage = true; return h }
	over := DefaultPolicy()
	over.Overcommit.Disk = 2
	for _, tc := range []struct {
		name    string
		hosts   []Host
		pol     *Policy
		cordon  []string
		vols    []Volume // added first
		leases  []Lease  // submitted first
		size    model.ByteSize
		want    string
		host    string // chosen, or
		err     string // a substring of the error
		errIs   error
		refusal *VolumeRefusal // Host, Free, Volumes, Leases compared
	}{
		{name: "most free disk", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 20*gi)}, size: gi, host: "h2"},
		{name: "tie by name", hosts: []Host{diskHost("h2", 10*gi), diskHost("h1", 10*gi)}, size: gi, host: "h1"},
		{name: "volumes count", hosts: []Host{diskHost("h1", 20*gi), diskHost("h2", 10*gi)},
			vols: []Volume{{Name: "p/a", Project: "p", Size: 15 * gi, Host: "h1"}}, size: gi, host: "h2"},
		{name: "future lease disk counts", hosts: []Host{diskHost("h1", 20*gi), diskHost("h2", 10*gi)},
			leases: []Lease{diskLease("r1", Reservation, 15*gi, epoch.Add(5*time.Hour))}, size: gi, host: "h2"},
		{name: "cordoned skipped", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 20*gi)}, cordon: []string{"h2"}, size: gi, host: "h1"},
		{name: "storage hosts only", hosts: []Host{diskHost("h1", 20*gi), storage(diskHost("h2", 5*gi))}, size: gi, host: "h2"},
		{name: "storage host full", hosts: []Host{diskHost("h1", 20*gi), storage(diskHost("h2", 5*gi))}, size: 8 * gi,
			err: "volume p/v: no room for 8Gi: the most disk free is 5Gi on host h2", errIs: ErrNoVolumeRoom,
			refusal: &VolumeRefusal{Host: "h2", Free: 5 * gi}},
		{name: "no host with disk", hosts: []Host{diskHost("h1", 0)}, size: gi,
			err: "every host is cordoned or has no disk", errIs: ErrNoVolumeRoom, refusal: &VolumeRefusal{}},
		{name: "refusal names volumes", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 3*gi)},
			vols: []Volume{{Name: "p/a", Project: "p", Size: 6 * gi, Host: "h1"}}, size: 5 * gi,
			err: "the most disk free is 4Gi on host h1 (disk held by volumes p/a)", errIs: ErrNoVolumeRoom,
			refusal: &VolumeRefusal{Host: "h1", Free: 4 * gi, Volumes: []string{"p/a"}}},
		{name: "refusal names a future lease", hosts: []Host{diskHost("h1", 10*gi)},
			leases: []Lease{diskLease("r1", Reservation, 8*gi, epoch.Add(time.Hour))}, size: 4 * gi,
			err: "the most disk free is 2Gi on host h1 (disk held by leases r1)", errIs: ErrNoVolumeRoom,
			refusal: &VolumeRefusal{Host: "h1", Free: 2 * gi, Leases: []string{"r1"}}},
		{name: "volumes are not overcommitted", pol: &over, hosts: []Host{diskHost("h1", 10*gi)}, size: 12 * gi,
			err: "the most disk free is 10Gi on host h1", errIs: ErrNoVolumeRoom},
		{name: "want", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 20*gi)}, want: "h1", size: gi, host: "h1"},
		{name: "want too full", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 20*gi)}, want: "h1", size: 11 * gi,
			err: "the most disk free is 10Gi on host h1", errIs: ErrNoVolumeRoom},
		{name: "want cordoned", hosts: []Host{diskHost("h1", 10*gi)}, cordon: []string{"h1"}, want: "h1", size: gi,
			err: "it is cordoned", errIs: ErrInvalid},
		{name: "want not storage", hosts: []Host{diskHost("h1", 10*gi), storage(diskHost("h2", 5*gi))}, want: "h1", size: gi,
			err: "not a storage host", errIs: ErrInvalid},
		{name: "want unknown", hosts: []Host{diskHost("h1", 10*gi)}, want: "h9", size: gi, errIs: ErrUnknownHost},
		{name: "size zero", hosts: []Host{diskHost("h1", 10*gi)}, size: 0, err: "size", errIs: ErrInvalid},
		{name: "duplicate", hosts: []Host{diskHost("h1", 10*gi)}, vols: []Volume{{Name: "p/v", Size: gi, Host: "h1"}}, size: gi, errIs: ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tc.pol != nil {
				p = *tc.pol
			}
			c := mustCal(t, tc.hosts, p)
			for _, h := range tc.cordon {
				if _, err := c.SetCordon(h, true, epoch); err != nil {
					t.Fatal(err)
				}
			}
			for _, v := range tc.vols {
				if err := c.AddVolume(v, epoch); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range tc.leases {
				if _, err := c.Submit(l, epoch); err != nil {
					t.Fatal(err)
				}
			}
			before := len(c.Volumes())
			host, err := c.PlaceVolume(Volume{Name: "p/v", Project: "p", Size: tc.size}, tc.want, epoch)
			if tc.host != "" {
				if err != nil || host != tc.host {
					t.Fatalf("got %q, %v; want %s", host, err, tc.host)
				}
				vs := c.VolumesOn(tc.host)
				if len(c.Volumes()) != before+1 || len(vs) == 0 || vs[len(vs)-1].Host != tc.host {
					t.Fatalf("not recorded: %+v", c.Volumes())
				}
				return
			}
			if err == nil {
				t.Fatalf("placed on %s, want an error", host)
			}
			if !strings.Contains(err.Error(), tc.err) || tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Fatalf("error %q, want it to say %q and be %v", err, tc.err, tc.errIs)
			}
			if len(c.Volumes()) != before {
				t.Fatalf("a refusal recorded a volume: %+v", c.Volumes())
			}
			if tc.refusal != nil {
				var r *VolumeRefusal
				if !errors.As(err, &r) {
					t.Fatalf("%T is not a *VolumeRefusal", err)
				}
				if r.Host != tc.refusal.Host || r.Free != tc.refusal.Free || r.Size != tc.size ||
					strings.Join(r.Volumes, ",") != strings.Join(tc.refusal.Volumes, ",") || strings.Join(r.Leases, ",") != strings.Join(tc.refusal.Leases, ",") {
					t.Fatalf("refusal %+v, want %+v", r, tc.refusal)
				}
			}
		})
	}
}

// Volumes take disk from leases: placed elsewhere, refused, started once
// the volume is gone.
func TestVolumeDiskAgainstLeases(t *testing.T) {
	vol := Volume{Name: "p/data", Project: "p", Size: 5 * gi, Host: "h1"}
	for _, tc := range []struct {
		name  string
		hosts []Host
		lease Lease
		host  string // where the lease goes, or
		res   string // the refusal's short resource
		free  model.ByteSize
	}{
		{name: "placed elsewhere", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 10*gi)},
			lease: diskLease("i1", Immediate, 8*gi, time.Time{}), host: "h2"},
		{name: "fits beside", hosts: []Host{diskHost("h1", 10*gi), diskHost("h2", 10*gi)},
			lease: diskLease("i1", Immediate, 5*gi, time.Time{}), host: "h1"},
		{name: "no disk asked", hosts: []Host{diskHost("h1", 10*gi)},
			lease: diskLease("i1", Immediate, 0, time.Time{}), host: "h1"},
		{name: "refused", hosts: []Host{diskHost("h1", 10*gi)},
			lease: diskLease("i1", Immediate, 8*gi, time.Time{}), res: "disk", free: 5 * gi},
		{name: "reservation refused", hosts: []Host{diskHost("h1", 10*gi)},
			lease: diskLease("r1", Reservation, 6*gi, epoch.Add(24*time.Hour)), res: "disk", free: 5 * gi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCal(t, tc.hosts, DefaultPolicy())
			if err := c.AddVolume(vol, epoch); err != nil {
				t.Fatal(err)
			}
			adm, err := c.Submit(tc.lease, epoch)
			if tc.host != "" {
				if err != nil || len(adm.Hosts) != 1 || adm.Hosts[0] != tc.host {
					t.Fatalf("admission %+v, %v; want on %s", adm, err, tc.host)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("got %+v, %v; want a refusal", adm, err)
			}
			if r.Resource != tc.res || model.ByteSize(r.Free) != tc.free || r.Host != "h1" {
				t.Fatalf("refusal %s (resource %s, free %v on %s), want %s with %s free on h1", r, r.Resource, model.ByteSize(r.Free), r.Host, tc.res, tc.free)
			}
			if vs := c.VolumesOn(r.Host); len(vs) != 1 || vs[0].Name != "p/data" {
				t.Fatalf("volumes on %s: %+v", r.Host, vs)
			}
			if !strings.Contains(r.Error(), "volumes p/data hold disk there") {
				t.Errorf("the refusal does not name the volume: %s", r)
			}
			// Without the volume, the same lease is admitted.
			if err := c.RemoveVolume("p/data", epoch); err != nil {
				t.Fatal(err)
			}
			tc.lease.ID += "-again"
			if _, err := c.Submit(tc.lease, epoch); err != nil {
				t.Fatalf("after the volume is removed: %v", err)
			}
		})
	}
}

// A waiting lease starts once a volume in its way is removed; a volume
// added while leases hold disk is refused on the host they fill.
func TestVolumeQueueAndHolds(t *testing.T) {
	c := mustCal(t, []Host{diskHost("h1", 10*gi)}, DefaultPolicy())
	// Queued before the volume comes (submitted after it, it would be
	// refused as larger than any host's disk less its volumes).
	if _, err := c.Submit(diskLease("b1", BestEffort, 6*gi, time.Time{}), epoch); err != nil {
		t.Fatal(err)
	}
	if err := c.AddVolume(Volume{Name: "p/a", Size: 6 * gi, Host: "h1"}, epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	if v, _ := c.Get("b1"); v.State != StateQueued {
		t.Fatalf("b1 is %s beside a 6Gi volume on a 10Gi host, want queued", v.State)
	}
	if err := c.RemoveVolume("p/a", epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch.Add(time.Minute))
	if v, _ := c.Get("b1"); v.State != StateRunning && v.State != StateScheduled {
		t.Fatalf("b1 is %s after the volume went, want started", v.State)
	}
	// b1 holds 6Gi for two hours: a 5Gi volume does not fit, a 4Gi one does.
	_, err := c.PlaceVolume(Volume{Name: "p/b", Size: 5 * gi}, "", epoch.Add(2*time.Minute))
	if !errors.Is(err, ErrNoVolumeRoom) || !strings.Contains(err.Error(), "leases b1") {
		t.Fatalf("got %v, want a refusal naming b1", err)
	}
	if _, err := c.PlaceVolume(Volume{Name: "p/b", Size: 4 * gi}, "", epoch.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

func TestResizeAndRemoveVolume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vol   string
		size  model.ByteSize
		err   string
		errIs error
		after model.ByteSize // p/a's size afterwards
	}{
		{name: "grow", vol: "p/a", size: 6 * gi, after: 6 * gi},
		{name: "same", vol: "p/a", size: 2 * gi, after: 2 * gi},
		{name: "shrink", vol: "p/a", size: gi, err: "volumes only grow", errIs: ErrInvalid, after: 2 * gi},
		{name: "too large", vol: "p/a", size: 7 * gi, err: "no room for 5Gi: the most disk free is 4Gi on host h1 (disk held by volumes p/a; leases r1)",
			errIs: ErrNoVolumeRoom, after: 2 * gi},
		{name: "unknown", vol: "p/zz", size: gi, errIs: ErrNotFound, after: 2 * gi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCal(t, []Host{diskHost("h1", 10*gi)}, DefaultPolicy())
			if err := c.AddVolume(Volume{Name: "p/a", Size: 2 * gi, Host: "h1"}, epoch); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Submit(diskLease("r1", Reservation, 4*gi, epoch.Add(10*time.Hour)), epoch); err != nil {
				t.Fatal(err)
			}
			err := c.ResizeVolume(tc.vol, tc.size, epoch)
			if tc.errIs == nil && err != nil || tc.errIs != nil && (!errors.Is(err, tc.errIs) || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want %v saying %q", err, tc.errIs, tc.err)
			}
			if vs := c.Volumes(); len(vs) != 1 || vs[0].Size != tc.after {
				t.Fatalf("volumes %+v, want p/a of %s", vs, tc.after)
			}
			// The disk left for leases is 10Gi less the volume.
			left := 10*gi - tc.after
			if _, err := c.Submit(diskLease("fit", Immediate, left, time.Time{}), epoch); err != nil {
				t.Fatalf("a lease of the %s left: %v", left, err)
			}
			if _, err := c.Submit(diskLease("over", Immediate, left+gi, time.Time{}), epoch); err == nil {
				t.Fatalf("a lease of %s was admitted beside a %s volume", left+gi, tc.after)
			}
		})
	}
	c := mustCal(t, []Host{diskHost("h1", 10*gi)}, DefaultPolicy())
	if err := c.RemoveVolume("p/none", epoch); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
}

// After Restore, adding the stored volumes again gives the same
// decisions as the calendar that never stopped.
func TestRestoreWithVolumesSameDecisions(t *testing.T) {
	hosts := []Host{diskHost("h1", 20*gi), diskHost("h2", 16*gi), diskHost("h3", 12*gi)}
	a := mustCal(t, hosts, DefaultPolicy())
	for i, sz := range []model.ByteSize{6 * gi, 5 * gi, 3 * gi} {
		if _, err := a.PlaceVolume(Volume{Name: "p/v" + string(rune('0'+i)), Project: "p", Size: sz}, "", epoch); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []Lease{diskLease("r1", Reservation, 8*gi, epoch.Add(time.Hour)), diskLease("i1", Immediate, 6*gi, time.Time{})} {
		if _, err := a.Submit(l, epoch); err != nil {
			t.Fatal(err)
		}
	}
	a.Advance(epoch.Add(time.Minute))
	b, err := Restore(hosts, DefaultPolicy(), a.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range a.Volumes() {
		if err := b.AddVolume(v, epoch.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	at := epoch.Add(2 * time.Minute)
	steps := []func(c *Calendar) string{
		func(c *Calendar) string {
			h, err := c.PlaceVolume(Volume{Name: "p/x", Size: 4 * gi}, "", at)
			return h + errText(err)
		},
		func(c *Calendar) string {
			adm, err := c.Submit(diskLease("i2", Immediate, 7*gi, time.Time{}), at)
			return strings.Join(adm.Hosts, ",") + errText(err)
		},
		func(c *Calendar) string {
			adm, err := c.Submit(diskLease("i3", Immediate, 9*gi, time.Time{}), at)
			return strings.Join(adm.Hosts, ",") + errText(err)
		},
		func(c *Calendar) string {
			h, err := c.PlaceVolume(Volume{Name: "p/y", Size: 5 * gi}, "", at)
			return h + errText(err)
		},
		func(c *Calendar) string { return errText(c.ResizeVolume("p/v0", 9*gi, at)) },
		func(c *Calendar) string { return c.Gantt(epoch, epoch.Add(4*time.Hour), 16) },
	}
	for i, step := range steps {
		x, y := step(a), step(b)
		if x != y {
			t.Fatalf("step %d: the calendar that ran says %q, the restored one %q", i, x, y)
		}
		t.Logf("step %d: %s", i, x)
	}
	if len(a.Volumes()) != 5 {
		t.Fatalf("volumes %+v", a.Volumes())
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " error: " + err.Error()
}

// A removed host keeps its volumes listed, is not chosen, and counts them
// again once it is back.
func TestVolumesOnRemovedHost(t *testing.T) {
	c := mustCal(t, []Host{diskHost("h1", 10*gi), diskHost("h2", 4*gi)}, DefaultPolicy())
	if err := c.AddVolume(Volume{Name: "p/a", Size: 5 * gi, Host: "h1"}, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveHost("h1", epoch); err != nil {
		t.Fatal(err)
	}
	if vs := c.Volumes(); len(vs) != 1 || vs[0].Host != "h1" {
		t.Fatalf("volumes %+v, want p/a still on h1", vs)
	}
	if h, err := c.PlaceVolume(Volume{Name: "p/b", Size: gi}, "", epoch); err != nil || h != "h2" {
		t.Fatalf("placed on %q, %v; want h2 (h1 is gone)", h, err)
	}
	if !strings.Contains(c.Gantt(epoch, epoch.Add(time.Hour), 4), "volumes: p/a 5Gi (5Gi of 10Gi disk)") {
		t.Fatalf("the removed host's volumes are not drawn:\n%s", c.Gantt(epoch, epoch.Add(time.Hour), 4))
	}
	// A volume can be added on a removed host (restored state); one the
	// calendar never had is refused.
	if err := c.AddVolume(Volume{Name: "p/c", Size: gi, Host: "h9"}, epoch); !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("add on an unknown host: %v", err)
	}
	if err := c.AddHost(diskHost("h1", 10*gi), epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateHost(diskHost("h1", 10*gi), epoch); err != nil {
		t.Fatal(err)
	}
	if vs := c.VolumesOn("h1"); len(vs) != 1 {
		t.Fatalf("volumes on h1 after it came back: %+v", vs)
	}
	if _, err := c.Submit(diskLease("i1", Immediate, 8*gi, time.Time{}), epoch); err == nil {
		t.Fatal("an 8Gi lease was admitted on the 10Gi host that holds a 5Gi volume")
	}
	if _, err := c.Submit(diskLease("i2", Immediate, 5*gi, time.Time{}), epoch); err != nil {
		t.Fatal(err)
	}
}

func TestGanttVolumes(t *testing.T) {
	c := mustCal(t, []Host{diskHost("h1", 20*gi), diskHost("h2", 10*gi)}, DefaultPolicy())
	for _, v := range []Volume{{Name: "p/logs", Project: "p", Size: gi, Host: "h1"}, {Name: "p/data", Project: "p", Size: 64 * model.MiB, Host: "h1"},
		{Name: "q/x", Project: "q", Size: 2 * gi, Host: "h2"}} {
		if err := c.AddVolume(v, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Submit(diskLease("p/i1", Immediate, gi, time.Time{}), epoch); err != nil {
		t.Fatal(err)
	}
	c.Advance(epoch)
	got := c.Gantt(epoch, epoch.Add(4*time.Hour), 4)
	want := `   2000-01-01T00:00:00Z .. 2000-01-01T04:00:00Z, 1h0m0s per cell
h1 |aa..|
    volumes: p/data 64Mi, p/logs 1Gi (1.1Gi of 20Gi disk)
h2 |....|
    volumes: q/x 2Gi (2Gi of 10Gi disk)
legend: a=p/i1; upper case: staging, booting, resuming, suspending or shutting down
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	masked := RenderGantt(Mask(c.GanttData(epoch, epoch.Add(4*time.Hour)), "p"), epoch, epoch.Add(4*time.Hour), 4)
	if strings.Contains(masked, "q/x") || !strings.Contains(masked, "volumes: * 2Gi (2Gi of 10Gi disk)") {
		t.Fatalf("masked chart shows another project's volume name or lost its size:\n%s", masked)
	}
	rows := c.GanttData(epoch, epoch.Add(time.Hour))
	if len(rows) != 2 || len(rows[0].Volumes) != 2 || rows[0].Volumes[0].Name != "p/data" || rows[0].Disk != 20*gi {
		t.Fatalf("rows %+v", rows)
	}
	// No volumes, no line.
	if err := c.RemoveVolume("q/x", epoch); err != nil {
		t.Fatal(err)
	}
	if got := c.Gantt(epoch, epoch.Add(4*time.Hour), 4); strings.Contains(got, "h2 |....|\n    volumes") {
		t.Fatalf("a host without volumes has a volume line:\n%s", got)
	}
}

func TestVolumeCopyTime(t *testing.T) {
	mib := int64(model.MiB)
	c := mustCal(t, []Host{
		{Name: "fast", Capacity: model.Resources{Disk: 10 * gi}, StageRate: 100 * mib},
		{Name: "slow", Capacity: model.Resources{Disk: 10 * gi}, StageRate: 50 * mib},
		{Name: "unknown", Capacity: model.Resources{Disk: 10 * gi}},
	}, DefaultPolicy())
	if err := c.AddVolume(Volume{Name: "p/a", Size: gi, Host: "fast"}, epoch); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		vol, to string
		want    time.Duration
	}{
		{"p/a", "slow", 21 * time.Second}, // 1024Mi at 50Mi/s: 20.48s, rounded up
		{"p/a", "fast", 11 * time.Second}, // 10.24s
		{"p/a", "unknown", 0},
		{"p/a", "nowhere", 0},
		{"p/none", "slow", 0},
	} {
		if got := c.VolumeCopyTime(tc.vol, tc.to); got != tc.want {
			t.Errorf("VolumeCopyTime(%s, %s) = %v, want %v", tc.vol, tc.to, got, tc.want)
		}
	}
}
