package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/client"
)

// Networks through the API: created in the caller's project, invisible
// and untouchable from another, refused with the field named when bad.
func TestNetworksAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n, err := e.admin.CreateNetwork(ctx, api.NetworksPost{Name: "lab", Subnet: "10.20.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "lab" || n.Subnet.String() != "10.20.0.0/24" || n.Gateway.String() != "10.20.0.1" || n.VNI == 0 {
		t.Fatalf("created: %+v", n)
	}
	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	b := e.admin.WithToken(other.Token)
	if list, err := b.Networks(ctx); err != nil || len(list) != 0 {
		t.Fatalf("other project lists %v (%v), want none", list, err)
	}
	if _, err := b.GetNetwork(ctx, "lab"); !client.IsNotFound(err) {
		t.Errorf("get from another project: %v, want 404", err)
	}
	if err := b.DeleteNetwork(ctx, "lab"); !client.IsNotFound(err) {
		t.Errorf("delete from another project: %v, want 404", err)
	}
	// The same name and subnet in the other project: another network.
	m, err := b.CreateNetwork(ctx, api.NetworksPost{Name: "lab", Subnet: "10.20.0.0/24"})
	if err != nil || m.VNI == n.VNI {
		t.Fatalf("same name in another project: %+v %v (first VNI %d)", m, err, n.VNI)
	}
	_, err = e.admin.CreateNetwork(ctx, api.NetworksPost{Name: "lab"})
	if ae := apiErr(t, err); ae.Status != http.StatusConflict {
		t.Errorf("second lab: %v, want 409", err)
	}
	_, err = e.admin.CreateNetwork(ctx, api.NetworksPost{Name: "pub", Subnet: "8.8.8.0/24"})
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || len(ae.Body.Fields) != 1 || ae.Body.Fields[0].Field != "subnet" || !strings.Contains(ae.Body.Fields[0].Reason, "public") {
		t.Errorf("public subnet: %+v", ae)
	}
	// Unknown fields are refused, like everywhere.
	err = e.admin.Do(ctx, "POST", "/networks", map[string]any{"name": "x", "vni": 7}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Error(), "vni") {
		t.Errorf("unknown field vni: %v", err)
	}
	if err := e.admin.DeleteNetwork(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	if list, err := e.admin.Networks(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after delete: %v %v", list, err)
	}
}
