package control

import (
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func TestGuard(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ws := func(name string, cores int64, desired model.Desired, state model.State, scheduled int) model.Workspace {
		w := model.Workspace{ID: "w-" + name, Project: "p", Desired: desired}
		w.Spec.Name = name
		w.Spec.Quantum.VCPUs, w.Spec.Quantum.CPU = 1, float64(cores)
		w.Spec.Quantum.Memory = 128 << 20
		w.Status.State, w.Status.Node, w.Status.Lease = state, "h1", "p/"+name
		w.Status.Timings.Scheduled = t0.Add(time.Duration(scheduled) * time.Second)
		return w
	}
	host := model.Resources{MilliCPU: 2000, Memory: 4 << 30, Disk: 100 << 30}
	type want struct {
		desired model.Desired
		held    bool
	}
	cases := []struct {
		name   string
		wss    []model.Workspace
		leases map[string]model.LeaseState // by workspace name; absent: no lease
		want   map[string]want
	}{
		{
			name:   "a running lease runs",
			wss:    []model.Workspace{ws("a", 1, model.DesiredRunning, model.StateRunning, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseRunning},
			want:   map[string]want{"a": {model.DesiredRunning, false}},
		},
		{
			// Found by the adversarial run: a Failed report ended the lease
			// and the agent started the guest again.
			name:   "a workspace whose lease is over is stopped",
			wss:    []model.Workspace{ws("a", 1, model.DesiredRunning, model.StateFailed, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseDone},
			want:   map[string]want{"a": {model.DesiredStopped, false}},
		},
		{
			name: "a running guest without a lease is stopped",
			wss:  []model.Workspace{ws("a", 1, model.DesiredRunning, model.StateRunning, 0)},
			want: map[string]want{"a": {model.DesiredStopped, false}},
		},
		{
			// The workspaces were read before the calendar suspended the
			// lease (their new desired state comes with the decision).
			name:   "a running guest whose lease was just suspended is left running",
			wss:    []model.Workspace{ws("a", 1, model.DesiredRunning, model.StateRunning, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseSuspended},
			want:   map[string]want{"a": {model.DesiredRunning, false}},
		},
		{
			name:   "a suspended lease keeps its workspace suspended",
			wss:    []model.Workspace{ws("a", 1, model.DesiredSuspended, model.StateSuspended, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseSuspended},
			want:   map[string]want{"a": {model.DesiredSuspended, false}},
		},
		{
			name:   "a suspended workspace whose lease was cancelled is stopped",
			wss:    []model.Workspace{ws("a", 1, model.DesiredSuspended, model.StateSuspended, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseCancelled},
			want:   map[string]want{"a": {model.DesiredStopped, false}},
		},
		{
			name:   "a waiting lease's workspace is not started",
			wss:    []model.Workspace{ws("a", 1, model.DesiredRunning, model.StatePending, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseScheduled},
			want:   map[string]want{"a": {model.DesiredRunning, true}},
		},
		{
			// A lease ended and the next one started while the old guest
			// still powers off: 3 cores on a 2-core host for as long.
			name: "a new guest waits for a stopping one",
			wss: []model.Workspace{
				ws("old", 2, model.DesiredStopped, model.StateStopping, 0),
				ws("new", 1, model.DesiredRunning, model.StatePending, 1),
			},
			leases: map[string]model.LeaseState{"old": model.LeaseDone, "new": model.LeaseRunning},
			want:   map[string]want{"old": {model.DesiredStopped, false}, "new": {model.DesiredRunning, true}},
		},
		{
			name: "a guest being suspended holds its room until saved",
			wss: []model.Workspace{
				ws("be", 2, model.DesiredSuspended, model.StateRunning, 0),
				ws("ar", 2, model.DesiredRunning, model.StatePending, 1),
			},
			leases: map[string]model.LeaseState{"be": model.LeaseSuspended, "ar": model.LeaseRunning},
			want:   map[string]want{"be": {model.DesiredSuspended, false}, "ar": {model.DesiredRunning, true}},
		},
		{
			name: "new guests start in calendar order while they fit",
			wss: []model.Workspace{
				ws("up", 1, model.DesiredRunning, model.StateRunning, 0),
				ws("second", 1, model.DesiredRunning, model.StatePending, 2),
				ws("first", 1, model.DesiredRunning, model.StatePending, 1),
			},
			leases: map[string]model.LeaseState{"up": model.LeaseRunning, "first": model.LeaseRunning, "second": model.LeaseRunning},
			want: map[string]want{"up": {model.DesiredRunning, false}, "first": {model.DesiredRunning, false},
				"second": {model.DesiredRunning, true}},
		},
		{
			name: "a resume waits for room too",
			wss: []model.Workspace{
				ws("stopping", 2, model.DesiredStopped, model.StateStopping, 0),
				ws("back", 1, model.DesiredRunning, model.StateSuspended, 1),
			},
			leases: map[string]model.LeaseState{"stopping": model.LeaseRunning, "back": model.LeaseRunning},
			want:   map[string]want{"stopping": {model.DesiredStopped, false}, "back": {model.DesiredRunning, true}},
		},
		{
			name:   "deleting is never held",
			wss:    []model.Workspace{ws("a", 4, model.DesiredDeleted, model.StateStopping, 0)},
			leases: map[string]model.LeaseState{"a": model.LeaseRunning},
			want:   map[string]want{"a": {model.DesiredDeleted, false}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			states := func(id string) (model.LeaseState, bool) {
				name := strings.TrimPrefix(id, "p/")
				st, ok := tc.leases[name]
				return st, ok
			}
			got := guard(tc.wss, states, host)
			if len(got) != len(tc.wss) {
				t.Fatalf("got %d workspaces, want %d", len(got), len(tc.wss))
			}
			for i, g := range got {
				w := tc.want[g.Spec.Name]
				if g.Desired != w.desired || (g.Status.Hold != "") != w.held {
					t.Errorf("%s: desired %s hold %q; want desired %s held %v", g.Spec.Name, g.Desired, g.Status.Hold, w.desired, w.held)
				}
				if g.Desired != tc.wss[i].Desired && !strings.HasPrefix(g.Status.Reason, "stopped:") {
					t.Errorf("%s: told to stop without saying why (reason %q)", g.Spec.Name, g.Status.Reason)
				}
			}
			for _, w := range tc.wss {
				if w.Status.Hold != "" || strings.HasPrefix(w.Status.Reason, "stopped:") {
					t.Errorf("guard changed its input %s", w.Spec.Name)
				}
			}
		})
	}
}
