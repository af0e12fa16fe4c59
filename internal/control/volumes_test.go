package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// volEnv is a controller with hosts h1 (100Gi disk) and h2 (100Gi) that
// serve volumes, and h3 that does not.
func volEnv(t *testing.T) *Controller {
	t.Helper()
	ctl, _ := volEnvClock(t)
	return ctl
}

// volEnvClock is volEnv with its clock.
func volEnvClock(t *testing.T) (*Controller, *testClock) {
	t.Helper()
	ctl, clk := hostsEnv(t, "h1", "h2", "h3")
	ctx := context.Background()
	for i, n := range []string{"h1", "h2"} {
		if err := ctl.SetStorageHost(ctx, n, api.StorageHost{Address: fmt.Sprintf("10.0.0.%d:10809", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	return ctl, clk
}

// errText is an error's message with its field errors.
func errText(err error) string {
	if err == nil {
		return ""
	}
	out := err.Error()
	var e *Error
	if errors.As(err, &e) {
		for _, f := range e.Fields {
			out += "; " + f.Field + ": " + f.Reason
		}
	}
	return out
}

func errKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// ready has the volume's storage host report it ready.
func ready(t *testing.T, ctl *Controller, v model.Volume) model.Volume {
	t.Helper()
	nv, err := ctl.VolumeReport(context.Background(), v.Node, v.Project, v.Name, api.VolumeReport{ID: v.ID, State: model.VolumeReady, Size: v.Size,
		Endpoint: &model.VolumeEndpoint{Host: "10.0.0.1", Port: 10809, Export: v.ID}})
	if err != nil {
		t.Fatal(err)
	}
	return nv
}

func TestPickStorageHost(t *testing.T) {
	hosts := []storageHost{{Name: "a", Free: 10 * model.GiB}, {Name: "b", Free: 30 * model.GiB}, {Name: "c", Free: 30 * model.GiB}}
	for _, c := range []struct {
		hosts []storageHost
		size  model.ByteSize
		want  string
		got   string
		kind  Kind
		msg   string
	}{
		{hosts, model.GiB, "", "b", 0, ""}, // the most room, by name on a tie
		{hosts, 31 * model.GiB, "", "", KindConflict, "the most free is 30Gi on b"},
		{hosts, model.GiB, "a", "a", 0, ""},
		{hosts, 11 * model.GiB, "a", "", KindConflict, "has 10Gi free"},
		{hosts, model.GiB, "zz", "", KindInvalid, "not a ready storage host"},
		{nil, model.GiB, "", "", KindConflict, "no storage host"},
	} {
		got, err := pickStorageHost(c.hosts, c.size, c.want)
		if c.kind == 0 {
			if err != nil || got != c.got {
				t.Errorf("%v want %q: got %q %v, want %q", c.size, c.want, got, err, c.got)
			}
			continue
		}
		if errKind(err) != c.kind || !strings.Contains(errText(err), c.msg) {
			t.Errorf("%v want %q: got %v, want kind %d with %q", c.size, c.want, err, c.kind, c.msg)
		}
	}
}

// The storage host is the ready storage host with the most free disk
// (capacity less the volumes there); h3 serves no volumes and is never
// chosen; an admin may name one, a user may not.
func TestCreateVolumeChoosesHostWithMostRoom(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	ctl.cfg.Limits.VolumeBytes = model.TiB
	a, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: 40 * model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "b", Size: 10 * model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "c", Size: 20 * model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	// h1 and h2 tie at first (h1 by name); then h2 has 100Gi free against
	// h1's 60Gi; then h2 has 90Gi.
	if a.Node != "h1" || b.Node != "h2" || c.Node != "h2" {
		t.Fatalf("hosts %s %s %s, want h1 h2 h2", a.Node, b.Node, c.Node)
	}
	if a.State != model.VolumeCreating || a.ID == "" || len(model.VolumeSerial(a.ID)) > 20 {
		t.Fatalf("new volume %+v", a)
	}
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "d", Size: model.GiB, Node: "h1"}, false); errKind(err) != KindInvalid || !strings.Contains(errText(err), "node") {
		t.Fatalf("a user naming a host: %v", err)
	}
	d, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "d", Size: model.GiB, Node: "h1"}, true)
	if err != nil || d.Node != "h1" {
		t.Fatalf("an admin naming h1: %+v %v", d, err)
	}
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "e", Size: model.GiB, Node: "h3"}, true); errKind(err) != KindInvalid {
		t.Fatalf("h3 serves no volumes: %v", err)
	}
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "f", Size: 95 * model.GiB}, false); errKind(err) != KindConflict || !strings.Contains(errText(err), "no room for 95Gi: the most disk free is 70Gi on host h2") {
		t.Fatalf("too big for any host: %v", err)
	}
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: model.GiB}, false); errKind(err) != KindInvalid || !strings.Contains(errText(err), "already exists") {
		t.Fatalf("a second a: %v", err)
	}
}

func TestCreateVolumeValidation(t *testing.T) {
	ctl := volEnv(t)
	for _, c := range []struct {
		req   api.VolumesPost
		field string
	}{
		{api.VolumesPost{Name: "Bad", Size: model.GiB}, "name"},
		{api.VolumesPost{Name: "ok", Size: 1}, "size"},
		{api.VolumesPost{Name: "ok", Size: model.GiB + 1}, "size"},
		{api.VolumesPost{Name: "ok", Size: 20 * model.TiB}, "size"},
		{api.VolumesPost{Name: "ok", Size: model.GiB, IOPS: -1}, "iops"},
		{api.VolumesPost{Name: "ok", Size: model.GiB, BPS: -5}, "bps"},
	} {
		_, err := ctl.CreateVolume(context.Background(), "p", c.req, true)
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindInvalid || len(e.Fields) == 0 || e.Fields[0].Field != c.field {
			t.Errorf("%+v: got %v, want a refusal naming %s", c.req, err, c.field)
		}
	}
}

// The quota counts every volume of the project, snapshots and resizes
// included; the refusal names used, asked and limit. Another project has
// its own quota.
func TestVolumeQuota(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	ctl.cfg.Limits.VolumeBytes = 10 * model.GiB
	v, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: 6 * model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "b", Size: 5 * model.GiB}, false)
	if errKind(err) != KindLimit || !strings.Contains(errText(err), "6Gi used, 5Gi asked, limit 10Gi") {
		t.Fatalf("over quota: %v", err)
	}
	if _, err := ctl.CreateVolume(ctx, "q", api.VolumesPost{Name: "b", Size: 5 * model.GiB}, false); err != nil {
		t.Fatalf("another project's quota: %v", err)
	}
	v = ready(t, ctl, v)
	if _, err := ctl.SnapshotVolume(ctx, "p", "a", "a2"); errKind(err) != KindLimit {
		t.Fatalf("a snapshot over quota: %v", err)
	}
	if _, err := ctl.ResizeVolume(ctx, "p", "a", 11*model.GiB); errKind(err) != KindLimit || !strings.Contains(errText(err), "5Gi asked") {
		t.Fatalf("a resize over quota: %v", err)
	}
	if _, err := ctl.ResizeVolume(ctx, "p", "a", 10*model.GiB); err != nil {
		t.Fatalf("a resize to the quota: %v", err)
	}
	// A project's own limit wins over the site's.
	if err := ctl.EnsureProject(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.SetProjectLimits(ctx, "p", Limits{VolumeBytes: 20 * model.GiB}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "b", Size: 5 * model.GiB}, false); err != nil {
		t.Fatalf("within the project's own limit: %v", err)
	}
	if _, err := ctl.SetProjectLimits(ctx, "p", Limits{VolumeBytes: -1}); errKind(err) != KindInvalid {
		t.Fatalf("a negative limit: %v", err)
	}
}

func TestResizeAndSnapshotRules(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	v, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: 2 * model.GiB, IOPS: 100}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.ResizeVolume(ctx, "p", "a", 3*model.GiB); errKind(err) != KindConflict {
		t.Fatalf("resize while creating: %v", err)
	}
	if _, err := ctl.SnapshotVolume(ctx, "p", "a", "s"); errKind(err) != KindConflict {
		t.Fatalf("snapshot while creating: %v", err)
	}
	v = ready(t, ctl, v)
	if _, err := ctl.ResizeVolume(ctx, "p", "a", model.GiB); errKind(err) != KindInvalid || !strings.Contains(errText(err), "only grow") {
		t.Fatalf("shrink: %v", err)
	}
	r, err := ctl.ResizeVolume(ctx, "p", "a", 3*model.GiB)
	if err != nil || r.State != model.VolumeResizing || r.Size != 3*model.GiB {
		t.Fatalf("grow: %+v %v", r, err)
	}
	// A report from before the growth keeps it resizing; the grown one
	// makes it ready.
	r, err = ctl.VolumeReport(ctx, v.Node, "p", "a", api.VolumeReport{ID: v.ID, State: model.VolumeReady, Size: 2 * model.GiB, Endpoint: v.Endpoint})
	if err != nil || r.State != model.VolumeResizing {
		t.Fatalf("stale report: %+v %v", r, err)
	}
	r, err = ctl.VolumeReport(ctx, v.Node, "p", "a", api.VolumeReport{ID: v.ID, State: model.VolumeReady, Size: 3 * model.GiB, Endpoint: v.Endpoint})
	if err != nil || r.State != model.VolumeReady {
		t.Fatalf("grown: %+v %v", r, err)
	}
	s, err := ctl.SnapshotVolume(ctx, "p", "a", "s")
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != v.Node || s.Size != 3*model.GiB || s.SnapshotOf != "a" || s.IOPS != 100 || s.State != model.VolumeCreating {
		t.Fatalf("snapshot %+v", s)
	}
	if _, err := ctl.SnapshotVolume(ctx, "p", "a", "s"); errKind(err) != KindInvalid {
		t.Fatalf("snapshot to an existing name: %v", err)
	}
	// The source cannot go while it is being copied.
	if _, err := ctl.DeleteVolume(ctx, "p", "a"); errKind(err) != KindConflict || !strings.Contains(errText(err), "snapshot s") {
		t.Fatalf("delete the source of a snapshot being made: %v", err)
	}
	// The storage host is told to copy it from the source.
	as, err := ctl.Assignments(ctx, v.Node, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var from string
	for _, x := range as.Volumes {
		if x.Name == "s" {
			from = x.From
		}
	}
	if from != v.ID {
		t.Fatalf("snapshot's source in the assignments: %q, want %q (%+v)", from, v.ID, as.Volumes)
	}
}

// Attachments: a volume must exist in the project and be ready; a
// writable attachment is exclusive, read-only ones share; a volume is
// not deleted while a workspace not being deleted attaches it.
func TestAttachExclusiveAndDeleteWhileAttached(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	v, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "data", Size: model.GiB, IOPS: 50, BPS: 1 << 20}, false)
	if err != nil {
		t.Fatal(err)
	}
	wsSpec := func(name, vol string, ro bool) model.WorkspaceSpec {
		y := fmt.Sprintf("name: %s\nimage: img\nquantum: {vcpus: 1, cpu: 0.1, memory: 128Mi, disk: 1Gi}\nduration: 2h\nvolumes: [{name: %s, mount: /data, read_only: %v}]\n", name, vol, ro)
		sp, err := spec.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", wsSpec("w0", "data", false)); errKind(err) != KindConflict || !strings.Contains(errText(err), "creating") {
		t.Fatalf("attach a volume still creating: %v", err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", wsSpec("w0", "nope", false)); errKind(err) != KindInvalid || !strings.Contains(errText(err), "volumes[0].name") {
		t.Fatalf("attach a volume that does not exist: %v", err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "q", wsSpec("w0", "data", true)); errKind(err) != KindInvalid {
		t.Fatalf("attach another project's volume: %v", err)
	}
	ready(t, ctl, v)
	w1, err := ctl.CreateWorkspace(ctx, "p", wsSpec("w1", "data", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", wsSpec("w2", "data", false)); errKind(err) != KindConflict || !strings.Contains(errText(err), "workspace w1") {
		t.Fatalf("a second writer: %v", err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", wsSpec("r1", "data", true)); errKind(err) != KindConflict || !strings.Contains(errText(err), "workspace w1") {
		t.Fatalf("a reader beside the writer: %v", err)
	}
	got, err := ctl.Volume(ctx, "p", "data")
	if err != nil || strings.Join(got.Attached, ",") != "w1" {
		t.Fatalf("attached: %v %v", got.Attached, err)
	}
	// The workspace's host learns where the volume is served.
	as, err := ctl.Assignments(ctx, w1.Status.Node, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as.VolumeEndpoints) != 1 || as.VolumeEndpoints[0].ID != v.ID || as.VolumeEndpoints[0].Port != 10809 || as.VolumeEndpoints[0].IOPS != 50 || as.VolumeEndpoints[0].BPS != 1<<20 {
		t.Fatalf("endpoints on %s: %+v", w1.Status.Node, as.VolumeEndpoints)
	}
	_, err = ctl.DeleteVolume(ctx, "p", "data")
	if errKind(err) != KindConflict || !strings.Contains(errText(err), "w1") {
		t.Fatalf("delete while attached: %v", err)
	}
	if _, err := ctl.DeleteWorkspace(ctx, "p", "w1"); err != nil {
		t.Fatal(err)
	}
	// Readers only: many share it, and a writer is refused beside them.
	for _, n := range []string{"r1", "r2"} {
		if _, err := ctl.CreateWorkspace(ctx, "p", wsSpec(n, "data", true)); err != nil {
			t.Fatalf("reader %s: %v", n, err)
		}
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", wsSpec("w3", "data", false)); errKind(err) != KindConflict || !strings.Contains(errText(err), "read-only") {
		t.Fatalf("a writer beside readers: %v", err)
	}
	got, err = ctl.Volume(ctx, "p", "data")
	// (w1 is listed until its deletion is done.)
	if err != nil || strings.Join(got.Attached, ",") != "r1,r2,w1" {
		t.Fatalf("attached: %v %v", got.Attached, err)
	}
	_, err = ctl.DeleteVolume(ctx, "p", "data")
	if errKind(err) != KindConflict || !strings.Contains(errText(err), "r1, r2") {
		t.Fatalf("delete while attached: %v", err)
	}
	for _, n := range []string{"r1", "r2"} {
		if _, err := ctl.DeleteWorkspace(ctx, "p", n); err != nil {
			t.Fatal(err)
		}
	}
	// Being deleted, they no longer hold it: a new writer, and then the
	// delete, go through.
	d, err := ctl.DeleteVolume(ctx, "p", "data")
	if err != nil || d.State != model.VolumeDeleting {
		t.Fatalf("delete once its workspaces are being deleted: %+v %v", d, err)
	}
}

// Reports: only the volume's host, on its current ID; ready needs an
// endpoint; failed keeps the reason; deleted removes the record of a
// volume being deleted only.
func TestVolumeReports(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	v, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	ep := &model.VolumeEndpoint{Host: "10.0.0.1", Port: 10809, Export: v.ID}
	other := "h2"
	if v.Node == "h2" {
		other = "h1"
	}
	for _, c := range []struct {
		name string
		node string
		rep  api.VolumeReport
		kind Kind
	}{
		{"another host", other, api.VolumeReport{ID: v.ID, State: model.VolumeReady, Endpoint: ep}, KindGone},
		{"an earlier volume", v.Node, api.VolumeReport{ID: "vold", State: model.VolumeReady, Endpoint: &model.VolumeEndpoint{Host: "10.0.0.1", Port: 1, Export: "vold"}}, KindGone},
		{"ready without endpoint", v.Node, api.VolumeReport{ID: v.ID, State: model.VolumeReady}, KindInvalid},
		{"endpoint of another export", v.Node, api.VolumeReport{ID: v.ID, State: model.VolumeReady, Endpoint: &model.VolumeEndpoint{Host: "10.0.0.1", Port: 1, Export: "x"}}, KindInvalid},
		{"unspecified host", v.Node, api.VolumeReport{ID: v.ID, State: model.VolumeReady, Endpoint: &model.VolumeEndpoint{Host: "0.0.0.0", Port: 1, Export: v.ID}}, KindInvalid},
		{"failed without reason", v.Node, api.VolumeReport{ID: v.ID, State: model.VolumeFailed}, KindInvalid},
		{"unknown state", v.Node, api.VolumeReport{ID: v.ID, State: "creating"}, KindInvalid},
		{"deleted while not deleting", v.Node, api.VolumeReport{ID: v.ID, Deleted: true}, 0},
	} {
		_, err := ctl.VolumeReport(ctx, c.node, "p", "a", c.rep)
		if errKind(err) != c.kind || (c.kind == 0) != (err == nil) {
			t.Errorf("%s: got %v, want kind %d", c.name, err, c.kind)
		}
	}
	if got, _ := ctl.Volume(ctx, "p", "a"); got.State != model.VolumeCreating {
		t.Fatalf("after refused reports: %s", got.State)
	}
	f, err := ctl.VolumeReport(ctx, v.Node, "p", "a", api.VolumeReport{ID: v.ID, State: model.VolumeFailed, Reason: "disk full"})
	if err != nil || f.State != model.VolumeFailed || f.Reason != "disk full" {
		t.Fatalf("failed: %+v %v", f, err)
	}
	if _, err := ctl.DeleteVolume(ctx, "p", "a"); err != nil {
		t.Fatal(err)
	}
	as, err := ctl.Assignments(ctx, v.Node, 0, 0)
	if err != nil || len(as.Volumes) != 1 || as.Volumes[0].Want != api.VolumeWantDelete {
		t.Fatalf("assignments of a volume being deleted: %+v %v", as.Volumes, err)
	}
	// A late ready does not bring it back.
	if d, err := ctl.VolumeReport(ctx, v.Node, "p", "a", api.VolumeReport{ID: v.ID, State: model.VolumeReady, Endpoint: ep}); err != nil || d.State != model.VolumeDeleting {
		t.Fatalf("ready while deleting: %+v %v", d, err)
	}
	if _, err := ctl.VolumeReport(ctx, v.Node, "p", "a", api.VolumeReport{ID: v.ID, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Volume(ctx, "p", "a"); errKind(err) != KindNotFound {
		t.Fatalf("after deleted: %v", err)
	}
	if _, err := ctl.VolumeReport(ctx, v.Node, "p", "a", api.VolumeReport{ID: v.ID, Deleted: true}); err != nil {
		t.Fatalf("deleted again: %v", err)
	}
}

// A storage host's long poll wakes when one of its volumes changes.
func TestVolumeWakesStorageHost(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	as, err := ctl.Assignments(ctx, "h1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan api.Assignments, 1)
	// The calendar first (its load writes the store, which would end the
	// poll at once: a revision the watch cannot tell about).
	ctl.mu.Lock()
	_, err = ctl.calendarLocked(ctx)
	ctl.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if as, err = ctl.Assignments(ctx, "h1", 0, 0); err != nil {
		t.Fatal(err)
	}
	go func() {
		a, _ := ctl.Assignments(ctx, "h1", as.Revision, 20e9)
		done <- a
	}()
	blocked(t, ctl, "h1")
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: model.GiB, Node: "h1"}, true); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if len(a.Volumes) != 1 || a.Volumes[0].Name != "a" || a.Volumes[0].Want != api.VolumeWantServe || a.Volumes[0].Size != model.GiB {
		t.Fatalf("woken with %+v", a.Volumes)
	}
}

// The calendar holds the volumes' disk: after a volume is placed, and
// again once the calendar is restored from the store (volumes are stored
// apart), its host's disk is counted, and the chart names it.
func TestVolumesInCalendar(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	ctl.cfg.Limits.VolumeBytes = model.TiB
	v, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "a", Size: 40 * model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, restored := range []bool{false, true} {
		ctl.mu.Lock()
		if restored {
			ctl.cal = nil
		}
		c, err := ctl.calendarLocked(ctx)
		if err != nil {
			ctl.mu.Unlock()
			t.Fatal(err)
		}
		vs := c.Volumes()
		chart := c.Gantt(ctl.now(), ctl.now().Add(time.Hour), 40)
		ctl.mu.Unlock()
		if len(vs) != 1 || vs[0].Name != "p/a" || vs[0].Host != v.Node || vs[0].Size != 40*model.GiB {
			t.Fatalf("restored %v: calendar volumes %+v, want p/a 40Gi on %s", restored, vs, v.Node)
		}
		if !strings.Contains(chart, "p/a") {
			t.Fatalf("restored %v: the chart does not show the volume:\n%s", restored, chart)
		}
	}
}
