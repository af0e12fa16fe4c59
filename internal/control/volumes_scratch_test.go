package control

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

func TestPlaceScratch(t *testing.T) {
	hosts := func() []storageHost {
		return []storageHost{{Name: "a", Free: 10 * model.GiB}, {Name: "b", Free: 4 * model.GiB}}
	}
	req := func(member string, size model.ByteSize) scratchReq {
		return scratchReq{Member: member, Name: member + "-scratch", Size: size}
	}
	for _, c := range []struct {
		name   string
		hosts  []storageHost
		reqs   []scratchReq
		prefer map[string]string
		want   string // hosts joined, or the error's text
		fails  bool
	}{
		{"the most room without preferences", hosts(), []scratchReq{req("m0", model.GiB), req("m1", model.GiB)}, nil, "a,a", false},
		{"room taken by the earlier ones", hosts(), []scratchReq{req("m0", 7*model.GiB), req("m1", model.GiB)}, nil, "a,b", false},
		{"the member's own host", hosts(), []scratchReq{req("m0", model.GiB), req("m1", model.GiB)}, map[string]string{"m0": "b", "m1": "a"}, "b,a", false},
		{"own host without room", hosts(), []scratchReq{req("m0", 3*model.GiB), req("m1", 3*model.GiB)}, map[string]string{"m0": "b", "m1": "b"}, "b,a", false},
		{"own host serves no volumes", hosts(), []scratchReq{req("m0", model.GiB)}, map[string]string{"m0": "h3"}, "a", false},
		{"no room anywhere", hosts(), []scratchReq{req("m0", 8*model.GiB), req("m1", 5*model.GiB)}, nil, "scratch volume m1-scratch of member m1: no storage host has room for 5Gi", true},
		{"no storage host", nil, []scratchReq{req("m0", model.GiB)}, nil, "no storage host", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := placeScratch(c.hosts, c.reqs, c.prefer)
			if c.fails {
				if err == nil || !strings.Contains(err.Error(), c.want) || errKind(err) != KindConflict {
					t.Fatalf("got %v %v, want a conflict saying %q", got, err, c.want)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != c.want {
				t.Fatalf("got %v %v, want %s", got, err, c.want)
			}
		})
	}
}

// scratchCluster is a cluster c of role w (count members) with a 1Gi
// scratch volume each at /scratch, each member too big to share a host,
// and a role r of rcount members reading volume data.
func scratchCluster(t *testing.T, name string, count, rcount int, cpu string) model.ClusterSpec {
	t.Helper()
	y := fmt.Sprintf(`name: %s
duration: 2h
roles:
  - name: w
    count: %d
    image: img
    quantum: {vcpus: 2, cpu: %s, memory: 512Mi, disk: 1Gi}
    scratch: {size: 1Gi, mount: /scratch}
  - name: r
    count: %d
    image: img
    quantum: {vcpus: 1, cpu: 0.1, memory: 128Mi, disk: 1Gi}
    volumes: [{name: data, mount: /data, read_only: true}]
`, name, count, cpu, rcount)
	cs, err := spec.ParseCluster([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// scratchOf reads member's scratch volume.
func scratchOf(t *testing.T, ctl *Controller, member string) model.Volume {
	t.Helper()
	v, err := ctl.Volume(context.Background(), "p", member+"-scratch")
	if err != nil {
		t.Fatalf("%s's scratch volume: %v", member, err)
	}
	return v
}

// A cluster's role with scratch gets a writable volume per member, made
// with it, in the quota, on the member's host when that host serves
// volumes, attached to that member only, not deleted while it exists, and
// deleted with it; its host is woken when the volume is ready.
func TestClusterScratchVolumes(t *testing.T) {
	ctl := volEnv(t) // h1, h2 serve volumes; h3 does not
	ctx := context.Background()
	ctl.cfg.Limits.VolumeBytes = 4 * model.GiB

	// Over the quota: refused with the numbers, nothing stored.
	_, err := ctl.CreateCluster(ctx, "p", scratchCluster(t, "big", 5, 0, "0.1"))
	if errKind(err) != KindLimit || !strings.Contains(errText(err), "5 scratch volumes (5Gi)") || !strings.Contains(errText(err), "0 used, 5Gi asked, limit 4Gi") {
		t.Fatalf("over the quota: %v", err)
	}
	for _, k := range []string{"big-w-0", "big-w-0-scratch"} {
		if _, err := ctl.Workspace(ctx, "p", k); !isNotFound(err) {
			t.Fatalf("workspace %s of a refused cluster: %v", k, err)
		}
		if _, err := ctl.Volume(ctx, "p", k); !isNotFound(err) {
			t.Fatalf("volume %s of a refused cluster: %v", k, err)
		}
	}
	// A volume that has a member's scratch name: refused.
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "x-w-0-scratch", Size: 16 * model.MiB}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateCluster(ctx, "p", scratchCluster(t, "x", 1, 0, "0.1")); errKind(err) != KindConflict || !strings.Contains(errText(err), `"x-w-0-scratch" exists`) {
		t.Fatalf("a scratch name taken: %v", err)
	}
	if _, err := ctl.DeleteVolume(ctx, "p", "x-w-0-scratch"); err != nil {
		t.Fatal(err)
	}

	// Three members, one per host (1.5 cores each of 2).
	st, err := ctl.CreateCluster(ctx, "p", scratchCluster(t, "c", 3, 0, "1.5"))
	if err != nil {
		t.Fatal(err)
	}
	var onH3 model.Workspace
	for _, name := range st.Members {
		w, err := ctl.Workspace(ctx, "p", name)
		if err != nil {
			t.Fatal(err)
		}
		v := scratchOf(t, ctl, name)
		if v.ScratchOf != name || v.Size != model.GiB || v.State != model.VolumeCreating || strings.Join(v.Attached, ",") != name {
			t.Fatalf("%s's scratch volume: %+v", name, v)
		}
		want := model.VolumeMount{Name: name + "-scratch", Mount: "/scratch"}
		if len(w.Spec.Volumes) != 1 || w.Spec.Volumes[0] != want {
			t.Fatalf("%s attaches %+v, want %+v writable", name, w.Spec.Volumes, want)
		}
		switch w.Status.Node {
		case "h1", "h2":
			if v.Node != w.Status.Node {
				t.Fatalf("%s on %s has its scratch volume on %s, want its own host", name, w.Status.Node, v.Node)
			}
		case "h3":
			if v.Node != "h1" && v.Node != "h2" {
				t.Fatalf("%s on h3 has its scratch volume on %s, want a storage host", name, v.Node)
			}
			onH3 = w
		default:
			t.Fatalf("%s not placed: %+v", name, w.Status)
		}
	}
	if onH3.ID == "" {
		t.Fatal("no member on h3")
	}
	// 3Gi of 4Gi used: a 2Gi volume does not fit any more.
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "more", Size: 2 * model.GiB}, false); errKind(err) != KindLimit || !strings.Contains(errText(err), "3Gi used") {
		t.Fatalf("the scratch volumes in the quota: %v", err)
	}

	// The member on h3 waits for its volume (no endpoint in h3's
	// assignments), and h3's long poll wakes when the storage host
	// reports it ready.
	as, err := ctl.Assignments(ctx, "h3", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as.VolumeEndpoints) != 0 {
		t.Fatalf("h3 has endpoints before the volume is ready: %+v", as.VolumeEndpoints)
	}
	done := make(chan api.Assignments, 1)
	go func() {
		a, _ := ctl.Assignments(ctx, "h3", as.Revision, 20*time.Second)
		done <- a
	}()
	time.Sleep(50 * time.Millisecond) // the poll waits
	sv := ready(t, ctl, scratchOf(t, ctl, onH3.Spec.Name))
	select {
	case a := <-done:
		if len(a.VolumeEndpoints) != 1 || a.VolumeEndpoints[0].ID != sv.ID || a.VolumeEndpoints[0].Node != sv.Node {
			t.Fatalf("h3 woken with endpoints %+v, want %s's", a.VolumeEndpoints, sv.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("h3's long poll was not woken by its member's scratch volume becoming ready")
	}

	// Attached to its member only; not deleted while the member exists.
	ws := fmt.Sprintf("name: other\nimage: img\nquantum: {vcpus: 1, cpu: 0.1, memory: 128Mi, disk: 1Gi}\nduration: 1h\nvolumes: [{name: %s, mount: /s, read_only: true}]\n", sv.Name)
	sp, err := spec.Parse([]byte(ws))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", sp); errKind(err) != KindConflict || !strings.Contains(errText(err), "scratch volume of cluster member "+onH3.Spec.Name) {
		t.Fatalf("another workspace attaching a scratch volume: %v", err)
	}
	if _, err := ctl.DeleteVolume(ctx, "p", sv.Name); errKind(err) != KindConflict || !strings.Contains(errText(err), "deleted with that member") {
		t.Fatalf("delete a member's scratch volume: %v", err)
	}

	// Deleted with the cluster: each as its member's record goes.
	if _, err := ctl.DeleteCluster(ctx, "p", "c"); err != nil {
		t.Fatal(err)
	}
	for _, name := range st.Members {
		if v := scratchOf(t, ctl, name); v.State == model.VolumeDeleting {
			t.Fatalf("%s's scratch volume deleting before the member was torn down", name)
		}
		w, err := ctl.Workspace(ctx, "p", name)
		if err != nil {
			t.Fatal(err)
		}
		if err := ctl.Forgotten(ctx, w.Status.Node, "p", name, w.ID); err != nil {
			t.Fatal(err)
		}
		if v := scratchOf(t, ctl, name); v.State != model.VolumeDeleting {
			t.Fatalf("%s's scratch volume after the member went: %s", name, v.State)
		}
	}
	// Its storage host is told to remove it.
	a, err := ctl.Assignments(ctx, sv.Node, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range a.Volumes {
		if x.Name == sv.Name {
			found = x.Want == api.VolumeWantDelete
		}
	}
	if !found {
		t.Fatalf("%s's assignments do not delete %s: %+v", sv.Node, sv.Name, a.Volumes)
	}
}

// A scale applies the volume checks of a create to the members it adds,
// makes the new members' scratch volumes (in the quota) and deletes those
// of the members it removes.
func TestScaleClusterVolumes(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	ctl.cfg.Limits.VolumeBytes = 5 * model.GiB
	data, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "data", Size: model.GiB}, false)
	if err != nil {
		t.Fatal(err)
	}
	ready(t, ctl, data)
	st, err := ctl.CreateCluster(ctx, "p", scratchCluster(t, "s", 1, 0, "0.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Details {
		running(t, ctl, model.Workspace{Project: "p", Spec: model.WorkspaceSpec{Name: w.Name}}, ctl.now())
	}
	// Another workspace writes data: a role that reads it cannot grow.
	y := "name: writer\nimage: img\nquantum: {vcpus: 1, cpu: 0.1, memory: 128Mi, disk: 1Gi}\nduration: 1h\nvolumes: [{name: data, mount: /d}]\n"
	sp, err := spec.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "p", sp); err != nil {
		t.Fatal(err)
	}
	// A name taken for the new member's scratch volume.
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "s-w-2-scratch", Size: 16 * model.MiB}, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		counts map[string]int
		kind   Kind
		says   string
	}{
		{"a reader beside a writer", map[string]int{"r": 1}, KindConflict, "attached writable to workspace writer"},
		{"a scratch name taken", map[string]int{"w": 3}, KindConflict, `"s-w-2-scratch" exists`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ctl.ScaleCluster(ctx, "p", "s", c.counts)
			if errKind(err) != c.kind || !strings.Contains(errText(err), c.says) {
				t.Fatalf("got %v, want kind %d saying %q", err, c.kind, c.says)
			}
			for _, m := range []string{"s-r-0", "s-w-1"} {
				if _, err := ctl.Workspace(ctx, "p", m); !isNotFound(err) {
					t.Fatalf("member %s of a refused scale: %v", m, err)
				}
			}
			if _, err := ctl.Volume(ctx, "p", "s-w-1-scratch"); !isNotFound(err) {
				t.Fatalf("scratch volume of a refused scale: %v", err)
			}
		})
	}
	// The name freed (deleted by its storage host).
	taken, err := ctl.DeleteVolume(ctx, "p", "s-w-2-scratch")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.VolumeReport(ctx, taken.Node, "p", taken.Name, api.VolumeReport{ID: taken.ID, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	// Quota: data's 1Gi and s-w-0's used of 5Gi; one more worker's
	// volume fits, then four more do not.
	if _, err := ctl.ScaleCluster(ctx, "p", "s", map[string]int{"w": 2}); err != nil {
		t.Fatalf("scale up by one: %v", err)
	}
	v := scratchOf(t, ctl, "s-w-1")
	w1, err := ctl.Workspace(ctx, "p", "s-w-1")
	if err != nil {
		t.Fatal(err)
	}
	if v.ScratchOf != "s-w-1" || len(w1.Spec.Volumes) != 1 || w1.Spec.Volumes[0].Name != "s-w-1-scratch" || w1.Spec.Volumes[0].ReadOnly {
		t.Fatalf("the new member and its scratch volume: %+v %+v", w1.Spec.Volumes, v)
	}
	if w1.Status.Node == "h1" || w1.Status.Node == "h2" {
		if v.Node != w1.Status.Node {
			t.Fatalf("s-w-1 on %s, its scratch volume on %s", w1.Status.Node, v.Node)
		}
	}
	_, err = ctl.ScaleCluster(ctx, "p", "s", map[string]int{"w": 6})
	if errKind(err) != KindLimit || !strings.Contains(errText(err), "4 scratch volumes (4Gi)") || !strings.Contains(errText(err), "3Gi used, 4Gi asked, limit 5Gi") {
		t.Fatalf("scale over the quota: %v", err)
	}
	// Scaled down: the removed member's scratch volume goes with it, the
	// others stay.
	if _, err := ctl.ScaleCluster(ctx, "p", "s", map[string]int{"w": 1}); err != nil {
		t.Fatal(err)
	}
	if got := scratchOf(t, ctl, "s-w-1"); got.State == model.VolumeDeleting {
		t.Fatal("s-w-1's scratch volume deleting before the member was torn down")
	}
	if _, err := ctl.DeleteVolume(ctx, "p", "s-w-1-scratch"); errKind(err) != KindConflict {
		t.Fatalf("delete the scratch volume of a member being deleted: %v", err)
	}
	if err := ctl.Forgotten(ctx, w1.Status.Node, "p", "s-w-1", w1.ID); err != nil {
		t.Fatal(err)
	}
	if got := scratchOf(t, ctl, "s-w-1"); got.State != model.VolumeDeleting {
		t.Fatalf("s-w-1's scratch volume after a scale down: %s", got.State)
	}
	if got := scratchOf(t, ctl, "s-w-0"); got.State != model.VolumeCreating {
		t.Fatalf("s-w-0's scratch volume after a scale down: %s", got.State)
	}
}

// A scratch volume whose member went without it (the control plane
// stopped between the two) is deleted when its cluster goes.
func TestSweepScratch(t *testing.T) {
	ctl := volEnv(t)
	ctx := context.Background()
	if _, err := ctl.CreateCluster(ctx, "p", scratchCluster(t, "c", 1, 0, "0.1")); err != nil {
		t.Fatal(err)
	}
	w, err := ctl.Workspace(ctx, "p", "c-w-0")
	if err != nil {
		t.Fatal(err)
	}
	// Only the member's record goes, as a crash would leave it.
	if err := ctl.store.Delete(ctx, wsKey("p", "c-w-0"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.DeleteVolume(ctx, "p", "c-w-0-scratch"); err != nil {
		t.Fatalf("a scratch volume without its member is the user's to delete: %v", err)
	}
	if v := scratchOf(t, ctl, "c-w-0"); v.State != model.VolumeDeleting || v.ID == "" || v.ScratchOf != w.Spec.Name {
		t.Fatalf("after its delete: %+v", v)
	}
	// Or it goes with the cluster.
	if _, err := ctl.CreateVolume(ctx, "p", api.VolumesPost{Name: "keep", Size: 16 * model.MiB}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateCluster(ctx, "p", scratchCluster(t, "d", 1, 0, "0.1")); err != nil {
		t.Fatal(err)
	}
	if err := ctl.store.Delete(ctx, wsKey("p", "d-w-0"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.DeleteCluster(ctx, "p", "d"); err != nil {
		t.Fatal(err)
	}
	if v := scratchOf(t, ctl, "d-w-0"); v.State != model.VolumeDeleting {
		t.Fatalf("a scratch volume whose member is gone, after its cluster: %s", v.State)
	}
	if v, err := ctl.Volume(ctx, "p", "keep"); err != nil || v.State == model.VolumeDeleting {
		t.Fatalf("a user's volume after the sweep: %+v %v", v, err)
	}
}
