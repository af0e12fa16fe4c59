package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"vgrid/api"
	"vgrid/internal/model"
)

// seedWorkspaces stores n workspaces of project p directly.
func (e *env) seedWorkspaces(tb testing.TB, p string, n int) {
	for i := 0; i < n; i++ {
		w := model.Workspace{ID: fmt.Sprintf("w%05d", i), Project: p, Spec: model.WorkspaceSpec{Name: fmt.Sprintf("ws-%05d", i)}}
		b, _ := json.Marshal(w)
		if _, err := e.st.Update(context.Background(), "ws/"+p+"/"+w.Spec.Name, b, 0); err != nil {
			tb.Fatal(err)
		}
	}
}

// Listing walks every page once, in order, and sees only its project.
func TestWorkspaceListPages(t *testing.T) {
	e := newEnv(t)
	e.seedWorkspaces(t, "default", 250)
	e.seedWorkspaces(t, "other", 30)
	ctx := context.Background()
	var names []string
	cont, pages := "", 0
	for {
		l, err := e.admin.ListWorkspacesPage(ctx, 100, cont)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, w := range l.Workspaces {
			if w.Project != "default" {
				t.Fatalf("page %d has %s of project %s", pages, w.Spec.Name, w.Project)
			}
			names = append(names, w.Spec.Name)
		}
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if pages != 3 || len(names) != 250 {
		t.Fatalf("got %d workspaces in %d pages, want 250 in 3", len(names), pages)
	}
	for i, n := range names {
		if want := fmt.Sprintf("ws-%05d", i); n != want {
			t.Fatalf("workspace %d is %s, want %s", i, n, want)
		}
	}
	all, err := e.admin.ListWorkspaces(ctx)
	if err != nil || len(all) != 250 {
		t.Fatalf("all pages: %d %v", len(all), err)
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x"} {
		var out api.WorkspaceList
		err := e.admin.Do(ctx, "GET", "/workspaces?"+bad, nil, &out)
		if ae := apiErr(t, err); ae.Status != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400", bad, ae.Status)
		}
	}
}

// BenchmarkListWorkspacesPage100Of5000 is one page of 100 from a project of
// 5,000 workspaces, at the server (handler, store read, JSON).
func BenchmarkListWorkspacesPage100Of5000(b *testing.B) {
	e := newEnv(b)
	e.seedWorkspaces(b, "default", 5000)
	h := e.srv.Handler()
	tok := e.admin.Token()
	e.srv.SetRateLimit(RateLimit{Disabled: true}) // it measures the handler, not the limit
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("GET", api.Prefix+"/workspaces?limit=100&continue=ws-02500", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}
