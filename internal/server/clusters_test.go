package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"vgrid/internal/client"
	"vgrid/internal/spec"
)

const apiCluster = `name: lab
duration: 1h
roles:
  - name: head
    image: vgrid-guest
    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}
  - name: worker
    count: 2
    image: vgrid-guest
    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}
`

// Clusters through the API: created whole in the caller's project, shown
// with each member, invisible and untouchable from another project,
// refused with the field named when bad or whole when too big; exported
// back to a spec that creates the same cluster.
func TestClustersAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st, err := e.admin.CreateCluster(ctx, []byte(apiCluster))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Details) != 3 || st.Details[0].Name != "lab-head-0" || st.Details[2].Name != "lab-worker-1" ||
		st.Details[1].Host != "n1" || len(st.Details[1].Addresses) != 1 || st.Networks[0] != "lab" {
		t.Fatalf("created: %+v", st)
	}
	if list, err := e.admin.Clusters(ctx); err != nil || len(list) != 1 || list[0].Spec.Name != "lab" {
		t.Fatalf("list: %+v %v", list, err)
	}
	// A member is the cluster's: not stopped or deleted alone.
	_, err = e.admin.StopWorkspace(ctx, "lab-worker-0")
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || !strings.Contains(ae.Error(), "vgrid cluster stop lab") {
		t.Errorf("stop a member: %v", err)
	}

	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	b := e.admin.WithToken(other.Token)
	if list, err := b.Clusters(ctx); err != nil || len(list) != 0 {
		t.Fatalf("other project lists %v (%v)", list, err)
	}
	for what, err := range map[string]error{
		"get":    func() error { _, err := b.GetCluster(ctx, "lab"); return err }(),
		"stop":   func() error { _, err := b.StopCluster(ctx, "lab"); return err }(),
		"delete": func() error { _, err := b.DeleteCluster(ctx, "lab"); return err }(),
		"scale":  func() error { _, err := b.ScaleCluster(ctx, "lab", map[string]int{"worker": 1}); return err }(),
		"export": func() error { _, err := b.ExportCluster(ctx, "lab"); return err }(),
	} {
		if !client.IsNotFound(err) {
			t.Errorf("%s from another project: %v, want 404", what, err)
		}
	}

	// Export round-trips: the spec parses to the same cluster.
	y, err := e.admin.ExportCluster(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	back, err := spec.ParseCluster(y)
	if err != nil {
		t.Fatalf("exported spec does not parse: %v\n%s", err, y)
	}
	orig, _ := spec.ParseCluster([]byte(apiCluster))
	ob, _ := spec.ExportCluster(orig)
	bb, _ := spec.ExportCluster(back)
	if string(ob) != string(bb) {
		t.Fatalf("export differs:\n%s\nwant\n%s", bb, ob)
	}

	// Bad input: the field is named; too big: refused whole.
	_, err = e.admin.CreateCluster(ctx, []byte(strings.Replace(apiCluster, "count: 2", "count: -1", 1)))
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Error(), "roles[1].count") {
		t.Errorf("negative count: %v", err)
	}
	big := strings.NewReplacer("name: lab", "name: big", "count: 2", "count: 40").Replace(apiCluster)
	_, err = e.admin.CreateCluster(ctx, []byte(big))
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || !strings.Contains(ae.Error(), "members") {
		t.Errorf("too big: %v, want 409 naming the members", err)
	}
	if _, err := e.admin.GetWorkspace(ctx, "big-head-0"); !client.IsNotFound(err) {
		t.Errorf("a member of the refused cluster exists: %v", err)
	}
	_, err = e.admin.ScaleCluster(ctx, "lab", map[string]int{"db": 2})
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Error(), "db") {
		t.Errorf("scale a missing role: %v", err)
	}
	err = e.admin.Do(ctx, "POST", "/clusters/lab/scale", map[string]any{"counts": map[string]int{"worker": 1}, "x": 1}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest {
		t.Errorf("unknown field in scale: %v", err)
	}
	if _, err := e.admin.DeleteCluster(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
}
