package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// Volumes through the API: the storage host says where it serves them,
// a volume is made there and reported ready by that host only; another
// project sees none of it (404), and has its own names.
func TestVolumesAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.admin.CreateVolume(ctx, api.VolumesPost{Name: "data", Size: model.GiB}); apiErr(t, err).Status != http.StatusConflict {
		t.Fatalf("no storage host yet: %v, want 409", err)
	}
	if err := e.node.SetStorage(ctx, "n1", "0.0.0.0:10809"); apiErr(t, err).Status != http.StatusBadRequest {
		t.Fatalf("an unspecified storage address: %v, want 400", err)
	}
	if err := e.node.SetStorage(ctx, "n1", "10.0.0.1:10809"); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.SetStorage(ctx, "n1", "10.0.0.1:10809"); apiErr(t, err).Status != http.StatusForbidden {
		t.Fatalf("a user's token setting a storage host: %v, want 403", err)
	}
	v, err := e.admin.CreateVolume(ctx, api.VolumesPost{Name: "data", Size: model.GiB})
	if err != nil {
		t.Fatal(err)
	}
	if v.Node != "n1" || v.State != model.VolumeCreating || v.Project != "default" {
		t.Fatalf("created %+v", v)
	}
	as, err := e.node.Assignments(ctx, "n1", 0, 0)
	if err != nil || len(as.Volumes) != 1 || as.Volumes[0].ID != v.ID {
		t.Fatalf("storage host's assignments: %+v %v", as.Volumes, err)
	}
	ep := &model.VolumeEndpoint{Host: "10.0.0.1", Port: 10809, Export: v.ID}
	if err := e.admin.ReportVolume(ctx, "n1", "default", "data", api.VolumeReport{ID: v.ID, State: model.VolumeReady, Endpoint: ep}); apiErr(t, err).Status != http.StatusForbidden {
		t.Fatalf("a user reporting: %v, want 403", err)
	}
	if err := e.node.ReportVolume(ctx, "n1", "default", "data", api.VolumeReport{ID: v.ID, State: "ready"}); apiErr(t, err).Status != http.StatusBadRequest {
		t.Fatalf("ready without endpoint: %v, want 400", err)
	}
	if err := e.node.ReportVolume(ctx, "n1", "default", "data", api.VolumeReport{ID: v.ID, State: model.VolumeReady, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	got, err := e.admin.GetVolume(ctx, "data")
	if err != nil || got.State != model.VolumeReady || got.Endpoint == nil || *got.Endpoint != *ep {
		t.Fatalf("after ready: %+v %v", got, err)
	}

	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	b := e.admin.WithToken(other.Token)
	if list, err := b.Volumes(ctx); err != nil || len(list) != 0 {
		t.Fatalf("other project lists %v (%v), want none", list, err)
	}
	if _, err := b.GetVolume(ctx, "data"); !client.IsNotFound(err) {
		t.Errorf("get from another project: %v, want 404", err)
	}
	if _, err := b.DeleteVolume(ctx, "data"); !client.IsNotFound(err) {
		t.Errorf("delete from another project: %v, want 404", err)
	}
	if _, err := b.ResizeVolume(ctx, "data", 2*model.GiB); !client.IsNotFound(err) {
		t.Errorf("resize from another project: %v, want 404", err)
	}
	if _, err := b.SnapshotVolume(ctx, "data", "mine"); !client.IsNotFound(err) {
		t.Errorf("snapshot from another project: %v, want 404", err)
	}
	// A user of the other project may not pick the host; with its own
	// name it gets its own volume.
	if _, err := b.CreateVolume(ctx, api.VolumesPost{Name: "data", Size: model.GiB, Node: "n1"}); apiErr(t, err).Status != http.StatusBadRequest {
		t.Errorf("a user naming the host: %v, want 400", err)
	}
	if w, err := b.CreateVolume(ctx, api.VolumesPost{Name: "data", Size: model.GiB}); err != nil || w.ID == v.ID {
		t.Fatalf("same name in another project: %+v %v", w, err)
	}

	// A workspace attaching it: listed as attached; the volume cannot be
	// deleted meanwhile (409 naming it).
	spec := "name: w1\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 128Mi}\nduration: 1h\nvolumes:\n  - {name: data, mount: /data}\n"
	if _, err := e.admin.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	if got, err := e.admin.GetVolume(ctx, "data"); err != nil || strings.Join(got.Attached, ",") != "w1" {
		t.Fatalf("attached: %+v %v", got.Attached, err)
	}
	_, err = e.admin.DeleteVolume(ctx, "data")
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || !strings.Contains(ae.Error(), "w1") {
		t.Fatalf("delete while attached: %v", err)
	}
	bad := strings.Replace(spec, "/data", "/proc/x", 1)
	_, err = e.admin.CreateWorkspace(ctx, []byte(strings.Replace(bad, "w1", "w2", 1)))
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Error(), "volumes[0].mount") {
		t.Fatalf("mount under /proc: %v", err)
	}
	// Unknown fields are refused.
	err = e.admin.Do(ctx, "POST", "/volumes/data/resize", map[string]any{"size": "2Gi", "shrink": true}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Error(), "shrink") {
		t.Errorf("unknown field: %v", err)
	}
	r, err := e.admin.ResizeVolume(ctx, "data", 2*model.GiB)
	if err != nil || r.State != model.VolumeResizing {
		t.Fatalf("resize: %+v %v", r, err)
	}
}
