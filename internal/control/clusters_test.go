package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/spec"
)

func TestClusterReleases(t *testing.T) {
	m := func(d model.Desired, st model.State, reason string) model.Workspace {
		return model.Workspace{Desired: d, Status: model.WorkspaceStatus{Node: "h1", State: st, Reason: reason}}
	}
	run := m(model.DesiredRunning, model.StateRunning, "")
	for _, c := range []struct {
		name    string
		members []model.Workspace
		st      calendar.State
		want    bool
	}{
		{"all running", []model.Workspace{run, run}, calendar.StateRunning, false},
		{"one stopping, one stopped", []model.Workspace{m(model.DesiredStopped, model.StateStopping, "stop"), m(model.DesiredStopped, model.StateStopped, "stop")}, calendar.StateRunning, false},
		{"all stopped by the user", []model.Workspace{m(model.DesiredStopped, model.StateStopped, "stop"), m(model.DesiredStopped, model.StateStopped, "stop")}, calendar.StateRunning, true},
		{"one crashed, one runs", []model.Workspace{m(model.DesiredRunning, model.StateFailed, "crash"), run}, calendar.StateRunning, false},
		{"all crashed", []model.Workspace{m(model.DesiredRunning, model.StateFailed, "crash"), m(model.DesiredRunning, model.StateStopped, "")}, calendar.StateRunning, true},
		{"queued, still wanted", []model.Workspace{m(model.DesiredRunning, model.StateQueued, ""), m(model.DesiredRunning, model.StateQueued, "")}, calendar.StateQueued, false},
		{"requeued, waiting again", []model.Workspace{m(model.DesiredStopped, model.StateQueued, "requeued: x"), m(model.DesiredStopped, model.StateStopped, "requeued: x")}, calendar.StateQueued, false},
		{"queued, stopped by the user", []model.Workspace{m(model.DesiredStopped, model.StateStopped, "stop"), m(model.DesiredDeleted, model.StateStopped, "")}, calendar.StateQueued, true},
		{"every member gone", nil, calendar.StateRunning, true},
	} {
		if got := clusterReleases(c.members, c.st); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestMemberAction(t *testing.T) {
	a := calendar.Action{Kind: calendar.ActStart, Lease: "p/@c", Hosts: []string{"h1", "h2", "h1"}}
	for i, want := range []string{"h1", "h2", "h1"} {
		if got := memberAction(a, i); len(got.Hosts) != 1 || got.Hosts[0] != want || got.Lease != "p/@c" {
			t.Errorf("member %d: %+v, want host %s", i, got, want)
		}
	}
	if got := memberAction(calendar.Action{Kind: calendar.ActEnd, Lease: "p/@c"}, 2); got.Hosts != nil {
		t.Errorf("end without hosts: %+v", got)
	}
	for id, want := range map[string]string{"p/@c": "c", "p/@c#2": "c", "p/ws": "", "p/ws#3": ""} {
		_, name, ok := clusterOfLease(id)
		if ok != (want != "") || name != want {
			t.Errorf("clusterOfLease(%q) = %q %v", id, name, ok)
		}
	}
}

func TestNetworkAssignments(t *testing.T) {
	vni := func(n uint32) model.Network {
		return model.Network{Project: "p", Name: "net", VNI: n, Subnet: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1")}
	}
	member := func(project, node, mac string) model.Workspace {
		return model.Workspace{Project: project, Desired: model.DesiredRunning, Status: model.WorkspaceStatus{Node: node},
			NICs: []model.NIC{{Network: "net", MAC: mac}}}
	}
	nets := map[string]model.Network{"p/net": vni(5000), "q/net": func() model.Network { n := vni(5001); n.Project = "q"; return n }()}
	addrs := map[string]netip.Addr{"h1": netip.MustParseAddr("192.0.2.1"), "h2": netip.MustParseAddr("192.0.2.2"), "h3": netip.MustParseAddr("192.0.2.3")}
	gone := member("p", "h2", "02:00:00:00:00:09")
	gone.Desired = model.DesiredDeleted
	all := []model.Workspace{
		member("p", "h1", "02:00:00:00:00:01"),
		member("p", "h2", "02:00:00:00:00:02"),
		member("p", "h2", "02:00:00:00:00:03"),
		member("q", "h3", "02:00:00:00:00:04"), // the same network name in another project
		member("p", "", "02:00:00:00:00:05"),   // not placed
		member("p", "h4", "02:00:00:00:00:06"), // on a host without an address
		gone,
		{Project: "p", Status: model.WorkspaceStatus{Node: "h1"}}, // no NICs
	}
	got := networkAssignments("h1", all, nets, addrs)
	if len(got) != 1 {
		t.Fatalf("h1: %+v, want one network", got)
	}
	n := got[0]
	if n.VNI != 5000 || n.Project != "p" || len(n.Peers) != 1 || n.Peers[0] != addrs["h2"] || len(n.Remotes) != 2 ||
		n.Remotes[0].MAC != "02:00:00:00:00:02" || n.Remotes[1].Peer != addrs["h2"] {
		t.Fatalf("h1: %+v", n)
	}
	if got := networkAssignments("h3", all, nets, addrs); len(got) != 1 || got[0].VNI != 5001 || len(got[0].Peers) != 0 {
		t.Fatalf("h3 (project q alone on its network): %+v", got)
	}
	if got := networkAssignments("h5", all, nets, addrs); got != nil {
		t.Fatalf("h5 has no member: %+v", got)
	}
}

func clusterSpec(t *testing.T, y string) model.ClusterSpec {
	t.Helper()
	cs, err := spec.ParseCluster([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

const testCluster = `name: lab
duration: 2h
roles:
  - name: head
    count: 1
    image: img
    quantum: {vcpus: 1, cpu: 1, memory: 512Mi, disk: 1Gi}
  - name: worker
    count: 3
    image: img
    quantum: {vcpus: 1, cpu: 1, memory: 512Mi, disk: 1Gi}
`

// A cluster is admitted whole over two hosts (it fits on neither alone),
// on a network of its own with an address and MAC per member and one
// roster; one too big for the grid is refused whole and stores nothing;
// its members are stopped and deleted only as a cluster, and the lease
// ends when the last guest is down.
func TestClusterLifecycle(t *testing.T) {
	ctl, _ := hostsEnv(t, "h1", "h2")
	ctx := context.Background()
	for i, n := range []string{"h1", "h2"} {
		if _, err := ctl.RegisterNode(ctx, model.Node{Name: n, Address: "192.0.2." + string(rune('1'+i)), Accel: "tcg",
			Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ctl.CreateCluster(ctx, "p", clusterSpec(t, testCluster))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 4 || st.Lease != "p/@lab" || len(st.Networks) != 1 || st.Networks[0] != "lab" {
		t.Fatalf("created: %+v", st.Cluster)
	}
	hosts := map[string]int{}
	addrs := map[netip.Addr]bool{}
	var wss []model.Workspace
	for _, name := range st.Members {
		w, err := ctl.Workspace(ctx, "p", name)
		if err != nil {
			t.Fatal(err)
		}
		wss = append(wss, w)
		hosts[w.Status.Node]++
		if w.Status.Lease != "p/@lab" || w.Cluster == nil || len(w.NICs) != 1 || w.Spec.Context.Cluster == nil {
			t.Fatalf("member %s: %+v", name, w)
		}
		addrs[w.NICs[0].Address.Addr()] = true
		r := w.Spec.Context.Cluster
		if len(r.Members) != 4 || r.Head != "lab-head-0" || !strings.Contains(r.PrivateKey, "OPENSSH PRIVATE KEY") || !strings.HasPrefix(r.PublicKey, "ssh-ed25519 ") {
			t.Fatalf("roster of %s: %+v", name, r)
		}
	}
	if hosts["h1"] != 2 || hosts["h2"] != 2 || len(addrs) != 4 {
		t.Fatalf("placement %v, addresses %v: want 2 members on each host, 4 addresses", hosts, addrs)
	}
	n, err := ctl.Network(ctx, "p", "lab")
	if err != nil || n.Cluster != "lab" || len(n.Addresses) != 4 {
		t.Fatalf("the cluster's network: %+v %v", n, err)
	}
	as, err := ctl.Assignments(ctx, "h1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Networks) != 1 || as.Networks[0].VNI != n.VNI || len(as.Networks[0].Peers) != 1 ||
		as.Networks[0].Peers[0] != netip.MustParseAddr("192.0.2.2") || len(as.Networks[0].Remotes) != 2 {
		t.Fatalf("h1's networks: %+v", as.Networks)
	}

	// Too big: refused whole, nothing stored.
	big := strings.ReplaceAll(strings.ReplaceAll(testCluster, "name: lab", "name: big"), "count: 3", "count: 9")
	_, err = ctl.CreateCluster(ctx, "p", clusterSpec(t, big))
	var re *RefusalError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "members") {
		t.Fatalf("too big: %v, want a refusal naming the members", err)
	}
	if _, err := ctl.Workspace(ctx, "p", "big-head-0"); !isNotFound(err) {
		t.Fatalf("a member of the refused cluster was stored: %v", err)
	}
	if _, err := ctl.Network(ctx, "p", "big"); !isNotFound(err) {
		t.Fatalf("the refused cluster's network was stored: %v", err)
	}
	if _, err := ctl.Cluster(ctx, "p", "big"); !isNotFound(err) {
		t.Fatalf("the refused cluster was stored: %v", err)
	}

	// Members run; one alone cannot be stopped; the cluster stops, and
	// its lease ends with the last guest.
	for _, w := range wss {
		running(t, ctl, w, ctl.now())
	}
	var ce *Error
	if _, err := ctl.StopWorkspace(ctx, "p", "lab-worker-1", "x"); !errors.As(err, &ce) || ce.Kind != KindConflict || !strings.Contains(err.Error(), "vgrid cluster stop lab") {
		t.Fatalf("stop one member: %v", err)
	}
	if _, err := ctl.DeleteWorkspace(ctx, "p", "lab-worker-1"); !errors.As(err, &ce) || ce.Kind != KindConflict {
		t.Fatalf("delete one member: %v", err)
	}
	if _, err := ctl.StopCluster(ctx, "p", "lab"); err != nil {
		t.Fatal(err)
	}
	leaseState := func() calendar.State {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		c, err := ctl.calendarLocked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := c.Get("p/@lab")
		return v.State
	}
	for i, w := range wss {
		if got := leaseState(); got != calendar.StateRunning {
			t.Fatalf("lease %s with %d of 4 guests down, want running", got, i)
		}
		report(t, ctl, w, api.AgentReport{State: model.StateStopped})
	}
	if got := leaseState(); got != calendar.StateDone {
		t.Fatalf("lease %s with every guest down, want done", got)
	}

	// Started again: one new lease for all, on the hosts of their disks.
	st, err = ctl.StartCluster(ctx, "p", "lab")
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range st.Details {
		if d.State != model.StatePending || d.Host != wss[i].Status.Node {
			t.Fatalf("restarted member %+v, want Pending on %s", d, wss[i].Status.Node)
		}
	}
	if v := func() calendar.LeaseView {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		v, _ := ctl.cal.Get("p/@lab#2")
		return v
	}(); v.State != calendar.StateRunning || len(v.Members) != 4 {
		t.Fatalf("new lease: %+v", v)
	}
	if _, err := ctl.StartCluster(ctx, "p", "lab"); err != nil {
		t.Fatalf("start a started cluster: %v", err)
	}

	// Scaled up onto a third host: the new member has a lease of its own
	// ending with the cluster's, and every member's roster names it.
	if _, err := ctl.RegisterNode(ctx, model.Node{Name: "h3", Address: "192.0.2.3", Accel: "tcg",
		Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
		t.Fatal(err)
	}
	st, err = ctl.ScaleCluster(ctx, "p", "lab", map[string]int{"worker": 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 5 || st.Details[4].Name != "lab-worker-3" || st.Details[4].Host != "h3" {
		t.Fatalf("scaled to 4 workers: %+v", st.Details)
	}
	for _, d := range st.Details {
		w, _ := ctl.Workspace(ctx, "p", d.Name)
		if r := w.Spec.Context.Cluster; r.Revision != 2 || len(r.Members) != 5 || r.Members[4].Address != w4addr(t, ctl) {
			t.Fatalf("roster of %s after the scale: %+v", d.Name, r)
		}
	}
	_, err = ctl.ScaleCluster(ctx, "p", "lab", map[string]int{"worker": 9})
	if !errors.As(err, &re) {
		t.Fatalf("scale beyond the grid: %v, want a refusal", err)
	}
	if _, err := ctl.Workspace(ctx, "p", "lab-worker-4"); !isNotFound(err) {
		t.Fatalf("a member of a refused scale was stored: %v", err)
	}
	if _, err := ctl.ScaleCluster(ctx, "p", "nosuch", map[string]int{"worker": 1}); !isNotFound(err) {
		t.Fatalf("scale a missing cluster: %v", err)
	}
	if _, err := ctl.ScaleCluster(ctx, "p", "lab", map[string]int{"db": 1}); !errors.As(err, &ce) || ce.Kind != KindInvalid || len(ce.Fields) != 1 || !strings.Contains(ce.Fields[0].Reason, "head, worker") {
		t.Fatalf("scale a missing role: %v", err)
	}
	st, err = ctl.ScaleCluster(ctx, "p", "lab", map[string]int{"worker": 3})
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := ctl.Workspace(ctx, "p", "lab-worker-3"); len(st.Members) != 4 || w.Desired != model.DesiredDeleted {
		t.Fatalf("scaled down to 3 workers: %v, lab-worker-3 %s", st.Members, w.Desired)
	}
	wss = append(wss, func() model.Workspace { w, _ := ctl.Workspace(ctx, "p", "lab-worker-3"); return w }())

	// Deleted: members torn down one by one, then the cluster and its
	// network go.
	if _, err := ctl.DeleteCluster(ctx, "p", "lab"); err != nil {
		t.Fatal(err)
	}
	for i, w := range wss {
		if _, err := ctl.Cluster(ctx, "p", "lab"); err != nil {
			t.Fatalf("cluster gone with %d of 4 members torn down: %v", i, err)
		}
		if err := ctl.Forgotten(ctx, w.Status.Node, "p", w.Spec.Name, w.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ctl.Cluster(ctx, "p", "lab"); !isNotFound(err) {
		t.Fatalf("cluster after its members: %v", err)
	}
	if _, err := ctl.Network(ctx, "p", "lab"); !isNotFound(err) {
		t.Fatalf("network after its cluster: %v", err)
	}
}

func w4addr(t *testing.T, ctl *Controller) netip.Addr {
	t.Helper()
	w, err := ctl.Workspace(context.Background(), "p", "lab-worker-3")
	if err != nil || len(w.NICs) != 1 {
		t.Fatalf("lab-worker-3: %+v %v", w, err)
	}
	return w.NICs[0].Address.Addr()
}

// Bandwidth is a resource of each host's NIC: members' caps count against
// it, and a cluster whose caps the hosts cannot carry is refused whole,
// naming it.
func TestClusterBandwidthIsReserved(t *testing.T) {
	ctl, _ := hostsEnv(t)
	ctx := context.Background()
	if _, err := ctl.RegisterNode(ctx, model.Node{Name: "h1", Address: "192.0.2.1", Accel: "tcg",
		Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB, Bandwidth: 100_000_000 / 8}}); err != nil {
		t.Fatal(err)
	}
	y := func(name string, n int) string {
		return "name: " + name + "\nduration: 1h\nroles:\n  - name: w\n    count: " + string(rune('0'+n)) +
			"\n    image: img\n    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi, bandwidth: 40Mbit}\n"
	}
	if _, err := ctl.CreateCluster(ctx, "p", clusterSpec(t, y("a", 2))); err != nil {
		t.Fatalf("2 x 40 Mbit/s on a 100 Mbit/s host: %v", err)
	}
	_, err := ctl.CreateCluster(ctx, "p", clusterSpec(t, y("b", 1)))
	var re *RefusalError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "bandwidth") {
		t.Fatalf("40 Mbit/s more: %v, want a refusal naming bandwidth", err)
	}
}

// A host lost under a running cluster: its member starts again on a host
// with room (same address, the roster unchanged), the others run on, the
// lease is the same, and the surviving hosts' forwarding entries follow.
func TestClusterHostLoss(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t)
	for i, n := range []string{"h1", "h2", "h3"} {
		if _, err := ctl.RegisterNode(ctx, model.Node{Name: n, Address: "192.0.2." + string(rune('1'+i)), Accel: "tcg",
			Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
			t.Fatal(err)
		}
	}
	y := "name: c\nduration: 2h\nroles:\n  - name: w\n    count: 2\n    image: img\n    quantum: {vcpus: 1, cpu: 1, memory: 512Mi}\n    placement: spread\n"
	st, err := ctl.CreateCluster(ctx, "p", clusterSpec(t, y))
	if err != nil {
		t.Fatal(err)
	}
	if st.Details[0].Host != "h1" || st.Details[1].Host != "h2" {
		t.Fatalf("placed on %s and %s, want h1 and h2 (spread)", st.Details[0].Host, st.Details[1].Host)
	}
	var wss []model.Workspace
	for _, n := range st.Members {
		w, _ := ctl.Workspace(ctx, "p", n)
		wss = append(wss, running(t, ctl, w, clk.now()))
	}
	for i := 0; i < 8; i++ { // h2 silent for 40 s: lost
		clk.add(5 * time.Second)
		beatAll(t, ctl, "h1", "h3")
		if err := ctl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	w0, _ := ctl.Workspace(ctx, "p", "c-w-0")
	w1, _ := ctl.Workspace(ctx, "p", "c-w-1")
	if w0.Status.Node != "h1" || w0.Status.State != model.StateRunning || w0.Status.Generation != wss[0].Status.Generation {
		t.Fatalf("the member on h1: %+v, want it running on, untouched", w0.Status)
	}
	if w1.Status.Node != "h3" || w1.Desired != model.DesiredRunning || w1.Status.State != model.StatePending ||
		w1.NICs[0].Address != wss[1].NICs[0].Address || w1.Status.Lease != "p/@c" {
		t.Fatalf("the member of the lost host: %+v %v, want it starting on h3 with its address", w1.Status, w1.NICs)
	}
	as, err := ctl.Assignments(ctx, "h1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Networks) != 1 || len(as.Networks[0].Peers) != 1 || as.Networks[0].Peers[0] != netip.MustParseAddr("192.0.2.3") {
		t.Fatalf("h1's network after the loss: %+v, want h3 as its peer", as.Networks)
	}
}

// Members torn down at once: the last record may go before the first
// address is given back; the cluster's network still goes with the last
// address.
func TestClusterNetworkGoesWithTheLastAddress(t *testing.T) {
	ctl, _ := hostsEnv(t, "h1")
	ctx := context.Background()
	y := "name: c\nduration: 1h\nroles:\n  - name: w\n    count: 2\n    image: img\n    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}\n"
	if _, err := ctl.CreateCluster(ctx, "p", clusterSpec(t, y)); err != nil {
		t.Fatal(err)
	}
	a, _ := ctl.Workspace(ctx, "p", "c-w-0")
	b, _ := ctl.Workspace(ctx, "p", "c-w-1")
	if _, err := ctl.DeleteCluster(ctx, "p", "c"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []model.Workspace{a, b} { // both records gone first
		if err := ctl.store.Delete(ctx, wsKey("p", w.Spec.Name), 0); err != nil {
			t.Fatal(err)
		}
	}
	ctl.releaseAddresses(ctx, a)
	if _, err := ctl.Cluster(ctx, "p", "c"); !isNotFound(err) {
		t.Fatalf("cluster with no member left: %v", err)
	}
	if n, err := ctl.Network(ctx, "p", "c"); err != nil || len(n.Addresses) != 1 {
		t.Fatalf("network while b's address is held: %+v %v", n, err)
	}
	ctl.releaseAddresses(ctx, b)
	if _, err := ctl.Network(ctx, "p", "c"); !isNotFound(err) {
		t.Fatalf("network after the last address: %v", err)
	}
}

// TestClusterDeleteTakesUnlistedMembers: a member a scale down dropped
// from the cluster's list but could not delete (its replica lost half
// way) is deleted with the cluster, which would otherwise wait for it
// forever.
func TestClusterDeleteTakesUnlistedMembers(t *testing.T) {
	ctl, _ := hostsEnv(t, "h1")
	ctx := context.Background()
	y := "name: c\nduration: 1h\nroles:\n  - name: w\n    count: 2\n    image: img\n    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}\n"
	if _, err := ctl.CreateCluster(ctx, "p", clusterSpec(t, y)); err != nil {
		t.Fatal(err)
	}
	cl, err := ctl.clusterRecord(ctx, "p", "c")
	if err != nil {
		t.Fatal(err)
	}
	rev := cl.Revision
	cl.Members, cl.Revision = []string{"c-w-0"}, 0 // c-w-1 dropped, not deleted
	b, _ := json.Marshal(cl)
	if _, err := ctl.store.Update(ctx, clusterKey("p", "c"), b, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.DeleteCluster(ctx, "p", "c"); err != nil {
		t.Fatal(err)
	}
	if w, err := ctl.Workspace(ctx, "p", "c-w-1"); err == nil && w.Desired != model.DesiredDeleted {
		t.Fatalf("the unlisted member after its cluster's delete: desired %s", w.Desired)
	}
}
