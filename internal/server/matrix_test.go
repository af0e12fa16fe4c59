package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"vgrid/api"
	"vgrid/internal/model"
)

// Issue 7: every route, called by every role, about an object of another
// project and about one that does not exist. No answer may tell the two
// apart, name the other project's object or show its context, and no
// route answers 5xx; a role a route does not admit gets 401 or 403.
func TestEveryRouteEveryRole(t *testing.T) {
	e := newEnv(t)
	// It checks who may call what, not the rate limit (every route, for
	// each caller in turn, is more than a burst).
	e.srv.SetRateLimit(RateLimit{Disabled: true})
	ctx := context.Background()
	pa, err := e.admin.CreateProject(ctx, "pa")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := e.admin.CreateProject(ctx, "pb")
	if err != nil {
		t.Fatal(err)
	}
	const secretEnv, secretData = "PA-ENV-VALUE-7Q", "PA-USER-DATA-7Q"
	paSpec := fmt.Sprintf(`name: pa-secret
image: vgrid-guest
quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi, disk: 1Gi}
duration: 2h
context:
  env: {K: %s}
  user_data: %s
`, secretEnv, secretData)
	w, err := e.admin.WithToken(pa.Token).CreateWorkspace(ctx, []byte(paSpec))
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	if err := e.node.Report(ctx, "n1", w, api.AgentReport{ID: w.ID, Generation: w.Status.Generation, State: model.StateRunning,
		PID: 7, StartedAt: now, ProcessStarted: now, GuestReady: now}); err != nil {
		t.Fatal(err)
	}
	pbSpec := strings.NewReplacer("pa-secret", "pb-own", secretEnv, "pb-env", secretData, "pb-data").Replace(paSpec)
	if _, err := e.admin.WithToken(pb.Token).CreateWorkspace(ctx, []byte(pbSpec)); err != nil {
		t.Fatal(err)
	}
	join, err := e.admin.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	reg2, err := e.admin.WithToken(join.Token).RegisterNode(ctx, model.Node{Name: "n2", Accel: "tcg",
		Capacity: model.Resources{MilliCPU: 1000, Memory: model.GiB, Disk: 10 * model.GiB}}, e.csr("n2"))
	if err != nil {
		t.Fatal(err)
	}

	type caller struct {
		name, token, role string
		// seesPA: n1 runs pa's workspace, so its agent reads all of it.
		// seesNames: a site admin sees every project's leases in the
		// calendar and usage (never their workspaces' context).
		seesPA, seesNames bool
		// reg, for a node, is its registration: it presents its
		// certificate.
		reg api.NodeRegistered
	}
	callers := []caller{
		{"no token", "", "", false, false, api.NodeRegistered{}},
		{"unknown token", "vgu_" + strings.Repeat("0", 48), "", false, false, api.NodeRegistered{}},
		{"user of pb", pb.Token, RoleUser, false, false, api.NodeRegistered{}},
		{"join token", join.Token, RoleJoin, false, false, api.NodeRegistered{}},
		{"node n2", reg2.Token, RoleNode, false, false, reg2},
		{"node n1", e.node.Token(), RoleNode, true, true, e.nodeReg},
		// Last: an admin may revoke hosts and tokens.
		{"admin of default", e.admin.Token(), RoleAdmin, false, true, api.NodeRegistered{}},
	}
	params := regexp.MustCompile(`\{[a-z]+\}`)
	path := func(route, target string) string {
		return params.ReplaceAllStringFunc(route, func(p string) string {
			switch p {
			case "{name}":
				return target
			case "{node}":
				return "n1"
			case "{project}":
				return "pa"
			case "{file}":
				return "rootfs.img"
			}
			return "x"
		})
	}
	call := func(c caller, method, p string) (int, string) {
		var body io.Reader
		if method == "POST" || method == "PUT" {
			body = bytes.NewBufferString("{}")
		}
		req, err := http.NewRequest(method, e.hs.URL+api.Prefix+p, body)
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := e.httpClient(c.reg).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, p, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	routes := 0
	for _, c := range callers {
		for _, ep := range endpoints {
			routes++
			what := fmt.Sprintf("%s: %s %s", c.name, ep.method, ep.path)
			code, got := call(c, ep.method, path(ep.path, "pa-secret"))
			if code >= 500 {
				t.Errorf("%s: %d %s", what, code, got)
			}
			allowed := ep.roles == nil || slices.Contains(ep.roles, c.role)
			switch {
			case c.role == "" && code != http.StatusUnauthorized:
				t.Errorf("%s: %d without a valid token, want 401", what, code)
			case c.role != "" && !allowed && code != http.StatusForbidden && code != http.StatusUnauthorized:
				t.Errorf("%s: %d for a role the route does not admit, want 403", what, code)
			}
			if c.seesPA {
				continue
			}
			if strings.Contains(got, secretEnv) || strings.Contains(got, secretData) {
				t.Errorf("%s: the answer shows pa's workspace context: %s", what, got)
			}
			if !strings.Contains(ep.path, "{name}") {
				if !c.seesNames && strings.Contains(got, "pa-secret") {
					t.Errorf("%s: the answer names pa's workspace: %s", what, got)
				}
				continue
			}
			// About pa's object, the same answer as about nothing.
			code2, none := call(c, ep.method, path(ep.path, "zz-nothing"))
			if code != code2 || strings.ReplaceAll(got, "pa-secret", "zz-nothing") != none {
				t.Errorf("%s: pa's object and no object are answered differently:\n %d %s\n %d %s", what, code, got, code2, none)
			}
		}
	}
	// pa's workspace is untouched, and what pb can read of its own never
	// names pa's.
	if got, err := e.admin.WithToken(pa.Token).GetWorkspace(ctx, "pa-secret"); err != nil || got.Desired != model.DesiredRunning {
		t.Errorf("pa's workspace after the walk: %+v %v", got.Desired, err)
	}
	evs, err := e.admin.WithToken(pb.Token).WorkspaceEvents(ctx, "pb-own")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(ev.Message, "pa-secret") {
			t.Errorf("pb's event names pa's workspace: %s", ev.Message)
		}
	}
	t.Logf("%d route×role calls (%d routes, %d callers)", routes, len(endpoints), len(callers))
}
