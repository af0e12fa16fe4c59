package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store/bolt"
	"vgrid/internal/testenv"
)

func TestValidateSave(t *testing.T) {
	many := make([]string, MaxImageTags+1)
	for i := range many {
		many[i] = "t" + string(rune('a'+i))
	}
	for _, tc := range []struct {
		name  string
		req   api.SaveRequest
		field string // "" = valid
		want  string
	}{
		{"ok", api.SaveRequest{Image: "my-env.v2"}, "", ""},
		{"ok with tags", api.SaveRequest{Image: "e", Public: true, Tags: []string{"gpu", "Py_3.12"}}, "", ""},
		{"no image", api.SaveRequest{}, "image", "required"},
		{"upper case", api.SaveRequest{Image: "MyEnv"}, "image", "lower-case"},
		{"slash", api.SaveRequest{Image: "a/b"}, "image", "lower-case"},
		{"too long", api.SaveRequest{Image: strings.Repeat("a", 64)}, "image", "at most 63"},
		{"bad tag", api.SaveRequest{Image: "e", Tags: []string{"ok", "no space"}}, "tags[1]", "a-z"},
		{"empty tag", api.SaveRequest{Image: "e", Tags: []string{""}}, "tags[0]", "a-z"},
		{"tag twice", api.SaveRequest{Image: "e", Tags: []string{"x", "x"}}, "tags[1]", "twice"},
		{"too many tags", api.SaveRequest{Image: "e", Tags: many}, "tags", "at most 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := ValidateSave(tc.req)
			if tc.field == "" {
				if len(fe) > 0 {
					t.Fatalf("want valid, got %v", fe)
				}
				return
			}
			if len(fe) != 1 || fe[0].Field != tc.field || !strings.Contains(fe[0].Reason, tc.want) {
				t.Fatalf("got %v, want one error on %s containing %q", fe, tc.field, tc.want)
			}
		})
	}
}

func TestSaveRefusal(t *testing.T) {
	ws := func(st model.State, desired model.Desired, node string) model.Workspace {
		return model.Workspace{ID: "w1", Project: "p", Spec: model.WorkspaceSpec{Name: "a"}, Desired: desired,
			Status: model.WorkspaceStatus{State: st, Node: node}}
	}
	migrating := ws(model.StateRunning, model.DesiredRunning, "h1")
	migrating.Status.Migration = &model.Migration{To: "h2"}
	moving := ws(model.StateStopped, model.DesiredStopped, "h2")
	moving.Status.Move = &model.Move{From: "h1"}
	for _, tc := range []struct {
		name string
		ws   model.Workspace
		want string // "" = may be saved
	}{
		{"running", ws(model.StateRunning, model.DesiredRunning, "h1"), ""},
		{"stopped", ws(model.StateStopped, model.DesiredStopped, "h1"), ""},
		{"suspended", ws(model.StateSuspended, model.DesiredSuspended, "h1"), ""},
		{"running, being stopped", ws(model.StateRunning, model.DesiredStopped, "h1"), "is to be stopped"},
		{"running, being suspended", ws(model.StateRunning, model.DesiredSuspended, "h1"), "is to be suspended"},
		{"stopped, about to start", ws(model.StateStopped, model.DesiredRunning, "h1"), "about to start"},
		{"suspended, about to resume", ws(model.StateSuspended, model.DesiredRunning, "h1"), "about to resume"},
		{"being deleted", ws(model.StateRunning, model.DesiredDeleted, "h1"), "being deleted"},
		{"queued", ws(model.StateQueued, model.DesiredRunning, ""), "on no host"},
		{"pending", ws(model.StatePending, model.DesiredRunning, "h1"), "Running, Stopped or Suspended"},
		{"starting", ws(model.StateStarting, model.DesiredRunning, "h1"), "Running, Stopped or Suspended"},
		{"stopping", ws(model.StateStopping, model.DesiredStopped, "h1"), "Running, Stopped or Suspended"},
		{"failed", ws(model.StateFailed, model.DesiredRunning, "h1"), "Running, Stopped or Suspended"},
		{"migrating", migrating, "migrating to host h2"},
		{"moving", moving, "moving to host h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := saveRefusal(tc.ws)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateSaveAgentInput(t *testing.T) {
	for _, tc := range []struct {
		r     api.SaveReport
		field string
	}{
		{api.SaveReport{Progress: &model.SaveProgress{Done: 1, Total: 2}}, ""},
		{api.SaveReport{Progress: &model.SaveProgress{}}, ""},
		{api.SaveReport{Failed: "no space left"}, ""},
		{api.SaveReport{}, "report"},
		{api.SaveReport{Progress: &model.SaveProgress{}, Failed: "x"}, "report"},
		{api.SaveReport{Progress: &model.SaveProgress{Done: 3, Total: 2}}, "progress"},
		{api.SaveReport{Progress: &model.SaveProgress{Done: -1, Total: 2}}, "progress"},
		{api.SaveReport{Failed: strings.Repeat("x", MaxSaveError+1)}, "failed"},
	} {
		fe := ValidateSaveReport(tc.r)
		if tc.field == "" && len(fe) > 0 || tc.field != "" && (len(fe) != 1 || fe[0].Field != tc.field) {
			t.Errorf("report %+v: got %v, want an error on %q", tc.r, fe, tc.field)
		}
	}
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		u     SaveUpload
		field string
	}{
		{SaveUpload{Size: 1, SHA256: sum, Consistency: "stopped", Took: time.Second}, ""},
		{SaveUpload{Size: 0, SHA256: sum}, "size"},
		{SaveUpload{Size: 1, SHA256: "AB"}, "sha256"},
		{SaveUpload{Size: 1, SHA256: sum, Took: -1}, "took"},
		{SaveUpload{Size: 1, SHA256: sum, Consistency: strings.Repeat("c", 129)}, "consistency"},
	} {
		fe := ValidateSaveUpload(tc.u)
		if tc.field == "" && len(fe) > 0 || tc.field != "" && (len(fe) != 1 || fe[0].Field != tc.field) {
			t.Errorf("upload %+v: got %v, want an error on %q", tc.u, fe, tc.field)
		}
	}
}

// newSaveCtl is a controller over a bolt store with a blob directory,
// host n1, the operator's direct-boot image "os" and workspaces of
// projects p and q in the states their names say (all on n1 but "queued").
func newSaveCtl(t *testing.T) *Controller {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &testClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	// Time goes on a millisecond a reading (saves are listed newest first).
	now := func() time.Time { clk.add(time.Millisecond); return clk.now() }
	ctl, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now, BlobDir: filepath.Join(dir, "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kernel := &model.ImageFile{Path: "/nonexistent/vmlinux", SHA256: strings.Repeat("b", 64), Size: 1}
	img := model.Image{Name: "os", Boot: "direct", DiskFormat: "raw", MinDisk: model.MiB, Kernel: kernel, Cmdline: "console=ttyS0",
		Disk: model.ImageFile{Path: "/nonexistent/disk", SHA256: strings.Repeat("a", 64), Size: 1}}
	if err := ctl.RegisterImage(ctx, img, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.RegisterNode(ctx, model.Node{Name: "n1", Accel: "tcg", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct {
		project, name string
		state         model.State
		desired       model.Desired
	}{
		{"p", "running", model.StateRunning, model.DesiredRunning},
		{"p", "stopped", model.StateStopped, model.DesiredStopped},
		{"p", "suspended", model.StateSuspended, model.DesiredSuspended},
		{"p", "starting", model.StateStarting, model.DesiredRunning},
		{"p", "queued", model.StateQueued, model.DesiredRunning},
		{"q", "theirs", model.StateRunning, model.DesiredRunning},
	} {
		// A lease of 2 h from now, so that the calendar, restored from
		// the workspaces at its first use, keeps them as they are.
		ws := model.Workspace{ID: "w00000000000" + string(rune('a'+i)), Project: w.project, Desired: w.desired, CreatedAt: clk.now(),
			Spec: model.WorkspaceSpec{Name: w.name, Image: "os", Duration: model.Duration(2 * time.Hour),
				Quantum: model.Quantum{VCPUs: 1, Memory: 256 * model.MiB}},
			Status: model.WorkspaceStatus{State: w.state, Node: "n1", Generation: 1, ExpiresAt: clk.now().Add(2 * time.Hour)}}
		if w.state == model.StateQueued {
			ws.Status.Node = ""
		}
		b, _ := json.Marshal(ws)
		if _, err := st.Create(ctx, wsKey(w.project, w.name), b); err != nil {
			t.Fatal(err)
		}
	}
	return ctl
}

func kindOf(err error) Kind {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return 0
}

func TestCreateSaveChecks(t *testing.T) {
	ctl := newSaveCtl(t)
	ctx := context.Background()
	if _, err := ctl.CreateSave(ctx, "p", "stopped", api.SaveRequest{Image: "taken"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, project, ws string
		req               api.SaveRequest
		kind              Kind // 0: recorded
		want              string
	}{
		{"running", "p", "running", api.SaveRequest{Image: "img-a", Tags: []string{"x"}}, 0, ""},
		{"suspended", "p", "suspended", api.SaveRequest{Image: "img-b", Public: true}, 0, ""},
		{"another project's workspace", "p", "theirs", api.SaveRequest{Image: "img-c"}, KindNotFound, "not found"},
		{"no such workspace", "p", "nope", api.SaveRequest{Image: "img-c"}, KindNotFound, "not found"},
		{"starting", "p", "starting", api.SaveRequest{Image: "img-c"}, KindConflict, "Running, Stopped or Suspended"},
		{"on no host", "p", "queued", api.SaveRequest{Image: "img-c"}, KindConflict, "on no host"},
		{"an image's name", "p", "running", api.SaveRequest{Image: "os"}, KindConflict, `image "os" exists`},
		{"a name being saved", "q", "theirs", api.SaveRequest{Image: "taken"}, KindConflict, "another save"},
		{"saved already", "p", "stopped", api.SaveRequest{Image: "img-d"}, KindConflict, "being saved already"},
		{"bad name", "p", "running", api.SaveRequest{Image: "Bad"}, KindInvalid, "lower-case"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ctl.CreateSave(ctx, tc.project, tc.ws, tc.req)
			if tc.kind == 0 {
				if err != nil {
					t.Fatalf("got %v, want it recorded", err)
				}
				if s.State != model.SavePending || s.Node != "n1" || s.Image != tc.req.Image || s.Public != tc.req.Public ||
					!saveIDRE.MatchString(s.ID) || s.WorkspaceID == "" || s.Project != tc.project {
					t.Fatalf("recorded %+v", s)
				}
				return
			}
			if kindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (kind %d), want kind %d with %q", err, kindOf(err), tc.kind, tc.want)
			}
		})
	}
	// Without a blob directory nothing can be saved.
	noBlobs, err := New(Config{Store: ctl.store, Logger: ctl.log, Now: ctl.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noBlobs.CreateSave(ctx, "p", "running", api.SaveRequest{Image: "img-z"}); kindOf(err) != KindConflict || !strings.Contains(err.Error(), "blob") {
		t.Fatalf("without blobs: got %v", err)
	}
}

// qcow2File makes a qcow2 with qemu-img (backing: a raw file under it,
// or none) and returns its content.
func qcow2File(t *testing.T, backing bool) []byte {
	t.Helper()
	if _, err := exec.LookPath(qemuImg); err != nil {
		testenv.Skip(t, "qemu-img not found: %v", err)
	}
	dir := t.TempDir()
	args := []string{"create", "-q", "-f", "qcow2"}
	if backing {
		base := filepath.Join(dir, "base.raw")
		if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-b", base, "-F", "raw")
	}
	path := filepath.Join(dir, "disk.qcow2")
	if b, err := exec.Command(qemuImg, append(args, path, "4M")...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, b)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (ctl *Controller) eventsOf(t *testing.T, project, name string) string {
	t.Helper()
	evs, err := ctl.Events(context.Background(), project, name)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

// TestSaveLife follows saves from pending to done and to failed: the
// host's assignments list them until they end, progress makes them
// running, the upload makes the image (owned by the project, booting as
// the workspace's image did) and ends the save done; a failure reported,
// or an upload the repository refuses, ends it failed with the reason.
// Each end is an event of the workspace.
func TestSaveLife(t *testing.T) {
	ctl := newSaveCtl(t)
	ctx := context.Background()
	good, backed := qcow2File(t, false), qcow2File(t, true)

	rev, err := ctl.store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan api.Assignments, 1)
	go func() {
		as, err := ctl.Assignments(ctx, "n1", rev, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		woke <- as
	}()
	time.Sleep(50 * time.Millisecond)
	s, err := ctl.CreateSave(ctx, "p", "running", api.SaveRequest{Image: "env", Public: true, Tags: []string{"v1"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case as := <-woke:
		if len(as.Saves) != 1 || as.Saves[0].ID != s.ID || as.Saves[0].WorkspaceID == "" {
			t.Fatalf("the host's long poll woke with saves %+v, want %s", as.Saves, s.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new save did not wake its host's long poll")
	}

	got, err := ctl.SaveReport(ctx, "n1", s.ID, api.SaveReport{Progress: &model.SaveProgress{Done: 5, Total: 10}})
	if err != nil || got.State != model.SaveRunning || got.Progress.Done != 5 {
		t.Fatalf("after progress: %+v, %v", got, err)
	}
	if _, err := ctl.SaveReport(ctx, "n2", s.ID, api.SaveReport{Progress: &model.SaveProgress{}}); kindOf(err) != KindGone {
		t.Errorf("another host's report: got %v, want gone", err)
	}
	sum := hexSum(good)
	got, err = ctl.SaveUpload(ctx, "n1", s.ID, SaveUpload{Size: int64(len(good)), SHA256: sum, Consistency: "crash-consistent, after sync", Took: 1500 * time.Millisecond}, bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if got.State != model.SaveDone || got.Digest != "sha256:"+sum || got.Bytes != int64(len(good)) || got.DoneAt.IsZero() || got.Took.D() != 1500*time.Millisecond {
		t.Fatalf("after upload: %+v", got)
	}
	img, _, err := ctl.imageRecord(ctx, "env")
	if err != nil {
		t.Fatal(err)
	}
	if img.Project != "p" || !img.Public || img.Digest != got.Digest || img.DiskFormat != "qcow2" ||
		img.Boot != "direct" || img.Kernel == nil || img.Cmdline != "console=ttyS0" || len(img.Tags) != 1 {
		t.Errorf("image made: %+v", img)
	}
	if ev := ctl.eventsOf(t, "p", "running"); !strings.Contains(ev, "saved as image env ("+itoa(len(good))+" bytes") {
		t.Errorf("events: %s", ev)
	}
	if _, err := ctl.SaveReport(ctx, "n1", s.ID, api.SaveReport{Failed: "late"}); kindOf(err) != KindGone {
		t.Errorf("a report after the end: got %v, want gone", err)
	}
	if as, err := ctl.Assignments(ctx, "n1", 0, 0); err != nil || len(as.Saves) != 0 {
		t.Errorf("assignments after the end: %+v, %v", as.Saves, err)
	}

	// A failure the host reports.
	s2, err := ctl.CreateSave(ctx, "p", "running", api.SaveRequest{Image: "env2"})
	if err != nil {
		t.Fatal(err)
	}
	got, err = ctl.SaveReport(ctx, "n1", s2.ID, api.SaveReport{Failed: "no space left on device"})
	if err != nil || got.State != model.SaveFailed || got.Error != "no space left on device" {
		t.Fatalf("after a failure: %+v, %v", got, err)
	}
	if ev := ctl.eventsOf(t, "p", "running"); !strings.Contains(ev, "save failed: no space left on device") {
		t.Errorf("events: %s", ev)
	}
	// An upload the repository refuses (a backing file).
	s3, err := ctl.CreateSave(ctx, "p", "running", api.SaveRequest{Image: "env3"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctl.SaveUpload(ctx, "n1", s3.ID, SaveUpload{Size: int64(len(backed)), SHA256: hexSum(backed)}, bytes.NewReader(backed))
	if err == nil {
		t.Fatal("an image with a backing file was taken")
	}
	saves, err := ctl.Saves(ctx, "p", "running")
	if err != nil || len(saves) != 3 {
		t.Fatalf("saves: %+v, %v", saves, err)
	}
	if saves[0].ID != s3.ID || saves[0].State != model.SaveFailed || !strings.Contains(saves[0].Error, "upload") {
		t.Errorf("newest save: %+v", saves[0])
	}
	if saves[2].ID != s.ID || saves[2].State != model.SaveDone {
		t.Errorf("oldest save: %+v", saves[2])
	}
	if _, _, err := ctl.imageRecord(ctx, "env3"); !isNotFound(err) {
		t.Errorf("a refused upload made an image: %v", err)
	}
	if _, err := ctl.Saves(ctx, "q", "running"); kindOf(err) != KindNotFound {
		t.Errorf("another project's saves: got %v, want not found", err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
