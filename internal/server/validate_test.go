package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
	"vgrid/internal/store/bolt"
)

// hostile is one request an agent or an admin should not get through: it
// must be answered with status (400 unless set) naming field, and change
// nothing.
type hostile struct {
	name   string
	body   string
	field  string
	status int
}

// wantRefused checks that err is a refusal naming field.
func wantRefused(t *testing.T, err error, status int, field string) {
	t.Helper()
	if status == 0 {
		status = http.StatusBadRequest
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want %d naming %s", err, status, field)
	}
	if ce.Status != status || ce.Body.Code != api.CodeInvalid {
		t.Fatalf("got %d %s (%s), want %d invalid", ce.Status, ce.Body.Code, ce.Body.Message, status)
	}
	for _, f := range ce.Body.Fields {
		if f.Field == field {
			t.Logf("%d %s: %s", ce.Status, f.Field, f.Reason)
			return
		}
	}
	t.Fatalf("the error does not name %s: %q %+v", field, ce.Body.Message, ce.Body.Fields)
}

func labelsJSON(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	b.WriteString("}")
	return b.String()
}

// TestAgentInputIsValidated sends hostile reports and heartbeats over
// HTTP with n1's node token: each is refused with 400 naming the field,
// and the store does not move.
func TestAgentInputIsValidated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, err := e.admin.CreateWorkspace(ctx, []byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	if w.Status.Node != "n1" {
		t.Fatalf("workspace on %q, want n1", w.Status.Node)
	}
	report := func(fields string) string {
		return fmt.Sprintf(`{"id":%q,"generation":%d,"state":"Starting"%s}`, w.ID, w.Status.Generation, fields)
	}
	reports := []hostile{
		{"state Banana", fmt.Sprintf(`{"id":%q,"generation":%d,"state":"Banana"}`, w.ID, w.Status.Generation), "report.state", 0},
		{"state of the control plane", fmt.Sprintf(`{"id":%q,"generation":%d,"state":"Queued"}`, w.ID, w.Status.Generation), "report.state", 0},
		{"state null", fmt.Sprintf(`{"id":%q,"generation":%d,"state":null}`, w.ID, w.Status.Generation), "report.state", 0},
		{"reason of 900 KB", report(`,"reason":"` + strings.Repeat("x", 900<<10) + `"`), "report.reason", 0},
		{"reason with an escape sequence", report(`,"reason":"\u001b[2Jgone"`), "report.reason", 0},
		{"started in year 1", report(`,"started_at":"0001-02-03T04:05:06Z"`), "report.started_at", 0},
		{"guest ready in 9999", report(`,"guest_ready":"9999-12-31T23:59:59Z"`), "report.guest_ready", 0},
		{"agent received in 1999", report(`,"agent_received":"1999-12-31T23:59:59Z"`), "report.agent_received", 0},
		{"not a time", report(`,"process_started":"yesterday"`), "report.process_started", 0},
		{"negative pid", report(`,"pid":-1`), "report.pid", 0},
		{"negative cpu seconds", report(`,"cpu_seconds":-5`), "report.cpu_seconds", 0},
		{"huge cpu seconds", report(`,"cpu_seconds":1e300`), "report.cpu_seconds", 0},
		{"negative suspend bytes", report(`,"suspend_bytes":-1`), "report.suspend_bytes", 0},
		{"negative suspend took", report(`,"suspend_took":"-5s"`), "report.suspend_took", 0},
		{"unknown accel", report(`,"accel":"banana"`), "report.accel", 0},
		{"relative cgroup", report(`,"cgroup":{"cpu":"../../etc"}`), "report.cgroup.cpu", 0},
		{"guest address", report(`,"guest":{"vcpus":2,"memory_mib":512,"addresses":["not-an-ip"]}`), "report.guest.addresses[0]", 0},
		{"negative generation", fmt.Sprintf(`{"id":%q,"generation":-1,"state":"Starting"}`, w.ID), "report.generation", 0},
		{"generation 2^63", fmt.Sprintf(`{"id":%q,"generation":9223372036854775808,"state":"Starting"}`, w.ID), "report.generation", 0},
		{"no id", `{"generation":1,"state":"Starting"}`, "report.id", 0},
		{"unknown field", report(`,"stat":"Running"`), "report.stat", 0},
		{"field in another case", report(`,"State":"Running"`), "report.State", 0},
		{"field given twice", report(`,"state":"Running"`), "report.state", 0},
		{"trailing data", report(``) + `{"state":"Running"}`, "report", 0},
		{"not JSON", `{"id":`, "report", 0},
	}
	statusPath := "/nodes/n1/workspaces/default/demo/status"
	for _, tc := range reports {
		t.Run("report/"+tc.name, func(t *testing.T) {
			before := e.revision()
			err := e.node.Do(ctx, "PUT", statusPath, []byte(tc.body), nil)
			wantRefused(t, err, tc.status, tc.field)
			if after := e.revision(); after != before {
				t.Fatalf("store revision moved from %d to %d: something was stored", before, after)
			}
			if got := e.get("demo"); got.Status.State != w.Status.State || got.Status.Reason != w.Status.Reason || !got.Status.StartedAt.Equal(w.Status.StartedAt) {
				t.Fatalf("workspace changed: %+v", got.Status)
			}
		})
	}
	// The same report, well formed, is taken.
	if err := e.node.Do(ctx, "PUT", statusPath, []byte(report(`,"pid":42,"accel":"tcg","reason":"ok\n\tfine"`)), nil); err != nil {
		t.Fatalf("a good report: %v", err)
	}
	if got := e.get("demo"); got.Status.State != model.StateStarting || got.Status.PID != 42 {
		t.Fatalf("after a good report: %+v", got.Status)
	}

	node := func(fields string) string {
		return `{"node":{"name":"n1","capacity":{"millicpu":2000,"memory":"8Gi","disk":"100Gi"}` + fields + `}}`
	}
	capacity := func(c string) string { return `{"node":{"name":"n1","capacity":` + c + `}}` }
	heartbeats := []hostile{
		{"capacity -1", capacity(`{"millicpu":-1,"memory":"8Gi"}`), "node.capacity.millicpu", 0},
		{"memory -1", capacity(`{"millicpu":2000,"memory":-1}`), "node.capacity.memory", 0},
		{"capacity 2^63-1", capacity(`{"millicpu":9223372036854775807,"memory":"8Gi"}`), "node.capacity.millicpu", 0},
		{"capacity 2^63", capacity(`{"millicpu":9223372036854775808,"memory":"8Gi"}`), "node.capacity.millicpu", 0},
		{"memory 2^61", capacity(`{"millicpu":2000,"memory":"2048Pi"}`), "node.capacity.memory", 0},
		{"disk -1", capacity(`{"millicpu":2000,"memory":"8Gi","disk":-1}`), "node.capacity.disk", 0},
		{"bandwidth 2^62", capacity(`{"millicpu":2000,"memory":"8Gi","bandwidth":4611686018427387903}`), "node.capacity.bandwidth", 0},
		{"20000 labels", node(`,"labels":` + labelsJSON(20000)), "node.labels", 0},
		{"reserved label", node(`,"labels":{"vgrid.io/host":"n2"}`), `node.labels["vgrid.io/host"]`, 0},
		{"label value with a newline", node(`,"labels":{"zone":"a\nb"}`), "node.labels.zone", 0},
		{"another node's name", `{"node":{"name":"n2"}}`, "node.name", 0},
		{"unknown accel", node(`,"accel":"banana"`), "node.accel", 0},
		{"unknown cgroup", node(`,"cgroup":"v3"`), "node.cgroup", 0},
		{"heartbeat in 9999", node(`,"last_heartbeat":"9999-01-01T00:00:00Z"`), "node.last_heartbeat", 0},
		{"1000 boot samples", node(`,"measured":{"boot":[` + strings.TrimSuffix(strings.Repeat(`"1s",`, 1000), ",") + `]}`), "node.measured.boot", 0},
		{"address", node(`,"address":"http://x/ y"`), "node.address", 0},
		{"port", node(`,"address":"n1.example:99999"`), "node.address", 0},
		{"unknown field", node(`,"owner":"me"`), "node.owner", 0},
		{"unknown top-level field", `{"node":{"name":"n1"},"token":"x"}`, "token", 0},
		{"trailing data", node(``) + `]`, "body", 0},
	}
	nodeRecord := func() string {
		kv, err := e.st.Get(ctx, "nodes/n1")
		if err != nil {
			t.Fatal(err)
		}
		return string(kv.Value)
	}
	for _, tc := range heartbeats {
		t.Run("heartbeat/"+tc.name, func(t *testing.T) {
			before, rev := nodeRecord(), e.revision()
			err := e.node.Do(ctx, "PUT", "/nodes/n1/heartbeat", []byte(tc.body), nil)
			wantRefused(t, err, tc.status, tc.field)
			if after := nodeRecord(); after != before || e.revision() != rev {
				t.Fatalf("node record changed:\n%s\n%s", before, after)
			}
		})
	}
	if err := e.node.Do(ctx, "PUT", "/nodes/n1/heartbeat", []byte(node(`,"accel":"tcg","cgroup":"v2","agent_version":"v1.2.3","labels":{"zone":"eu-1","vgrid-io/x":"y"}`)), nil); err != nil {
		t.Fatalf("a good heartbeat: %v", err)
	}

	// A new host with hostile fields is not registered.
	join, err := e.admin.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := json.Marshal(e.csr("n3")) // a good one: the node's fields are what is refused
	registrations := []hostile{
		{"capacity -1", `{"node":{"name":"n3","capacity":{"millicpu":-1,"memory":"8Gi"}},"csr":` + string(csr) + `}`, "node.capacity.millicpu", 0},
		{"no memory", `{"node":{"name":"n3","capacity":{"millicpu":1000}},"csr":` + string(csr) + `}`, "node.capacity.memory", 0},
		{"20000 labels", `{"node":{"name":"n3","capacity":{"millicpu":1000,"memory":"1Gi"},"labels":` + labelsJSON(20000) + `},"csr":` + string(csr) + `}`, "node.labels", 0},
		{"registered in year 1", `{"node":{"name":"n3","capacity":{"millicpu":1000,"memory":"1Gi"},"registered_at":"0001-06-01T00:00:00Z"},"csr":` + string(csr) + `}`, "node.registered_at", 0},
		{"no csr", `{"node":{"name":"n3","capacity":{"millicpu":1000,"memory":"1Gi"}}}`, "csr", 0},
	}
	for _, tc := range registrations {
		t.Run("register/"+tc.name, func(t *testing.T) {
			err := e.admin.WithToken(join.Token).Do(ctx, "POST", "/nodes", []byte(tc.body), nil)
			wantRefused(t, err, tc.status, tc.field)
			if _, err := e.st.Get(ctx, "nodes/n3"); err == nil {
				t.Fatal("n3 was registered")
			}
		})
	}

	// Console tails and deletions name the workspace by a well-formed id.
	consolePath := "/nodes/n1/workspaces/default/demo/console"
	others := []struct {
		hostile
		method, path string
	}{
		{hostile{"console without id", "tail", "id", 0}, "PUT", consolePath},
		{hostile{"console with a bad id", "tail", "id", 0}, "PUT", consolePath + "?id=..%2Fx"},
		{hostile{"console of 65 KiB", strings.Repeat("x", 65<<10), "console", http.StatusRequestEntityTooLarge}, "PUT", consolePath + "?id=" + w.ID},
		{hostile{"deletion without id", "", "id", 0}, "DELETE", "/nodes/n1/workspaces/default/demo"},
	}
	for _, tc := range others {
		t.Run(tc.name, func(t *testing.T) {
			before := e.revision()
			var body any
			if tc.body != "" {
				body = []byte(tc.body)
			}
			err := e.node.Do(ctx, tc.method, tc.path, body, nil)
			wantRefused(t, err, tc.status, tc.field)
			if after := e.revision(); after != before {
				t.Fatalf("store revision moved from %d to %d", before, after)
			}
		})
	}
	if err := e.node.Do(ctx, "PUT", consolePath+"?id="+w.ID, []byte(strings.Repeat("x", 64<<10)), nil); err != nil {
		t.Fatalf("a 64 KiB console tail: %v", err)
	}
}

func (e *env) revision() int64 {
	e.t.Helper()
	rev, err := e.st.Revision(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return rev
}

// TestAdminInputIsValidated: POST /projects refuses bad names, unknown
// fields and trailing data, naming them.
func TestAdminInputIsValidated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []hostile{
		{"bad name", `{"name":"Banana!"}`, "name", 0},
		{"name too long", `{"name":"` + strings.Repeat("a", 64) + `"}`, "name", 0},
		{"name null", `{"name":null}`, "name", 0},
		{"unknown field", `{"name":"p1","owner":"me"}`, "owner", 0},
		{"trailing data", `{"name":"p1"} {"name":"p2"}`, "body", 0},
		{"not an object", `["p1"]`, "body", 0},
	} {
		t.Run("project/"+tc.name, func(t *testing.T) {
			before := e.revision()
			err := e.admin.Do(ctx, "POST", "/projects", []byte(tc.body), nil)
			wantRefused(t, err, tc.status, tc.field)
			if after := e.revision(); after != before {
				t.Fatalf("store revision moved from %d to %d", before, after)
			}
		})
	}
	if err := e.admin.Do(ctx, "POST", "/projects", []byte(`{"name":"p1"}`), nil); err != nil {
		t.Fatalf("a good project: %v", err)
	}
}

// imageEnv is a server whose image directory is dir.
func newImageEnv(t *testing.T) (*client.Client, string) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "images")
	if err := os.MkdirAll(filepath.Join(dir, "good"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: st, Logger: discardLogger(), ImageDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); st.Close() })
	admin, err := srv.Bootstrap(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Server: hs.URL, Token: admin})
	if err != nil {
		t.Fatal(err)
	}
	return cl, dir
}

func imageFileOf(t *testing.T, path string) model.ImageFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return model.ImageFile{Path: path, SHA256: hex.EncodeToString(h[:]), Size: int64(len(b))}
}

// TestImagesOnlyFromTheImageDirectory: POST /images takes files from the
// image directories only (symbolic links followed), and a file swapped for
// a symbolic link out of them after its registration is not served.
func TestImagesOnlyFromTheImageDirectory(t *testing.T) {
	admin, dir := newImageEnv(t)
	ctx := context.Background()
	disk := filepath.Join(dir, "good", "disk.img")
	if err := os.WriteFile(disk, []byte("a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("a secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	escape := filepath.Join(dir, "good", "escape.img")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(dir, "good", "inner.img")
	if err := os.Symlink(disk, inner); err != nil {
		t.Fatal(err)
	}
	good := imageFileOf(t, disk)
	image := func(f model.ImageFile) model.Image {
		return model.Image{Name: "img", Boot: "firmware", Disk: f, DiskFormat: "raw"}
	}
	with := func(p string) model.ImageFile { f := good; f.Path = p; return f }
	cases := []struct {
		name  string
		img   model.Image
		field string
	}{
		{"/etc/shadow", image(with("/etc/shadow")), "disk.path"},
		{"/etc/passwd", image(with("/etc/passwd")), "disk.path"},
		{"symlink escaping the image directory", image(imageFileOf(t, escape)), "disk.path"},
		{"path with ..", image(with(filepath.Join(dir, "good") + "/../../../" + filepath.Base(filepath.Dir(outside)) + "/secret")), "disk.path"},
		{"path with .. back inside", image(with(dir + "/good/../good/disk.img")), "disk.path"},
		{"relative path", image(with("good/disk.img")), "disk.path"},
		{"the image directory itself", image(with(dir)), "disk.path"},
		{"wrong size", image(func() model.ImageFile { f := good; f.Size++; return f }()), "disk.size"},
		{"upper-case sha256", image(func() model.ImageFile { f := good; f.SHA256 = strings.ToUpper(f.SHA256); return f }()), "disk.sha256"},
		{"kernel outside", func() model.Image {
			img := image(good)
			k := with("/etc/hostname")
			img.Boot, img.Kernel = "direct", &k
			return img
		}(), "kernel.path"},
		{"created in year 9999", func() model.Image {
			img := image(good)
			img.CreatedAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			return img
		}(), "created_at"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admin.RegisterImage(ctx, tc.img)
			wantRefused(t, err, 0, tc.field)
			if imgs, err := admin.Images(ctx); err != nil || len(imgs) != 0 {
				t.Fatalf("images %+v %v, want none", imgs, err)
			}
		})
	}

	// Inside the directory, through a link that stays inside too: taken
	// and served.
	if _, err := admin.RegisterImage(ctx, image(with(inner))); err != nil {
		t.Fatalf("an image in the image directory: %v", err)
	}
	read := func() (string, error) {
		rc, _, err := admin.ImageFile(ctx, "img", "disk")
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	if got, err := read(); err != nil || got != "a disk" {
		t.Fatalf("download: %q %v, want the disk", got, err)
	}
	// The file swapped for a link to a file outside: refused at download.
	if err := os.Remove(disk); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, disk); err != nil {
		t.Fatal(err)
	}
	got, err := read()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
		t.Fatalf("download of a file swapped for a link out: %q %v, want 409", got, err)
	}
	if strings.Contains(ce.Body.Message, outside) {
		t.Fatalf("the refusal shows where the link leads: %q", ce.Body.Message)
	}
}

// TestDecodeStrictNamesFields covers decodeStrict's own rules.
func TestDecodeStrictNamesFields(t *testing.T) {
	for _, tc := range []struct {
		name, body, field string
	}{
		{"empty", ``, "report"},
		{"spaces", "  \n", "report"},
		{"unknown", `{"id":"w1","x":1}`, "report.x"},
		{"case", `{"ID":"w1"}`, "report.ID"},
		{"twice", `{"id":"w1","id":"w2"}`, "report.id"},
		{"trailing", `{"id":"w1"}x`, "report"},
		{"two values", `{} {}`, "report"},
		{"wrong type", `{"pid":"42"}`, "report.pid"},
		{"float for int", `{"pid":4.5}`, "report.pid"},
		{"null int", `{"pid":null}`, "report.pid"},
		{"bad duration", `{"suspend_took":"soon"}`, "report.suspend_took"},
		{"bad time", `{"started_at":12}`, "report.started_at"},
		{"nested unknown", `{"guest":{"vcpus":1,"ram":2}}`, "report.guest.ram"},
		{"list of wrong items", `{"guest":{"addresses":[1]}}`, "report.guest.addresses[0]"},
		{"map twice", `{"cgroup":{"cpu":"/a","cpu":"/b"}}`, "report.cgroup.cpu"},
		{"map of wrong values", `{"cgroup":{"cpu":1}}`, "report.cgroup.cpu"},
		{"odd key", `{"cgroup":{"a.b":1}}`, `report.cgroup["a.b"]`},
		{"array root", `[]`, "report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r api.AgentReport
			err := decodeStrict("report", []byte(tc.body), &r)
			var he *httpError
			if !errors.As(err, &he) || he.status != http.StatusBadRequest {
				t.Fatalf("got %v, want a 400", err)
			}
			for _, f := range he.fields {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("%q does not name %s: %+v", he.msg, tc.field, he.fields)
		})
	}
	var r api.AgentReport
	body := `{"id":"w1","generation":2,"state":"Running","cgroup":{"cpu":"/sys/fs/cgroup/x"},"guest":{"vcpus":2,"memory_mib":512,"addresses":null},
		"started_at":"2026-11-24T12:00:00Z","suspend_took":"2s","cpu_seconds":1.5}` + "\n"
	if err := decodeStrict("report", []byte(body), &r); err != nil {
		t.Fatalf("a good report: %v", err)
	}
	want := api.AgentReport{ID: "w1", Generation: 2, State: model.StateRunning, Cgroup: map[string]string{"cpu": "/sys/fs/cgroup/x"},
		Guest: &model.GuestInfo{VCPUs: 2, MemoryMiB: 512}, StartedAt: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC),
		SuspendTook: model.Duration(2 * time.Second), CPUSeconds: 1.5}
	got, _ := json.Marshal(r)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("decoded\n%s\nwant\n%s", got, exp)
	}
}
