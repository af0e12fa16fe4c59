package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/policyfile"
	"vgrid/internal/store/bolt"
)

// TestStageTransition: a stage action records Status.Staging (image,
// hosts, since) on a workspace waiting to start, once; the start clears
// it, and so do the end (a lease cancelled while staging) and a requeue.
func TestStageTransition(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	due := now.Add(-time.Second)
	stage := calendar.Action{At: due, Kind: calendar.ActStage, Lease: "p/a", Hosts: []string{"n2", "n1"}}
	staging := &model.Staging{Image: "ubuntu", Hosts: []string{"n1", "n2"}, Since: due}
	cases := []struct {
		name    string
		a       calendar.Action
		state   model.State
		desired model.Desired
		node    string
		before  *model.Staging
		event   string
		after   *model.Staging
	}{
		{"stage a scheduled reservation", stage, model.StateScheduled, model.DesiredRunning, "", nil, "staging", staging},
		{"stage one placed at admission", stage, model.StatePending, model.DesiredRunning, "n1", nil, "staging", staging},
		{"stage twice: nothing new", stage, model.StateScheduled, model.DesiredRunning, "", staging, "", staging},
		{"stage on other hosts: recorded again", calendar.Action{At: now, Kind: calendar.ActStage, Lease: "p/a", Hosts: []string{"n3"}},
			model.StateScheduled, model.DesiredRunning, "", staging, "staging", &model.Staging{Image: "ubuntu", Hosts: []string{"n3"}, Since: now}},
		{"stage of a running workspace", stage, model.StateRunning, model.DesiredRunning, "n1", nil, "", nil},
		{"stage of a stopped workspace", stage, model.StateStopped, model.DesiredStopped, "n1", nil, "", nil},
		{"stage of a suspended workspace", stage, model.StateSuspended, model.DesiredSuspended, "n1", nil, "", nil},
		{"stage of another lease", calendar.Action{At: due, Kind: calendar.ActStage, Lease: "p/a#2", Hosts: []string{"n1"}},
			model.StateScheduled, model.DesiredRunning, "", nil, "", nil},
		{"start clears it", calendar.Action{At: now, Kind: calendar.ActStart, Lease: "p/a", Hosts: []string{"n1"}},
			model.StateScheduled, model.DesiredRunning, "", staging, "scheduled", nil},
		{"start of one placed at admission clears it", calendar.Action{At: now, Kind: calendar.ActStart, Lease: "p/a", Hosts: []string{"n1"}},
			model.StatePending, model.DesiredRunning, "n1", staging, "lease-started", nil},
		{"cancelled while staging", calendar.Action{At: now, Kind: calendar.ActEnd, Lease: "p/a", Hosts: []string{"n1"}, Reason: "cancelled"},
			model.StateScheduled, model.DesiredRunning, "", staging, "stopping", nil},
		{"requeued while staging", calendar.Action{At: now, Kind: calendar.ActRequeue, Lease: "p/a", Hosts: []string{"n1"}, Reason: "host n1 removed"},
			model.StateScheduled, model.DesiredRunning, "", staging, "requeued", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := model.Workspace{ID: "w1", Project: "p", Spec: model.WorkspaceSpec{Name: "a", Image: "ubuntu", Duration: model.Duration(time.Hour)},
				Desired: tc.desired, Status: model.WorkspaceStatus{State: tc.state, Node: tc.node, Lease: "p/a", Staging: tc.before}}
			got := transition(tc.a, w, now.Add(time.Hour), now)
			if got.Type != tc.event {
				t.Errorf("event %q, want %q", got.Type, tc.event)
			}
			if !equalStaging(got.WS.Status.Staging, tc.after) {
				t.Errorf("staging %+v, want %+v", got.WS.Status.Staging, tc.after)
			}
			if tc.a.Kind == calendar.ActStage && (got.WS.Status.State != tc.state || got.WS.Status.Node != tc.node || got.WS.Desired != tc.desired) {
				t.Errorf("stage changed more than Staging: %+v", got.WS.Status)
			}
			if tc.before != nil && w.Status.Staging != tc.before {
				t.Error("the workspace passed in was changed")
			}
		})
	}
}

func equalStaging(a, b *model.Staging) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Image == b.Image && slices.Equal(a.Hosts, b.Hosts) && a.Since.Equal(b.Since)
}

// TestStageList: a host's assignments list the images of the workspaces
// staging on it that still wait to start; a cluster's staging (all its
// members' hosts) is narrowed to each member's own host when the calendar
// knows the placement.
func TestStageList(t *testing.T) {
	start := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	ws := func(name, image string, st model.State, d model.Desired, hosts ...string) model.Workspace {
		w := model.Workspace{Project: "p", Spec: model.WorkspaceSpec{Name: name, Image: image}, Desired: d, Status: model.WorkspaceStatus{State: st}}
		if hosts != nil {
			w.Status.Staging = &model.Staging{Image: image, Hosts: hosts}
		}
		return w
	}
	all := []model.Workspace{
		ws("r1", "ubuntu", model.StateScheduled, model.DesiredRunning, "n1"),
		ws("r2", "alpine", model.StateScheduled, model.DesiredRunning, "n2"),
		ws("c-0", "debian", model.StateScheduled, model.DesiredRunning, "n1", "n2"), // a cluster's members
		ws("c-1", "debian", model.StateScheduled, model.DesiredRunning, "n1", "n2"),
		ws("gone", "ubuntu", model.StateStopped, model.DesiredStopped, "n1"), // cancelled: stale staging
		ws("up", "ubuntu", model.StateRunning, model.DesiredRunning, "n1"),
		ws("plain", "ubuntu", model.StateScheduled, model.DesiredRunning), // nothing to stage
	}
	// The calendar's view: the cluster's member c-0 on n1, c-1 on n2;
	// r1 starts earlier than the cluster.
	place := func(w model.Workspace) (string, time.Time, bool) {
		switch w.Spec.Name {
		case "r1":
			return "n1", start.Add(-time.Hour), true
		case "c-0":
			return "n1", start, true
		case "c-1":
			return "n2", start, true
		}
		return "", time.Time{}, false
	}
	cases := []struct {
		node  string
		place stagePlace
		want  []api.StageRequest
	}{
		{"n1", place, []api.StageRequest{{Image: "ubuntu", Workspace: "p/r1", Start: start.Add(-time.Hour)}, {Image: "debian", Workspace: "p/c-0", Start: start}}},
		{"n2", place, []api.StageRequest{{Image: "alpine", Workspace: "p/r2"}, {Image: "debian", Workspace: "p/c-1", Start: start}}},
		{"n3", place, nil},
		// Without the calendar's view every listed host stages.
		{"n1", nil, []api.StageRequest{{Image: "debian", Workspace: "p/c-0"}, {Image: "debian", Workspace: "p/c-1"}, {Image: "ubuntu", Workspace: "p/r1"}}},
	}
	for _, tc := range cases {
		got := stageList(tc.node, all, tc.place)
		if !slices.EqualFunc(got, tc.want, func(a, b api.StageRequest) bool {
			return a.Image == b.Image && a.Workspace == b.Workspace && a.Start.Equal(b.Start)
		}) {
			t.Errorf("%s (calendar view %v): got %+v, want %+v", tc.node, tc.place != nil, got, tc.want)
		}
	}
}

// TestAssignmentsStage: through the controller and its store, a
// reservation whose image must be fetched gets its stage action as long
// before its start as the fetch takes: 100Mi at the host's measured 10Mi/s
// (10s); or, under a policy whose shared link's bandwidth is measured, at
// the hosts' median stage rate (10, 20 and 40Mi/s: 20Mi/s, 5s), as a
// transfer on the link that its lease record names. The workspace records
// Status.Staging, and its host's assignments list the image (and describe
// it) while the workspace is not yet placed there; once it starts, the
// staging is cleared and the list is empty.
func TestAssignmentsStage(t *testing.T) {
	measured := policyfile.Default()
	measured.Link.Measured = true
	for _, tc := range []struct {
		name   string
		policy *calendar.Policy
		rates  []int64
		lead   time.Duration
	}{
		{"host rate", nil, []int64{10 << 20}, 10 * time.Second},
		{"measured link", &measured, []int64{10 << 20, 20 << 20, 40 << 20}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) { testAssignmentsStage(t, tc.policy, tc.rates, tc.lead) })
	}
}

// stageCtl is a controller under pol with image img (100Mi) and hosts
// h1, h2, ... that measured the given stage rates.
func stageCtl(t *testing.T, pol *calendar.Policy, rates []int64) (*Controller, *testClock) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &testClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	ctl, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img := model.Image{Name: "img", Boot: "direct", DiskFormat: "raw", MinDisk: model.GiB,
		Disk: model.ImageFile{Path: "/nonexistent/disk", SHA256: strings.Repeat("a", 64), Size: 100 << 20}}
	if err := ctl.RegisterImage(ctx, img, false); err != nil {
		t.Fatal(err)
	}
	for i, r := range rates {
		if _, err := ctl.RegisterNode(ctx, model.Node{Name: fmt.Sprintf("h%d", i+1), Accel: "tcg", Capacity: model.Resources{MilliCPU: 2000, Memory: 4 * model.GiB, Disk: 100 * model.GiB},
			Measured: &model.HostTimes{Stage: []int64{r}}}); err != nil {
			t.Fatal(err)
		}
	}
	return ctl, clk
}

func testAssignmentsStage(t *testing.T, pol *calendar.Policy, rates []int64, lead time.Duration) {
	ctl, clk := stageCtl(t, pol, rates)
	ctx := context.Background()
	start := clk.now().Add(time.Hour)
	createWS(t, ctl, "r", "2", fmt.Sprintf("{kind: reservation, start: %q}", start.Format(time.RFC3339)))
	rec, err := ctl.Lease(ctx, "p", "r")
	if err != nil || rec.Hold == nil || len(rec.Hold.Hosts) != 1 {
		t.Fatalf("lease %+v, %v: want it held on a host", rec, err)
	}
	host := rec.Hold.Hosts[0]
	if pol != nil {
		if len(rec.Transfers) != 1 || !rec.Transfers[0].From.Equal(start.Add(-lead)) || !rec.Transfers[0].To.Equal(start) {
			t.Fatalf("transfers %+v, want one over [%s, %s)", rec.Transfers, start.Add(-lead), start)
		}
	} else if len(rec.Transfers) != 0 {
		t.Fatalf("transfers %+v without a link", rec.Transfers)
	}
	stageOf := func() ([]api.StageRequest, []string, *model.Staging) {
		t.Helper()
		if err := ctl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		as, err := ctl.Assignments(ctx, host, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range as.Images {
			names = append(names, i.Name)
		}
		w, err := ctl.Workspace(ctx, "p", "r")
		if err != nil {
			t.Fatal(err)
		}
		return as.Stage, names, w.Status.Staging
	}
	clk.add(time.Hour - lead - time.Second)
	if reqs, _, s := stageOf(); len(reqs) != 0 || s != nil {
		t.Fatalf("%s before the start: stage %+v, staging %+v; want none yet", lead+time.Second, reqs, s)
	}
	clk.add(time.Second)
	reqs, imgs, s := stageOf()
	want := []api.StageRequest{{Image: "img", Workspace: "p/r", Start: start}}
	if !slices.EqualFunc(reqs, want, func(a, b api.StageRequest) bool {
		return a.Image == b.Image && a.Workspace == b.Workspace && a.Start.Equal(b.Start)
	}) || !slices.Contains(imgs, "img") {
		t.Fatalf("%s before the start: stage %+v (images %v), want %+v and the image described", lead, reqs, imgs, want)
	}
	if s == nil || s.Image != "img" || !slices.Equal(s.Hosts, []string{host}) || !s.Since.Equal(start.Add(-lead)) {
		t.Fatalf("staging %+v", s)
	}
	clk.add(lead)
	if reqs, _, s := stageOf(); len(reqs) != 0 || s != nil {
		t.Fatalf("at the start: stage %+v, staging %+v; want it cleared", reqs, s)
	}
}

// TestBestEffortOverLink: under a policy whose shared link's bandwidth is
// measured (hosts at 10, 20 and 40Mi/s: 20Mi/s), a best-effort workspace
// whose 100Mi image no host has gets its transfer at once, [now, now+5s),
// its stage action now, and its hold only from when the image is there:
// the host's slots are free during the transfer.
func TestBestEffortOverLink(t *testing.T) {
	pol := policyfile.Default()
	pol.Link.Measured = true
	ctl, clk := stageCtl(t, &pol, []int64{10 << 20, 20 << 20, 40 << 20})
	ctx := context.Background()
	now := clk.now()
	createWS(t, ctl, "b", "2", "{kind: best-effort}")
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := ctl.Lease(ctx, "p", "b")
	if err != nil || rec.Hold == nil || len(rec.Hold.Hosts) != 1 {
		t.Fatalf("lease %+v, %v: want it held on a host", rec, err)
	}
	ready := now.Add(5 * time.Second)
	if !rec.Hold.From.Equal(ready) || !rec.Hold.Start.Equal(ready) {
		t.Fatalf("hold from %s, run from %s; want both at %s, when the image is there", rec.Hold.From, rec.Hold.Start, ready)
	}
	if len(rec.Transfers) != 1 || !rec.Transfers[0].From.Equal(now) || !rec.Transfers[0].To.Equal(ready) {
		t.Fatalf("transfers %+v, want one over [%s, %s)", rec.Transfers, now, ready)
	}
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	as, err := ctl.Assignments(ctx, rec.Hold.Hosts[0], 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := ctl.Workspace(ctx, "p", "b")
	if len(as.Stage) != 1 || as.Stage[0].Image != "img" || as.Stage[0].Workspace != "p/b" {
		t.Fatalf("stage requests %+v (staging %+v, state %s), want img for p/b now", as.Stage, w.Status.Staging, w.Status.State)
	}
	clk.add(5 * time.Second)
	if err := ctl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	w, _ = ctl.Workspace(ctx, "p", "b")
	if w.Status.Node != rec.Hold.Hosts[0] || w.Status.Staging != nil {
		t.Fatalf("once the image is there: node %q, staging %+v; want it placed on %s, staging cleared", w.Status.Node, w.Status.Staging, rec.Hold.Hosts[0])
	}
}
