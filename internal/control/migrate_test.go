package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
)

func migratingWS(phase string, ep bool) model.Workspace {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ws := model.Workspace{ID: "w1", Project: "p", Spec: model.WorkspaceSpec{Name: "a", Quantum: model.Quantum{VCPUs: 1, Memory: 256 << 20}},
		Desired: model.DesiredRunning, Status: model.WorkspaceStatus{State: model.StateRunning, Node: "h1"}}
	ws.Status.Migration = &model.Migration{To: "h2", Phase: phase, Since: t0}
	if ep {
		ws.Status.Migration.Endpoint = &model.MigrationEndpoint{Memory: "10.0.0.2:5000", Disk: "nbd://10.0.0.2:5001/vda"}
	}
	return ws
}

func TestApplyMigrationReport(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC)
	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ep := &model.MigrationEndpoint{Memory: "10.0.0.2:5000", Disk: "nbd://10.0.0.2:5001/vda"}
	newQ := model.Quantum{VCPUs: 1, CPU: 0.5, Memory: 256 << 20}
	tests := []struct {
		name     string
		ws       model.Workspace
		node     string
		rep      api.MigrationReport
		want     migrationOutcome
		err      Kind
		node2    string // the workspace's node after
		migAfter bool   // still migrating after
		check    func(t *testing.T, ws model.Workspace)
	}{
		{name: "destination ready", ws: migratingWS(model.MigrationPreparing, false), node: "h2",
			rep: api.MigrationReport{ID: "w1", Since: since, Endpoint: ep}, want: migUpdate, node2: "h1", migAfter: true,
			check: func(t *testing.T, ws model.Workspace) {
				if m := ws.Status.Migration; m.Phase != model.MigrationRunning || *m.Endpoint != *ep {
					t.Errorf("migration after ready: %+v", m)
				}
			}},
		{name: "ready said twice", ws: migratingWS(model.MigrationRunning, true), node: "h2",
			rep: api.MigrationReport{ID: "w1", Since: since, Endpoint: ep}, want: migNothing, node2: "h1", migAfter: true},
		{name: "destination fails", ws: migratingWS(model.MigrationPreparing, false), node: "h2",
			rep: api.MigrationReport{ID: "w1", Since: since, Failed: "no room"}, want: migFailed, node2: "h1"},
		{name: "source progress", ws: migratingWS(model.MigrationRunning, true), node: "h1",
			rep: api.MigrationReport{ID: "w1", Since: since, Progress: &model.MigrationProgress{Phase: "memory", MemoryTotal: 100}}, want: migUpdate, node2: "h1", migAfter: true,
			check: func(t *testing.T, ws model.Workspace) {
				if p := ws.Status.Migration.Progress; p == nil || p.MemoryTotal != 100 || !p.At.Equal(now) {
					t.Errorf("progress: %+v", p)
				}
			}},
		{name: "source done", ws: migratingWS(model.MigrationRunning, true), node: "h1",
			rep: api.MigrationReport{ID: "w1", Since: since, Done: true}, want: migDone, node2: "h2"},
		{name: "done with a new quantum", ws: func() model.Workspace {
			ws := migratingWS(model.MigrationRunning, true)
			ws.Status.Migration.Quantum = &newQ
			return ws
		}(), node: "h1", rep: api.MigrationReport{ID: "w1", Since: since, Done: true}, want: migDone, node2: "h2",
			check: func(t *testing.T, ws model.Workspace) {
				if ws.Spec.Quantum != newQ {
					t.Errorf("quantum after: %+v", ws.Spec.Quantum)
				}
			}},
		{name: "done before ready", ws: migratingWS(model.MigrationPreparing, false), node: "h1",
			rep: api.MigrationReport{ID: "w1", Since: since, Done: true}, err: KindInvalid},
		{name: "source fails", ws: migratingWS(model.MigrationRunning, true), node: "h1",
			rep: api.MigrationReport{ID: "w1", Since: since, Failed: "cancelled"}, want: migFailed, node2: "h1"},
		{name: "another migration", ws: migratingWS(model.MigrationRunning, true), node: "h1",
			rep: api.MigrationReport{ID: "w1", Since: since.Add(time.Second), Done: true}, err: KindGone},
		{name: "another workspace", ws: migratingWS(model.MigrationRunning, true), node: "h1",
			rep: api.MigrationReport{ID: "w2", Since: since, Done: true}, err: KindGone},
		{name: "a third host", ws: migratingWS(model.MigrationRunning, true), node: "h3",
			rep: api.MigrationReport{ID: "w1", Since: since, Done: true}, err: KindGone},
		{name: "not migrating", ws: func() model.Workspace { ws := migratingWS("", false); ws.Status.Migration = nil; return ws }(), node: "h1",
			rep: api.MigrationReport{ID: "w1", Since: since, Done: true}, err: KindGone},
		{name: "destination says done", ws: migratingWS(model.MigrationRunning, true), node: "h2",
			rep: api.MigrationReport{ID: "w1", Since: since, Done: true}, err: KindInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.ws.Status.Migration
			var snapshot model.Migration
			if before != nil {
				snapshot = *before
			}
			got, out, err := applyMigrationReport(tt.ws, tt.node, tt.rep, now)
			if before != nil && *before != snapshot {
				t.Errorf("the input's migration was changed: %+v", before)
			}
			if tt.err != 0 {
				var ce *Error
				if !errors.As(err, &ce) || ce.Kind != tt.err {
					t.Fatalf("err = %v, want kind %d", err, tt.err)
				}
				return
			}
			if err != nil || out != tt.want {
				t.Fatalf("outcome %d, err %v; want %d", out, err, tt.want)
			}
			if out == migNothing {
				return
			}
			if got.Status.Node != tt.node2 || (got.Status.Migration != nil) != tt.migAfter {
				t.Errorf("node %s migrating %v; want %s %v", got.Status.Node, got.Status.Migration != nil, tt.node2, tt.migAfter)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestMigratable(t *testing.T) {
	base := migratingWS("", false)
	base.Status.Migration = nil
	tests := []struct {
		name string
		mod  func(*model.Workspace)
		want string // "" or a part of the reason
	}{
		{"running", func(*model.Workspace) {}, ""},
		{"migrating", func(w *model.Workspace) { w.Status.Migration = &model.Migration{To: "h3"} }, "already migrating to h3"},
		{"stopped", func(w *model.Workspace) { w.Desired = model.DesiredStopped }, "not meant to run"},
		{"starting", func(w *model.Workspace) { w.Status.State = model.StateStarting }, "not running"},
		{"deleting", func(w *model.Workspace) { w.Desired = model.DesiredDeleted }, "deleted"},
		{"files moving", func(w *model.Workspace) { w.Status.Move = &model.Move{From: "h0"} }, "files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := base
			tt.mod(&ws)
			got := migratable(ws)
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("migratable = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStuckMigration(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	up := func(h string) bool { return h != "down" }
	tests := []struct {
		name string
		ws   func() model.Workspace
		now  time.Time
		want string
	}{
		{"fresh", func() model.Workspace { return migratingWS(model.MigrationPreparing, false) }, t0.Add(time.Second), ""},
		{"never prepared", func() model.Workspace { return migratingWS(model.MigrationPreparing, false) }, t0.Add(prepareTimeout + time.Second), "did not prepare"},
		{"destination down", func() model.Workspace {
			ws := migratingWS(model.MigrationRunning, true)
			ws.Status.Migration.To = "down"
			return ws
		}, t0.Add(time.Second), "destination host down"},
		{"source down", func() model.Workspace {
			ws := migratingWS(model.MigrationRunning, true)
			ws.Status.Node = "down"
			return ws
		}, t0.Add(time.Second), "source host down"},
		{"silent source", func() model.Workspace { return migratingWS(model.MigrationRunning, true) }, t0.Add(progressTimeout + time.Second), "no progress"},
		{"recent progress", func() model.Workspace {
			ws := migratingWS(model.MigrationRunning, true)
			ws.Status.Migration.Progress = &model.MigrationProgress{At: t0.Add(progressTimeout)}
			return ws
		}, t0.Add(progressTimeout + time.Second), ""},
		{"not migrating", func() model.Workspace { ws := migratingWS("", false); ws.Status.Migration = nil; return ws }, t0.Add(time.Hour), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stuckMigration(tt.ws(), up, tt.now)
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("stuckMigration = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNetworkAssignmentsDuringMigration(t *testing.T) {
	nets := map[string]model.Network{"p/n": {VNI: 7, Subnet: netip.MustParsePrefix("10.9.0.0/24")}}
	addrs := map[string]netip.Addr{"h1": netip.MustParseAddr("192.168.0.1"), "h2": netip.MustParseAddr("192.168.0.2"), "h3": netip.MustParseAddr("192.168.0.3")}
	nic := func(mac string) []model.NIC { return []model.NIC{{Network: "n", VNI: 7, MAC: mac}} }
	mover := migratingWS(model.MigrationRunning, true) // h1 -> h2
	mover.NICs = nic("52:54:00:00:00:01")
	other := model.Workspace{ID: "w2", Project: "p", Spec: model.WorkspaceSpec{Name: "b"}, NICs: nic("52:54:00:00:00:02"),
		Desired: model.DesiredRunning, Status: model.WorkspaceStatus{Node: "h3"}}
	all := []model.Workspace{mover, other}
	// The destination builds the network before the guest comes, and does
	// not send the mover's own MAC to its source.
	dest := networkAssignments("h2", all, nets, addrs)
	if len(dest) != 1 || len(dest[0].Remotes) != 1 || dest[0].Remotes[0].MAC != "52:54:00:00:00:02" {
		t.Fatalf("destination's networks: %+v", dest)
	}
	// The others reach the mover at its source until it has arrived.
	h3 := networkAssignments("h3", all, nets, addrs)
	found := false
	for _, r := range h3[0].Remotes {
		if r.MAC == "52:54:00:00:00:01" {
			found = true
			if r.Peer != addrs["h1"] {
				t.Errorf("mover reached at %v, want its source", r.Peer)
			}
		}
	}
	if !found {
		t.Fatalf("h3's networks lack the mover: %+v", h3)
	}
	// Once arrived, at the destination.
	mover.Status.Node, mover.Status.Migration = "h2", nil
	h3 = networkAssignments("h3", []model.Workspace{mover, other}, nets, addrs)
	for _, r := range h3[0].Remotes {
		if r.MAC == "52:54:00:00:00:01" && r.Peer != addrs["h2"] {
			t.Errorf("after the move the mover is reached at %v, want h2", r.Peer)
		}
	}
}

func TestResizedAndNotInPlace(t *testing.T) {
	old := model.Quantum{VCPUs: 2, CPU: 0.5, Memory: 256 << 20, MaxMemory: 512 << 20, Disk: 1 << 30}
	f := func(v float64) *float64 { return &v }
	b := func(v model.ByteSize) *model.ByteSize { return &v }
	i := func(v int) *int { return &v }
	tests := []struct {
		name  string
		req   api.ResizeRequest
		field string // the field refused in place, "" if none
	}{
		{"cpu up", api.ResizeRequest{CPU: f(1.5)}, ""},
		{"memory within max", api.ResizeRequest{Memory: b(512 << 20)}, ""},
		{"memory above max", api.ResizeRequest{Memory: b(768 << 20)}, "memory"},
		{"memory down", api.ResizeRequest{Memory: b(128 << 20)}, ""},
		{"disk grows", api.ResizeRequest{Disk: b(2 << 30)}, ""},
		{"disk shrinks", api.ResizeRequest{Disk: b(512 << 20)}, "disk"},
		{"more vcpus", api.ResizeRequest{VCPUs: i(4)}, "vcpus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := Resized(old, tt.req)
			fe := notInPlace(old, q)
			switch {
			case tt.field == "" && len(fe) > 0:
				t.Errorf("refused: %+v", fe)
			case tt.field != "" && (len(fe) == 0 || fe[0].Field != tt.field):
				t.Errorf("refusals %+v, want field %s", fe, tt.field)
			}
		})
	}
	if q := Resized(old, api.ResizeRequest{}); q != old {
		t.Errorf("an empty request changed the quantum: %+v", q)
	}
}

// With Policy.Migrate, a reservation that needs the host of a running
// best-effort workspace has it migrated live to another host with room,
// in time, instead of suspended: the calendar's migrate action becomes
// the workspace's migration, the agents' reports carry it out, and the
// reservation starts on the host at its time.
func TestCalendarMigratesForReservation(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	p := calendar.DefaultPolicy()
	p.Migrate = true
	ctl.SetPolicy(&p)
	beatAll(t, ctl, "h1", "h2")
	if err := ctl.Heartbeat(ctx, "h2", model.Node{Capacity: model.Resources{MilliCPU: 3000, Memory: 4 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
		t.Fatal(err)
	}
	be := createWS(t, ctl, "be", "1", "{kind: best-effort}")
	im := createWS(t, ctl, "im", "1.5", "")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	be, im = running(t, ctl, be, clk.now()), running(t, ctl, im, clk.now())
	if be.Status.Node != "h1" || im.Status.Node != "h2" {
		t.Fatalf("placed on %s and %s, want h1 and h2", be.Status.Node, im.Status.Node)
	}
	start := clk.now().Add(time.Hour)
	ar := createWS(t, ctl, "ar", "2", fmt.Sprintf("{kind: reservation, start: %q}", start.Format(time.RFC3339)))
	ctl.mu.Lock()
	v, _ := ctl.cal.Get(leaseID(ar))
	ctl.mu.Unlock()
	if len(v.Hosts) != 1 || v.Hosts[0] != "h1" {
		t.Fatalf("reservation on %v, want h1 (the only host it fits once be has gone)", v.Hosts)
	}
	// Up to just before the reservation's hold: be migrates (512Mi at the
	// default rate, about 6 s with the setup), not suspended.
	clk.add(time.Hour - 5*time.Second)
	beatAll(t, ctl, "h1", "h2")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	w, _ := ctl.Workspace(ctx, "p", "be")
	m := w.Status.Migration
	if m == nil || m.To != "h2" || !m.Calendar || w.Desired != model.DesiredRunning {
		evs, _ := ctl.Events(ctx, "p", "be")
		t.Fatalf("be before the reservation: desired %s, migration %+v; events %+v", w.Desired, m, evs)
	}
	ep := &model.MigrationEndpoint{Memory: "10.0.0.2:5000", Disk: "nbd://10.0.0.2:5001/vda"}
	if err := ctl.MigrationReport(ctx, "h2", "p", "be", api.MigrationReport{ID: w.ID, Since: m.Since, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Second)
	if err := ctl.MigrationReport(ctx, "h1", "p", "be", api.MigrationReport{ID: w.ID, Since: m.Since, Done: true,
		Total: model.Duration(3 * time.Second), Downtime: model.Duration(30 * time.Millisecond), MemoryBytes: 300 << 20}); err != nil {
		t.Fatal(err)
	}
	if w, _ = ctl.Workspace(ctx, "p", "be"); w.Status.Node != "h2" || w.Status.Suspensions != 0 {
		t.Fatalf("be after the migration: on %s, %d suspensions", w.Status.Node, w.Status.Suspensions)
	}
	// The measured rate is the hosts' from now on.
	if n, _ := ctl.Node(ctx, "h1"); n.Measured.MigrateRate() != 100<<20 {
		t.Errorf("h1's migration rate %d, want 100 MiB/s", n.Measured.MigrateRate())
	}
	clk.add(10 * time.Second)
	beatAll(t, ctl, "h1", "h2")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if w, _ := ctl.Workspace(ctx, "p", "ar"); w.Status.Node != "h1" || w.Desired != model.DesiredRunning || w.Status.State != model.StatePending {
		t.Fatalf("the reservation at its start: %s on %s (desired %s)", w.Status.State, w.Status.Node, w.Desired)
	}
}

// A migration cancelled while its destination prepares ends at once; one
// cancelled while the source sends asks the source to stop, and ends with
// its report. Either way the guest and its lease stay where they were.
func TestCancelMigration(t *testing.T) {
	ctx := context.Background()
	ctl, clk := hostsEnv(t, "h1", "h2")
	beatAll(t, ctl, "h1", "h2")
	w := createWS(t, ctl, "w", "1", "")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	w = running(t, ctl, w, clk.now())
	moving := func() map[int]string {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		v, _ := ctl.cal.Get(leaseID(w))
		return v.Moving
	}
	if _, err := ctl.CancelMigration(ctx, "p", "w"); err == nil {
		t.Fatal("cancelled a migration that is not")
	}
	if _, err := ctl.MigrateWorkspace(ctx, "p", "w", api.MigrateRequest{To: "h1"}); err == nil {
		t.Fatal("migrated to the host it runs on")
	}
	if _, err := ctl.MigrateWorkspace(ctx, "p", "w", api.MigrateRequest{To: "h9"}); err == nil {
		t.Fatal("migrated to an unknown host")
	}
	_, err := ctl.MigrateWorkspace(ctx, "p", "w", api.MigrateRequest{To: "h2", Mode: "sideways"})
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind != KindInvalid || len(ie.Fields) != 1 || ie.Fields[0].Field != "mode" ||
		!strings.Contains(ie.Fields[0].Reason, "sideways") {
		t.Fatalf("migrate in an unknown mode: got %#v, want invalid, naming the field and the value", err)
	}
	m, err := ctl.MigrateWorkspace(ctx, "p", "w", api.MigrateRequest{To: "h2", Mode: model.MigrateLive})
	if err != nil || m.Status.Migration == nil || moving()[0] != "h2" || m.Status.Migration.Mode != model.MigrateLive {
		t.Fatalf("migrate: %v %+v moving %v", err, m.Status.Migration, moving())
	}
	if _, err := ctl.MigrateWorkspace(ctx, "p", "w", api.MigrateRequest{To: "h2"}); err == nil {
		t.Fatal("a second migration while one runs")
	}
	if c, err := ctl.CancelMigration(ctx, "p", "w"); err != nil || c.Status.Migration != nil || len(moving()) != 0 {
		t.Fatalf("cancel while preparing: %v %+v moving %v", err, c.Status.Migration, moving())
	}
	m, _ = ctl.MigrateWorkspace(ctx, "p", "w", api.MigrateRequest{To: "h2"})
	since := m.Status.Migration.Since
	ep := &model.MigrationEndpoint{Memory: "10.0.0.2:5000", Disk: "nbd://10.0.0.2:5001/vda"}
	if err := ctl.MigrationReport(ctx, "h2", "p", "w", api.MigrationReport{ID: w.ID, Since: since, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	c, err := ctl.CancelMigration(ctx, "p", "w")
	if err != nil || c.Status.Migration == nil || !c.Status.Migration.Cancel {
		t.Fatalf("cancel while sending: %v %+v", err, c.Status.Migration)
	}
	if err := ctl.MigrationReport(ctx, "h1", "p", "w", api.MigrationReport{ID: w.ID, Since: since, Failed: "cancelled"}); err != nil {
		t.Fatal(err)
	}
	if w, _ := ctl.Workspace(ctx, "p", "w"); w.Status.Migration != nil || w.Status.Node != "h1" || len(moving()) != 0 {
		t.Fatalf("after the cancel: on %s migration %+v moving %v", w.Status.Node, w.Status.Migration, moving())
	}
}

// A workspace that does not run takes a resize for its next start, except
// what its saved memory cannot resume into when it is suspended.
func TestResizeIdle(t *testing.T) {
	ctx := context.Background()
	ctl, _ := hostsEnv(t, "h1")
	beatAll(t, ctl, "h1")
	createWS(t, ctl, "w", "1", "")
	if _, err := ctl.StopWorkspace(ctx, "p", "w", "stopped by user"); err != nil {
		t.Fatal(err)
	}
	v, mem := 4, model.ByteSize(model.GiB)
	w, err := ctl.ResizeWorkspace(ctx, "p", "w", api.ResizeRequest{VCPUs: &v, Memory: &mem})
	if err != nil || w.Spec.Quantum.VCPUs != 4 || w.Spec.Quantum.Memory != mem {
		t.Fatalf("resize a stopped workspace: %v %+v", err, w.Spec.Quantum)
	}
	small := model.ByteSize(512 * model.MiB)
	if _, err := ctl.ResizeWorkspace(ctx, "p", "w", api.ResizeRequest{Disk: &small}); err == nil {
		t.Fatal("a disk shrunk")
	}
	if _, err := ctl.ResizeWorkspace(ctx, "p", "w", api.ResizeRequest{}); err == nil {
		t.Fatal("an empty resize taken")
	}
	w, _ = ctl.mutateWS(ctx, "p", "w", func(w *model.Workspace) error { w.Status.State = model.StateSuspended; return nil })
	mem = 2 * model.GiB
	if _, err := ctl.ResizeWorkspace(ctx, "p", "w", api.ResizeRequest{Memory: &mem}); err == nil || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("the memory of a suspended workspace changed: %v", err)
	}
	cpu := 2.0
	if w, err := ctl.ResizeWorkspace(ctx, "p", "w", api.ResizeRequest{CPU: &cpu}); err != nil || w.Spec.Quantum.CPU != 2 {
		t.Fatalf("the CPU cap of a suspended workspace: %v", err)
	}
}
