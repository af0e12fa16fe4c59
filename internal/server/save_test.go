package server

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/store/bolt"
	"vgrid/internal/testenv"
)

// newSaveEnv is newEnv with a blob directory, so that images can be
// pushed (and saved).
func newSaveEnv(t *testing.T) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	srv, err := New(Config{Store: st, Now: clk.Now, Logger: discardLogger(), BlobDir: filepath.Join(t.TempDir(), "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	hs, files, caPEM := serveTLS(t, srv, srv.Handler(), clk.Now)
	t.Cleanup(func() { hs.Close(); st.Close() })
	ctx := context.Background()
	admin, err := srv.Bootstrap(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Server: hs.URL, Token: admin, CACert: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, hs: hs, clk: clk, admin: cl, st: st, tls: files, caPEM: caPEM, keys: map[string]string{}}
	e.addImage("vgrid-guest")
	join, err := cl.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cl.WithToken(join.Token).RegisterNode(ctx, model.Node{Name: "n1", Accel: "tcg",
		Capacity: model.Resources{MilliCPU: 2000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}, e.csr("n1"))
	if err != nil {
		t.Fatal(err)
	}
	e.node, e.nodeReg = e.asNode(reg), reg
	return e
}

// postSave sends body to POST /workspaces/{name}/save with token and
// returns the status and answer.
func (e *env) postSave(token, name, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.hs.URL+api.Prefix+"/workspaces/"+name+"/save", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestSaveWorkspaceAPI(t *testing.T) {
	e := newSaveEnv(t)
	ctx := context.Background()
	w, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	w = e.report(w, api.AgentReport{State: model.StateStarting, PID: 42, StartedAt: now, ProcessStarted: now})
	e.report(w, api.AgentReport{State: model.StateRunning, PID: 42, Guest: &model.GuestInfo{VCPUs: 2}, GuestReady: now})
	other, err := e.admin.CreateProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	admin := e.admin.Token()
	for _, tc := range []struct {
		name, token, ws, body string
		status                int
		want                  string
	}{
		{"unknown field", admin, "demo", `{"image":"env","name":"x"}`, 400, "name"},
		{"not JSON", admin, "demo", `image: env`, 400, "not JSON"},
		{"empty body", admin, "demo", ``, 400, "empty body"},
		{"tags not a list", admin, "demo", `{"image":"env","tags":"v1"}`, 400, "tags"},
		{"bad image name", admin, "demo", `{"image":"My Env"}`, 400, "lower-case"},
		{"tag twice", admin, "demo", `{"image":"env","tags":["a","a"]}`, 400, "twice"},
		{"another project's workspace", other.Token, "demo", `{"image":"env"}`, 404, "not found"},
		{"no such workspace", admin, "nope", `{"image":"env"}`, 404, "not found"},
		{"an image's name", admin, "demo", `{"image":"vgrid-guest"}`, 409, "exists"},
		{"recorded", admin, "demo", `{"image":"env","tags":["v1"]}`, 202, `"state": "pending"`},
		{"saved already", admin, "demo", `{"image":"env2"}`, 409, "being saved already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.postSave(tc.token, tc.ws, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", status, body, tc.status, tc.want)
			}
		})
	}
	saves, err := e.admin.Saves(ctx, "demo")
	if err != nil || len(saves) != 1 || saves[0].Image != "env" || saves[0].Node != "n1" {
		t.Fatalf("saves: %+v, %v", saves, err)
	}
	s := saves[0]
	if _, err := e.admin.WithToken(other.Token).Saves(ctx, "demo"); !client.IsNotFound(err) {
		t.Errorf("another project lists the saves: %v", err)
	}
	as, err := e.node.Assignments(ctx, "n1", 0, 0)
	if err != nil || len(as.Saves) != 1 || as.Saves[0].ID != s.ID || as.Saves[0].WorkspaceID != w.ID {
		t.Fatalf("assignments: %+v, %v", as.Saves, err)
	}

	// The host's side: a user may not report, the host reports progress,
	// then uploads.
	if _, err := e.admin.SaveReport(ctx, "n1", s.ID, api.SaveReport{Progress: &model.SaveProgress{Done: 1, Total: 2}}); apiErr(t, err).Status != http.StatusForbidden {
		t.Errorf("a user's save report: got %v, want 403", err)
	}
	if _, err := e.node.SaveReport(ctx, "n1", s.ID, api.SaveReport{}); apiErr(t, err).Status != http.StatusBadRequest {
		t.Errorf("an empty save report: got %v, want 400", err)
	}
	got, err := e.node.SaveReport(ctx, "n1", s.ID, api.SaveReport{Progress: &model.SaveProgress{Done: 1, Total: 2}})
	if err != nil || got.State != model.SaveRunning {
		t.Fatalf("progress: %+v, %v", got, err)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img not found: the upload is not tried")
	}
	file := filepath.Join(t.TempDir(), "env.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", file, "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, b)
	}
	st, _ := os.Stat(file)
	got, err = e.node.SaveImageUpload(ctx, "n1", s.ID, file, "crash-consistent, after sync", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != model.SaveDone || !strings.HasPrefix(got.Digest, "sha256:") || got.Bytes != st.Size() {
		t.Fatalf("after the upload: %+v", got)
	}
	imgs, err := e.admin.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, img := range imgs {
		if img.Name == "env" {
			found = img.Digest == got.Digest && img.Project == "default" && img.Boot == "direct"
		}
	}
	if !found {
		t.Errorf("image env not listed as saved: %+v", imgs)
	}
	if _, err := e.node.SaveImageUpload(ctx, "n1", s.ID, file, "", 0); apiErr(t, err).Status != http.StatusGone {
		t.Errorf("an upload for an ended save: got %v, want 410", err)
	}
	evs, _ := e.admin.WorkspaceEvents(ctx, "demo")
	var msgs []string
	for _, ev := range evs {
		msgs = append(msgs, ev.Message)
	}
	if all := strings.Join(msgs, "\n"); !strings.Contains(all, "saved as image env") {
		t.Errorf("events: %s", all)
	}
}
