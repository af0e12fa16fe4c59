package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
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

// repoEnv is a control plane with a blob directory, the operator's image
// "os", and user clients of projects a and b.
type repoEnv struct {
	*env
	blobs string
	a, b  *client.Client
	aTok  string // a's token
}

func newRepoEnv(t *testing.T) *repoEnv {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img not found: %v", err)
	}
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	blobs := filepath.Join(dir, "blobs")
	srv, err := New(Config{Store: st, Now: clk.Now, Logger: discardLogger(), BlobDir: blobs})
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
	mk := func(tok string) *client.Client {
		cl, err := client.New(client.Config{Server: hs.URL, Token: tok, CACert: caPEM})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	e := &env{t: t, srv: srv, hs: hs, clk: clk, admin: mk(admin), st: st, tls: files, caPEM: caPEM, keys: map[string]string{}}
	e.addImage("os")
	join, err := e.admin.CreateToken(ctx, "default", RoleJoin)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := e.admin.WithToken(join.Token).RegisterNode(ctx, model.Node{Name: "n1", Accel: "tcg",
		Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}, e.csr("n1"))
	if err != nil {
		t.Fatal(err)
	}
	e.node, e.nodeReg = e.asNode(reg), reg
	ie := &repoEnv{env: e, blobs: blobs}
	for _, p := range []struct {
		name string
		cl   **client.Client
	}{{"a", &ie.a}, {"b", &ie.b}} {
		tok, err := srv.CreateToken(ctx, p.name, RoleUser)
		if err != nil {
			t.Fatal(err)
		}
		*p.cl = mk(tok)
		if p.name == "a" {
			ie.aTok = tok
		}
	}
	return ie
}

func rawDisk(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Push, list, get, pull and delete through HTTP, as each project sees
// them.
func TestImageRepositoryHTTP(t *testing.T) {
	e := newRepoEnv(t)
	ctx := context.Background()
	disk := rawDisk(1<<20, 1)
	var calls, last int64
	img, err := e.a.PushImage(ctx, "a-img", bytes.NewReader(disk), int64(len(disk)), client.PushOptions{Format: "raw", Tags: []string{"v1"},
		SHA256: sum(disk), Progress: func(done, total int64) { calls++; last = done }})
	if err != nil {
		t.Fatal(err)
	}
	if img.Project != "a" || img.Public || img.Digest != "sha256:"+sum(disk) || img.Size != 1<<20 || calls == 0 || last != 1<<20 {
		t.Fatalf("pushed %+v, progress %d calls, last %d", img, calls, last)
	}
	if _, err := e.a.PushImage(ctx, "a-pub", bytes.NewReader(disk), int64(len(disk)), client.PushOptions{Format: "raw", Public: true}); err != nil {
		t.Fatal(err)
	}
	names := func(cl *client.Client) string {
		imgs, err := cl.Images(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, im := range imgs {
			out = append(out, im.Name)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		who  string
		cl   *client.Client
		list string
		get  map[string]int // image: status of GET /images/{name} and of its disk
	}{
		{"a", e.a, "a-img a-pub os", map[string]int{"a-img": 200, "a-pub": 200, "os": 200}},
		{"b", e.b, "a-pub os", map[string]int{"a-img": 404, "a-pub": 200, "os": 200}},
		{"admin", e.admin, "a-img a-pub os", map[string]int{"a-img": 200, "a-pub": 200}},
	} {
		if got := names(tc.cl); got != tc.list {
			t.Errorf("%s lists %q, want %q", tc.who, got, tc.list)
		}
		for name, want := range tc.get {
			_, err := tc.cl.GetImage(ctx, name)
			if got := imgStatus(err); got != want {
				t.Errorf("%s GET %s: %d (%v), want %d", tc.who, name, got, err, want)
			}
			if name == "os" {
				continue
			}
			var buf bytes.Buffer
			_, err = tc.cl.PullImage(ctx, name, &buf, nil)
			if got := imgStatus(err); got != want || (err == nil && !bytes.Equal(buf.Bytes(), disk)) {
				t.Errorf("%s pull %s: %d (%v), want %d", tc.who, name, got, err, want)
			}
		}
	}
	// Another project cannot take the name; nor delete the image.
	_, err = e.b.PushImage(ctx, "a-pub", bytes.NewReader(disk), int64(len(disk)), client.PushOptions{Format: "raw"})
	if got := imgStatus(err); got != http.StatusConflict {
		t.Errorf("b pushing a's name: %d %v, want 409", got, err)
	}
	if got := imgStatus(e.b.DeleteImage(ctx, "a-pub")); got != http.StatusForbidden {
		t.Errorf("b deleting a's public image: %d, want 403", got)
	}
	if got := imgStatus(e.b.DeleteImage(ctx, "a-img")); got != http.StatusNotFound {
		t.Errorf("b deleting a's private image: %d, want 404", got)
	}
	// In use by b's workspace: refused, naming it for the admin.
	if _, err := e.b.CreateWorkspace(ctx, []byte("name: w\nimage: a-pub\nquantum: {vcpus: 1, cpu: 0.5, memory: 256Mi, disk: 1Gi}\nduration: 1h\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.CreateWorkspace(ctx, []byte("name: w2\nimage: a-img\nquantum: {vcpus: 1, cpu: 0.5, memory: 256Mi, disk: 1Gi}\nduration: 1h\n")); imgStatus(err) != http.StatusBadRequest {
		t.Errorf("b creating a workspace of a's private image: %v, want 400", err)
	}
	err = e.admin.DeleteImage(ctx, "a-pub")
	if imgStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), `image "a-pub" is used by workspaces b/w`) {
		t.Errorf("deleting an image in use: %v", err)
	}
	if err := e.a.DeleteImage(ctx, "a-img"); err != nil {
		t.Fatal(err)
	}
	if got := names(e.a); got != "a-pub os" {
		t.Errorf("after the delete a lists %q", got)
	}
}

// Refusals of PUT /images/{name} through HTTP: status, field, nothing
// kept.
func TestPushImageRefusedHTTP(t *testing.T) {
	e := newRepoEnv(t)
	disk := rawDisk(64<<10, 2)
	qcow := filepath.Join(t.TempDir(), "d.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", qcow, "4M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	qdisk, err := os.ReadFile(qcow)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		query  string
		header map[string]string
		body   []byte
		chunk  bool // no Content-Length
		status int
		field  string
	}{
		{"digest mismatch", "format=raw", map[string]string{api.HeaderSHA256: strings.Repeat("0", 64)}, disk, false, 400, "sha256"},
		{"digest not hex", "format=raw", map[string]string{api.HeaderSHA256: "sha256:" + sum(disk)}, disk, false, 400, api.HeaderSHA256},
		{"format mismatch", "format=raw", nil, qdisk, false, 400, "format"},
		{"format missing", "", nil, disk, false, 400, "format"},
		{"unknown parameter", "format=raw&color=red", nil, disk, false, 400, "color"},
		{"public not a boolean", "format=raw&public=yes", nil, disk, false, 400, "public"},
		{"bad tag", "format=raw&tag=a%20b", nil, disk, false, 400, "tag[0]"},
		{"no length", "format=raw", nil, disk, true, 411, ""},
		{"empty body", "format=raw", nil, []byte{}, false, 400, "size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.chunk {
				body = io.MultiReader(body) // unknown length: chunked
			}
			req, _ := http.NewRequest("PUT", e.hs.URL+api.Prefix+"/images/x?"+tc.query, body)
			req.Header.Set("Authorization", "Bearer "+e.aTok)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := e.hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || (tc.field != "" && !strings.Contains(string(raw), `"field": "`+tc.field+`"`)) {
				t.Fatalf("got %d %s, want %d naming %s", resp.StatusCode, raw, tc.status, tc.field)
			}
			if _, err := e.admin.GetImage(context.Background(), "x"); imgStatus(err) != 404 {
				t.Fatalf("image stored: %v", err)
			}
			left, _ := filepath.Glob(filepath.Join(e.blobs, "*", "*"))
			tmps, _ := filepath.Glob(filepath.Join(e.blobs, ".upload-*"))
			if len(left)+len(tmps) > 0 {
				t.Fatalf("blob directory keeps %v %v", left, tmps)
			}
		})
	}
}

// An agent downloads a pushed image's disk from its blob, with ranges.
func TestPushedImageServedWithRanges(t *testing.T) {
	e := newRepoEnv(t)
	ctx := context.Background()
	disk := make([]byte, 256<<10)
	for i := range disk {
		disk[i] = byte(i * 7)
	}
	if _, err := e.a.PushImage(ctx, "img", bytes.NewReader(disk), int64(len(disk)), client.PushOptions{Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	rc, total, err := e.node.ImageFileFrom(ctx, "img", "disk", 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if total != int64(len(disk)) || !bytes.Equal(got, disk[1000:]) {
		t.Fatalf("range from 1000: total %d, %d bytes, same %v", total, len(got), bytes.Equal(got, disk[1000:]))
	}
}

func imgStatus(err error) int {
	if err == nil {
		return 200
	}
	if ce, ok := err.(*client.Error); ok {
		return ce.Status
	}
	return -1
}

// FuzzParsePush: any query, digest header and length is refused with an
// error or read into a push whose values are those given.
func FuzzParsePush(f *testing.F) {
	f.Add("format=raw&public=true&tag=a&tag=b", "", int64(10))
	f.Add("format=qcow2", strings.Repeat("a", 64), int64(1<<30))
	f.Add("format=raw&format=qcow2", "x", int64(-1))
	f.Add("%zz=1&public", "", int64(0))
	f.Fuzz(func(t *testing.T, query, digest string, length int64) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		h := http.Header{}
		if digest != "" {
			h.Set(api.HeaderSHA256, digest)
		}
		req, err := parsePush("x", q, h, length)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if req.Size != length || length < 0 {
			t.Fatalf("size %d from length %d", req.Size, length)
		}
		if req.Format != q.Get("format") || len(q["format"]) != 1 {
			t.Fatalf("format %q from %v", req.Format, q)
		}
		if digest != "" && req.SHA256 != digest {
			t.Fatalf("digest %q from %q", req.SHA256, digest)
		}
		if len(req.Tags) != len(q["tag"]) {
			t.Fatalf("tags %v from %v", req.Tags, q)
		}
	})
}

// parsePush's refusals name the parameter.
func TestParsePush(t *testing.T) {
	for _, tc := range []struct {
		query, digest string
		length        int64
		field         string // "": accepted
		status        int
	}{
		{"format=raw", "", 5, "", 0},
		{"format=qcow2&public=true&tag=a&tag=b", strings.Repeat("f", 64), 5, "", 0},
		{"", "", 5, "format", 400},
		{"format=raw&format=raw", "", 5, "format", 400},
		{"format=raw&public=maybe", "", 5, "public", 400},
		{"format=raw&public=true&public=false", "", 5, "public", 400},
		{"format=raw&size=3", "", 5, "size", 400},
		{"format=raw", strings.Repeat("F", 64), 5, api.HeaderSHA256, 400},
		{"format=raw", "", -1, "", http.StatusLengthRequired},
	} {
		q, _ := url.ParseQuery(tc.query)
		h := http.Header{}
		if tc.digest != "" {
			h.Set(api.HeaderSHA256, tc.digest)
		}
		_, err := parsePush("x", q, h, tc.length)
		if tc.status == 0 {
			if err != nil {
				t.Errorf("%q: %v", tc.query, err)
			}
			continue
		}
		he, ok := err.(*httpError)
		if !ok || he.status != tc.status {
			t.Errorf("%q: %v, want status %d", tc.query, err, tc.status)
			continue
		}
		if tc.field != "" && (len(he.fields) == 0 || he.fields[0].Field != tc.field) {
			t.Errorf("%q: fields %v, want %s", tc.query, he.fields, tc.field)
		}
	}
}
