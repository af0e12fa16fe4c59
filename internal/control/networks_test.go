package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/ipam"
	"vgrid/internal/model"
)

func TestValidateNetworksPost(t *testing.T) {
	for _, c := range []struct {
		in     api.NetworksPost
		subnet string
		field  string // "" : valid
		reason string
	}{
		{api.NetworksPost{Name: "lab"}, api.DefaultNetworkSubnet, "", ""},
		{api.NetworksPost{Name: "lab-2", Subnet: "192.168.7.0/28"}, "192.168.7.0/28", "", ""},
		{api.NetworksPost{Name: "Lab"}, "", "name", "lower-case"},
		{api.NetworksPost{Name: "a.b"}, "", "name", "lower-case"},
		{api.NetworksPost{Name: ""}, "", "name", "lower-case"},
		{api.NetworksPost{Name: "lab", Subnet: "10.0.0.1/24"}, "", "subnet", "10.0.0.0/24"},
		{api.NetworksPost{Name: "lab", Subnet: "8.8.8.0/24"}, "", "subnet", "public"},
		{api.NetworksPost{Name: "lab", Subnet: "10.0.0.0/8"}, "", "subnet", "too large"},
		{api.NetworksPost{Name: "lab", Subnet: "fd00::/64"}, "", "subnet", "IPv4"},
		{api.NetworksPost{Name: "lab", Subnet: "nonsense"}, "", "subnet", ""},
	} {
		sub, fe := ValidateNetworksPost(c.in)
		if c.field == "" {
			if len(fe) != 0 || sub.String() != c.subnet {
				t.Errorf("%+v: got %s %v, want %s and no errors", c.in, sub, fe, c.subnet)
			}
			continue
		}
		if len(fe) != 1 || fe[0].Field != c.field || !strings.Contains(fe[0].Reason, c.reason) {
			t.Errorf("%+v: got %v, want one error on %s containing %q", c.in, fe, c.field, c.reason)
		}
	}
}

// Networks of a project: a VNI each, unique on the grid; the same name and
// subnet in another project is another network, invisible from here; a
// name is used once per project; delete frees the VNI, and is refused
// while members hold addresses.
func TestNetworksLifecycle(t *testing.T) {
	ctl, _ := hostsEnv(t)
	ctx := context.Background()
	a, err := ctl.CreateNetwork(ctx, "alpha", api.NetworksPost{Name: "lab"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.VNI != ipam.DefaultMinVNI || a.Subnet.String() != api.DefaultNetworkSubnet || a.Gateway != netip.MustParseAddr("10.0.0.1") || a.Project != "alpha" {
		t.Fatalf("created: %+v", a)
	}
	b, err := ctl.CreateNetwork(ctx, "beta", api.NetworksPost{Name: "lab", NAT: true}, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if b.VNI == a.VNI || b.Subnet != a.Subnet || !b.NAT || b.Cluster != "c1" {
		t.Fatalf("beta's lab: %+v (alpha's VNI %d)", b, a.VNI)
	}
	var ce *Error
	if _, err := ctl.CreateNetwork(ctx, "alpha", api.NetworksPost{Name: "lab", Subnet: "10.9.0.0/24"}, ""); !errors.As(err, &ce) || ce.Kind != KindConflict {
		t.Fatalf("second lab in alpha: %v, want a conflict", err)
	}
	if _, err := ctl.CreateNetwork(ctx, "alpha", api.NetworksPost{Name: "bad", Subnet: "1.2.3.0/24"}, ""); !errors.As(err, &ce) || ce.Kind != KindInvalid || len(ce.Fields) != 1 || ce.Fields[0].Field != "subnet" {
		t.Fatalf("public subnet: %v, want invalid subnet", err)
	}
	list, err := ctl.Networks(ctx, "alpha")
	if err != nil || len(list) != 1 || list[0].Name != "lab" || list[0].VNI != a.VNI {
		t.Fatalf("alpha's networks: %+v %v", list, err)
	}
	if _, err := ctl.Network(ctx, "gamma", "lab"); !errors.As(err, &ce) || ce.Kind != KindNotFound {
		t.Fatalf("gamma sees lab: %v", err)
	}
	if err := ctl.DeleteNetwork(ctx, "gamma", "lab"); !errors.As(err, &ce) || ce.Kind != KindNotFound {
		t.Fatalf("gamma deletes lab: %v", err)
	}

	// In use: refused. (Members' addresses are written by the cluster
	// code; here by hand.)
	kv, _ := ctl.store.Get(ctx, networkKey("alpha", "lab"))
	a.Addresses = map[string]netip.Addr{"w1": netip.MustParseAddr("10.0.0.2")}
	buf, _ := json.Marshal(a)
	if _, err := ctl.store.Update(ctx, kv.Key, buf, kv.Revision); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteNetwork(ctx, "alpha", "lab"); !errors.As(err, &ce) || ce.Kind != KindConflict || !strings.Contains(ce.Msg, "in use by 1 member") {
		t.Fatalf("delete in use: %v", err)
	}
	a.Addresses = nil
	buf, _ = json.Marshal(a)
	kv, _ = ctl.store.Get(ctx, networkKey("alpha", "lab"))
	if _, err := ctl.store.Update(ctx, kv.Key, buf, kv.Revision); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteNetwork(ctx, "alpha", "lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Network(ctx, "alpha", "lab"); !errors.As(err, &ce) || ce.Kind != KindNotFound {
		t.Fatalf("after delete: %v", err)
	}
	// Its VNI is free again: the next network gets it.
	c, err := ctl.CreateNetwork(ctx, "alpha", api.NetworksPost{Name: "again"}, "")
	if err != nil || c.VNI != a.VNI {
		t.Fatalf("after delete, a new network: %+v %v, want VNI %d", c, err, a.VNI)
	}
}

// Networks created at once never share a VNI.
func TestNetworksConcurrentVNIs(t *testing.T) {
	ctl, _ := hostsEnv(t)
	ctx := context.Background()
	const n = 12
	var wg sync.WaitGroup
	vnis := make([]uint32, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			net, err := ctl.CreateNetwork(ctx, "p", api.NetworksPost{Name: "n" + string(rune('a'+i))}, "")
			vnis[i], errs[i] = net.VNI, err
		}()
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("network %d: %v", i, errs[i])
		}
		if seen[vnis[i]] {
			t.Fatalf("VNI %d given twice: %v", vnis[i], vnis)
		}
		seen[vnis[i]] = true
	}
	v, _, err := ctl.loadVNIs(ctx)
	if err != nil || v.Len() != n || v.Validate() != nil {
		t.Fatalf("VNI table: %+v %v", v, err)
	}
}

// A bandwidth cap is refused where it would not be enforced (a guest on
// user-mode networking), naming the field.
func TestBandwidthRefusedOffOverlay(t *testing.T) {
	ctl, _ := hostsEnv(t, "h1")
	sp := model.WorkspaceSpec{Name: "w", Image: "img", Quantum: model.Quantum{VCPUs: 1, Memory: 128 * model.MiB, Bandwidth: 100 * model.Mbit},
		Duration: model.Duration(time.Hour)}
	_, err := ctl.CreateWorkspace(context.Background(), "p", sp)
	var ce *Error
	if !errors.As(err, &ce) || ce.Kind != KindInvalid || len(ce.Fields) != 1 || ce.Fields[0].Field != "quantum.bandwidth" {
		t.Fatalf("got %v, want quantum.bandwidth refused", err)
	}
	if _, err := ctl.Workspace(context.Background(), "p", "w"); err == nil {
		t.Fatal("the refused workspace was stored")
	}
}
