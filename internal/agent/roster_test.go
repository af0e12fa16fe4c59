package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
)

func TestRosterDue(t *testing.T) {
	member := func(rev int) model.Workspace {
		return model.Workspace{Spec: model.WorkspaceSpec{Context: &model.Context{Cluster: &model.ClusterContext{Revision: rev}}}}
	}
	for _, c := range []struct {
		name   string
		w      model.Workspace
		g      *model.GuestInfo
		pushed int
		want   int
	}{
		{"no guest agent yet", member(2), nil, 0, 0},
		{"not a member", model.Workspace{}, &model.GuestInfo{}, 0, 0},
		{"current", member(2), &model.GuestInfo{Roster: 2}, 0, 0},
		{"behind", member(3), &model.GuestInfo{Roster: 2}, 0, 3},
		{"booted before any roster", member(1), &model.GuestInfo{}, 0, 1},
		{"pushed already", member(3), &model.GuestInfo{Roster: 2}, 3, 0},
		{"pushed an older one", member(4), &model.GuestInfo{Roster: 2}, 3, 4},
	} {
		if got := rosterDue(c.w, c.g, c.pushed); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// rosterDriver is the fake driver whose guests run the guest agent's
// roster command: it records what it was given.
type rosterDriver struct {
	*fake.Driver
	mu   sync.Mutex
	got  []model.ClusterContext
	fail bool
}

func (d *rosterDriver) Exec(ctx context.Context, id string, req hypervisor.ExecRequest, out func(string, []byte) error) (hypervisor.ExecResult, error) {
	if len(req.Argv) != 2 || req.Argv[0] != guestAgentPath || req.Argv[1] != "roster" {
		return d.Driver.Exec(ctx, id, req, out)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		return hypervisor.ExecResult{ExitCode: 1}, nil
	}
	var c model.ClusterContext
	if err := json.Unmarshal(req.Stdin, &c); err != nil {
		return hypervisor.ExecResult{ExitCode: 2}, nil
	}
	d.got = append(d.got, c)
	return hypervisor.ExecResult{}, nil
}

// A running member whose guest has an older roster gets the new one pushed
// once, and its reports say so; a failed push waits before it is tried
// again.
func TestRosterPushedToRunningGuest(t *testing.T) {
	drv := &rosterDriver{Driver: fake.New(t.TempDir())}
	a, err := New(Config{Driver: drv, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Node: model.Node{Name: "h1", Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB, Disk: model.GiB}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := model.Workspace{ID: "w1", Project: "p", Spec: model.WorkspaceSpec{Name: "c-w-0",
		Context: &model.Context{Cluster: &model.ClusterContext{Name: "c", Revision: 2, Members: []model.RosterEntry{{Name: "c-w-0"}, {Name: "c-w-1"}}}}}}
	g := &model.GuestInfo{Roster: 1}
	wait := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			a.mu.Lock()
			busy := a.rosterBusy[w.ID]
			a.mu.Unlock()
			if !busy {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("push never ended")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	drv.fail = true
	a.pushRoster(ctx, w, g)
	wait()
	a.pushRoster(ctx, w, g) // within the retry delay: not tried
	wait()
	drv.mu.Lock()
	drv.fail = false
	drv.mu.Unlock()
	if len(drv.got) != 0 {
		t.Fatalf("pushes %v", drv.got)
	}
	a.mu.Lock()
	a.rosterRetry[w.ID] = time.Time{}
	a.mu.Unlock()
	a.pushRoster(ctx, w, g)
	wait()
	a.pushRoster(ctx, w, a.withRoster(w.ID, g)) // applied now: nothing more
	wait()
	if len(drv.got) != 1 || drv.got[0].Revision != 2 || len(drv.got[0].Members) != 2 {
		t.Fatalf("pushed %+v, want revision 2 once", drv.got)
	}
	if r := a.withRoster(w.ID, g); r.Roster != 2 || g.Roster != 1 {
		t.Fatalf("reported roster %d (guest's facts %d), want 2 (1 untouched)", r.Roster, g.Roster)
	}
}
