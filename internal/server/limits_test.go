package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/control"
)

// Issue 7, item 9: one project must not make the server unusable.
func TestProjectLimitsAndRefusalsKeepNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	small := func(name string) []byte {
		return []byte(fmt.Sprintf("name: %s\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 0.25, memory: 128Mi, disk: 1Gi}\nduration: 1h\nlease: {kind: best-effort}\n", name))
	}
	if _, err := e.srv.ctl.SetProjectLimits(ctx, "default", control.Limits{Workspaces: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := e.admin.CreateWorkspace(ctx, small(fmt.Sprintf("w%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.admin.CreateWorkspace(ctx, small("w3"))
	ce := apiErr(t, err)
	if ce.Status != http.StatusConflict || ce.Body.Code != api.CodeLimit || !strings.Contains(ce.Body.Message, "3 workspaces, its limit") {
		t.Fatalf("at the limit: %d %s %q", ce.Status, ce.Body.Code, ce.Body.Message)
	}
	// Another project is not held back by this one's limit.
	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.WithToken(other.Token).CreateWorkspace(ctx, small("w0")); err != nil {
		t.Fatalf("another project: %v", err)
	}
	if _, err := e.srv.ctl.SetProjectLimits(ctx, "default", control.Limits{Workspaces: -1}); err == nil {
		t.Fatalf("a negative limit was accepted")
	}

	// Refused creates leave nothing behind in the calendar or the store.
	before, err := e.srv.ctl.CalendarSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Replace(goodSpec, "memory: 512Mi", "memory: 64Gi", 1)
	for i := range 60 { // under the rate limit's burst
		spec := strings.Replace(huge, "name: demo", fmt.Sprintf("name: r%d", i), 1)
		_, err := e.admin.WithToken(other.Token).CreateWorkspace(ctx, []byte(spec))
		if ce := apiErr(t, err); ce.Body.Code != api.CodeCapacity {
			t.Fatalf("create %d: %s, want a capacity refusal", i, ce.Body.Code)
		}
	}
	after, err := e.srv.ctl.CalendarSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Leases) != len(before.Leases) {
		t.Fatalf("the calendar holds %d leases after 60 refusals, %d before", len(after.Leases), len(before.Leases))
	}
	if kvs, _ := e.st.List(ctx, "leases/"); len(kvs) != len(before.Leases) {
		t.Fatalf("%d lease records stored, want %d", len(kvs), len(before.Leases))
	}
}
