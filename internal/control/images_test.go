package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store/bolt"
	"vgrid/internal/testenv"
)

// newImageCtl is a controller over a bolt store with a blob directory,
// one host and the operator's image "os".
func newImageCtl(t *testing.T) (*Controller, string) {
	t.Helper()
	if _, err := exec.LookPath(qemuImg); err != nil {
		testenv.Skip(t, "qemu-img not found: %v", err)
	}
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &testClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	blobs := filepath.Join(dir, "blobs")
	ctl, err := New(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now, BlobDir: blobs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img := model.Image{Name: "os", Boot: "direct", DiskFormat: "raw", MinDisk: model.GiB,
		Disk: model.ImageFile{Path: "/nonexistent/disk", SHA256: strings.Repeat("a", 64), Size: 1}}
	if err := ctl.RegisterImage(ctx, img, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.RegisterNode(ctx, model.Node{Name: "n1", Accel: "tcg", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}}); err != nil {
		t.Fatal(err)
	}
	return ctl, blobs
}

// testDisks makes the files pushed in the tests, by name: raw disks
// (raw, raw2: other content), a qcow2, a qcow2 with a backing file, one
// with an external data file, and a qcow2 header cut short.
func testDisks(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	out := map[string][]byte{}
	raw := bytes.Repeat([]byte("vgrid raw disk "), 1<<17)
	raw = raw[:1<<20-4096]
	out["raw"] = raw
	out["raw2"] = bytes.Repeat([]byte{7}, 1<<20)
	run := func(args ...string) {
		t.Helper()
		if b, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	run("create", "-q", "-f", "qcow2", filepath.Join(dir, "plain.qcow2"), "8M")
	run("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", filepath.Join(dir, "backed.qcow2"), "8M")
	run("create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw"), filepath.Join(dir, "datafile.qcow2"), "8M")
	for _, n := range []string{"plain", "backed", "datafile"} {
		b, err := os.ReadFile(filepath.Join(dir, n+".qcow2"))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	out["cut"] = out["plain"][:64]
	// A qcow2 header whose L1 table points far beyond the file: qemu-img
	// cannot open it.
	bad := append([]byte(nil), out["plain"]...)
	binary.BigEndian.PutUint32(bad[36:], 1<<31) // l1_size
	out["corrupt"] = bad
	return out
}

func hexSum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// blobsIn lists the blob directory's files (blobs and leftovers).
func blobsIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func fieldsOf(err error) []string {
	var ce *Error
	if !errors.As(err, &ce) {
		return nil
	}
	var out []string
	for _, f := range ce.Fields {
		out = append(out, f.Field)
	}
	return out
}

// Every refused push names the field and keeps nothing: no record, no
// blob, no leftover upload.
func TestPushImageRefusals(t *testing.T) {
	ctl, blobs := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		disk  string
		req   ImagePush
		body  []byte // nil: the disk
		field string
	}{
		{"digest mismatch", "raw", ImagePush{Format: "raw", SHA256: strings.Repeat("0", 64)}, nil, "sha256"},
		{"bad digest syntax", "raw", ImagePush{Format: "raw", SHA256: "sha256:00"}, nil, "sha256"},
		{"qcow2 declared raw", "plain", ImagePush{Format: "raw"}, nil, "format"},
		{"raw declared qcow2", "raw", ImagePush{Format: "qcow2"}, nil, "format"},
		{"backing file", "backed", ImagePush{Format: "qcow2"}, nil, "body"},
		{"backing file declared raw", "backed", ImagePush{Format: "raw"}, nil, "body"},
		{"external data file", "datafile", ImagePush{Format: "qcow2"}, nil, "body"},
		{"qcow2 header cut short", "cut", ImagePush{Format: "qcow2"}, nil, "body"},
		{"unreadable qcow2", "corrupt", ImagePush{Format: "qcow2"}, nil, "body"},
		{"body shorter than its size", "raw", ImagePush{Format: "raw", Size: 1 << 20}, nil, "body"},
		{"body longer than its size", "raw", ImagePush{Format: "raw", Size: 100}, nil, "body"},
		{"unknown format", "raw", ImagePush{Format: "vmdk"}, nil, "format"},
		{"no size", "raw", ImagePush{Format: "raw", Size: -1}, nil, "size"},
		{"bad tag", "raw", ImagePush{Format: "raw", Tags: []string{"a b"}}, nil, "tag[0]"},
		{"bad name", "raw", ImagePush{Name: "Big", Format: "raw"}, nil, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := disks[tc.disk]
			req := tc.req
			if req.Name == "" {
				req.Name = "x"
			}
			switch {
			case req.Size == 0:
				req.Size = int64(len(body))
			case req.Size < 0:
				req.Size = 0
			}
			_, err := ctl.PushImage(ctx, "a", req, bytes.NewReader(body))
			var ce *Error
			if !errors.As(err, &ce) || ce.Kind != KindInvalid {
				t.Fatalf("got %v, want an invalid push", err)
			}
			if got := fieldsOf(err); len(got) == 0 || got[0] != tc.field {
				t.Fatalf("fields %v (%v), want %s first", got, err, tc.field)
			}
			if _, err := ctl.Image(ctx, "a", "x", true); !isNotFound(err) {
				t.Fatalf("image stored after a refusal: %v", err)
			}
			if left := blobsIn(t, blobs); len(left) != 0 {
				t.Fatalf("blob directory keeps %v", left)
			}
		})
	}
}

// A pushed image: its record, and its blob stored by content.
func TestPushImageStoresByContent(t *testing.T) {
	ctl, blobs := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	for _, tc := range []struct {
		disk, format string
		minDisk      model.ByteSize
	}{
		{"raw", "raw", model.ByteSize(len(disks["raw"]))},
		{"plain", "qcow2", 8 * model.MiB},
	} {
		body := disks[tc.disk]
		sum := hexSum(body)
		img, err := ctl.PushImage(ctx, "a", ImagePush{Name: "img-" + tc.disk, Format: tc.format, Size: int64(len(body)), SHA256: sum, Tags: []string{"v1", "base"}}, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", tc.disk, err)
		}
		want := filepath.Join(blobs, "sha256", sum)
		if img.Digest != "sha256:"+sum || img.Disk.Path != want || img.Size != int64(len(body)) || img.MinDisk != tc.minDisk ||
			img.Boot != "firmware" || img.DiskFormat != tc.format || img.Project != "a" || img.Public || strings.Join(img.Tags, ",") != "v1,base" {
			t.Errorf("%s: pushed %+v", tc.disk, img)
		}
		got, err := os.ReadFile(want)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: blob %s: %v, same content %v", tc.disk, want, err, bytes.Equal(got, body))
		}
		f, err := ctl.ImageFile(ctx, img.Name, "disk")
		if err != nil || f.SHA256 != sum {
			t.Errorf("%s: served file %+v, %v", tc.disk, f, err)
		}
	}
}

// Visibility: the operator's and public images for all, private ones for
// their project, everything for an admin; workspaces only from visible
// images; a name is unique across the grid.
func TestImageVisibility(t *testing.T) {
	ctl, _ := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	push := func(project, name string, public bool) {
		t.Helper()
		b := disks["raw"]
		if _, err := ctl.PushImage(ctx, project, ImagePush{Name: name, Format: "raw", Public: public, Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
			t.Fatalf("push %s/%s: %v", project, name, err)
		}
	}
	push("a", "a-priv", false)
	push("a", "a-pub", true)
	push("b", "b-priv", false)
	for _, tc := range []struct {
		project string
		admin   bool
		want    string
	}{
		{"a", false, "a-priv a-pub os"},
		{"b", false, "a-pub b-priv os"},
		{"c", false, "a-pub os"},
		{"c", true, "a-priv a-pub b-priv os"},
	} {
		imgs, err := ctl.VisibleImages(ctx, tc.project, tc.admin)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, im := range imgs {
			names = append(names, im.Name)
		}
		if got := strings.Join(names, " "); got != tc.want {
			t.Errorf("project %s admin %v sees %q, want %q", tc.project, tc.admin, got, tc.want)
		}
		for _, n := range []string{"a-priv", "a-pub", "b-priv", "os"} {
			_, err := ctl.Image(ctx, tc.project, n, tc.admin)
			if seen := strings.Contains(" "+tc.want+" ", " "+n+" "); seen != (err == nil) || (!seen && !isNotFound(err)) {
				t.Errorf("project %s admin %v: Image(%s): %v, want seen %v", tc.project, tc.admin, n, err, seen)
			}
		}
	}
	for _, tc := range []struct {
		project, image string
		ok             bool
	}{
		{"b", "a-priv", false},
		{"b", "a-pub", true},
		{"a", "a-priv", true},
		{"b", "os", true},
	} {
		sp, err := spec.Parse([]byte("name: w-" + tc.image + "\nimage: " + tc.image + "\nquantum: {vcpus: 1, cpu: 0.1, memory: 256Mi, disk: 1Gi}\nduration: 1h\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ctl.CreateWorkspace(ctx, tc.project, sp)
		if (err == nil) != tc.ok {
			t.Errorf("project %s creating a workspace of %s: %v, want ok %v", tc.project, tc.image, err, tc.ok)
		}
		var fe *spec.FieldErrors
		if !tc.ok && (!errors.As(err, &fe) || !strings.Contains(err.Error(), "image")) {
			t.Errorf("project %s, image %s: %v, want a field error on image", tc.project, tc.image, err)
		}
	}
	// Names are the grid's: another project's or the operator's is taken.
	for _, name := range []string{"a-priv", "a-pub", "os"} {
		b := disks["raw"]
		_, err := ctl.PushImage(ctx, "b", ImagePush{Name: name, Format: "raw", Size: int64(len(b))}, bytes.NewReader(b))
		var ce *Error
		if !errors.As(err, &ce) || ce.Kind != KindConflict {
			t.Errorf("b pushing %s: %v, want a conflict", name, err)
		}
	}
	// The operator cannot take a project's name either.
	op := model.Image{Name: "a-priv", Boot: "firmware", DiskFormat: "raw", Disk: model.ImageFile{Path: "/x", SHA256: strings.Repeat("b", 64), Size: 1}}
	if err := ctl.RegisterImage(ctx, op, false); err == nil {
		t.Error("the operator replaced project a's image")
	}
}

// Delete: only the owner (or an admin); refused while a workspace or a
// cluster that is not deleted uses the image, naming them.
func TestDeleteImage(t *testing.T) {
	ctl, _ := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	b := disks["raw"]
	if _, err := ctl.PushImage(ctx, "a", ImagePush{Name: "pub", Format: "raw", Public: true, Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	sp, err := spec.Parse([]byte("name: w1\nimage: pub\nquantum: {vcpus: 1, cpu: 0.1, memory: 256Mi, disk: 1Gi}\nduration: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateWorkspace(ctx, "b", sp); err != nil {
		t.Fatal(err)
	}
	cl := model.Cluster{Project: "a", Spec: model.ClusterSpec{Name: "c1", Roles: []model.ClusterRole{{Name: "r", Count: 1, Image: "pub"}}}, Desired: model.DesiredRunning}
	raw, _ := json.Marshal(cl)
	if _, err := ctl.store.Create(ctx, clusterKey("a", "c1"), raw); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.PushImage(ctx, "a", ImagePush{Name: "priv", Format: "raw", Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, project, image string
		admin                bool
		want                 string // in the error
		notOwner             bool
	}{
		{"not the owner", "b", "pub", false, "belongs to another project", true},
		{"operator's image", "a", "os", false, "the operator's", true},
		{"unseen", "c", "priv", false, `image "priv" not found`, false},
		{"owner, in use", "a", "pub", false, `image "pub" is used by 1 workspace of another project and clusters a/c1`, false},
		{"admin, in use", "z", "pub", true, `image "pub" is used by workspaces b/w1 and clusters a/c1`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ctl.DeleteImage(ctx, tc.project, tc.image, tc.admin)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotOwner) != tc.notOwner {
				t.Fatalf("got %v, want %q (not owner %v)", err, tc.want, tc.notOwner)
			}
		})
	}
	if _, err := ctl.DeleteWorkspace(ctx, "b", "w1"); err != nil {
		t.Fatal(err)
	}
	cl.Desired = model.DesiredDeleted
	raw, _ = json.Marshal(cl)
	if _, err := ctl.store.Update(ctx, clusterKey("a", "c1"), raw, 0); err != nil {
		t.Fatal(err)
	}
	if err := ctl.DeleteImage(ctx, "a", "pub", false); err != nil {
		t.Fatalf("delete once unused: %v", err)
	}
	if _, err := ctl.Image(ctx, "a", "pub", true); !isNotFound(err) {
		t.Fatalf("image still there: %v", err)
	}
}

// Blobs are shared by content and removed with the last image that
// refers to them; replacing an image's content drops its old blob.
func TestImageBlobsShared(t *testing.T) {
	ctl, blobs := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	push := func(project, name, disk string) error {
		b := disks[disk]
		_, err := ctl.PushImage(ctx, project, ImagePush{Name: name, Format: "raw", Size: int64(len(b))}, bytes.NewReader(b))
		return err
	}
	raw, raw2 := "sha256/"+hexSum(disks["raw"]), "sha256/"+hexSum(disks["raw2"])
	steps := []struct {
		do    func() error
		blobs string
	}{
		{func() error { return push("a", "one", "raw") }, raw},
		{func() error { return push("b", "two", "raw") }, raw},
		{func() error { return push("a", "three", "raw2") }, strings.Join(sorted(raw, raw2), " ")},
		{func() error { return ctl.DeleteImage(ctx, "a", "one", false) }, strings.Join(sorted(raw, raw2), " ")},
		{func() error { return ctl.DeleteImage(ctx, "b", "two", false) }, raw2},
		{func() error { return push("a", "three", "raw") }, raw}, // replaced: raw2 unused
		{func() error { return push("a", "three", "raw") }, raw}, // the same again
		{func() error { return ctl.DeleteImage(ctx, "z", "three", true) }, ""},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := strings.Join(blobsIn(t, blobs), " "); got != s.blobs {
			t.Fatalf("step %d: blobs %q, want %q", i, got, s.blobs)
		}
	}
}

func sorted(s ...string) []string { sort.Strings(s); return s }

// A push in use can be repeated with the same content (new tags) but not
// replaced with other content.
func TestPushImageReplaceInUse(t *testing.T) {
	ctl, _ := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	b := disks["raw"]
	if _, err := ctl.PushImage(ctx, "a", ImagePush{Name: "img", Format: "raw", Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	sp, _ := spec.Parse([]byte("name: w1\nimage: img\nquantum: {vcpus: 1, cpu: 0.1, memory: 256Mi, disk: 1Gi}\nduration: 1h\n"))
	if _, err := ctl.CreateWorkspace(ctx, "a", sp); err != nil {
		t.Fatal(err)
	}
	img, err := ctl.PushImage(ctx, "a", ImagePush{Name: "img", Format: "raw", Tags: []string{"v2"}, Size: int64(len(b))}, bytes.NewReader(b))
	if err != nil || strings.Join(img.Tags, ",") != "v2" {
		t.Fatalf("same content again: %+v %v", img, err)
	}
	b2 := disks["raw2"]
	_, err = ctl.PushImage(ctx, "a", ImagePush{Name: "img", Format: "raw", Size: int64(len(b2))}, bytes.NewReader(b2))
	if err == nil || !strings.Contains(err.Error(), "workspaces a/w1") {
		t.Fatalf("other content while used: %v", err)
	}
}

// A leftover upload and an unreferenced blob older than an hour are
// swept; fresh ones and used blobs stay.
func TestSweepBlobs(t *testing.T) {
	ctl, blobs := newImageCtl(t)
	disks := testDisks(t)
	ctx := context.Background()
	b := disks["raw"]
	if _, err := ctl.PushImage(ctx, "a", ImagePush{Name: "img", Format: "raw", Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	old := ctl.now().Add(-2 * time.Hour)
	mk := func(rel string, mtime time.Time) {
		p := filepath.Join(blobs, rel)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
	}
	mk(".upload-old", old)
	mk(".upload-new", ctl.now())
	mk("sha256/"+strings.Repeat("c", 64), old)
	mk("sha256/"+strings.Repeat("d", 64), ctl.now())
	used := filepath.Join(blobs, "sha256", hexSum(b))
	os.Chtimes(used, old, old)
	if err := ctl.SweepBlobs(ctx); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(sorted(".upload-new", "sha256/"+strings.Repeat("d", 64), "sha256/"+hexSum(b)), " ")
	if got := strings.Join(blobsIn(t, blobs), " "); got != want {
		t.Fatalf("after the sweep %q, want %q", got, want)
	}
}

func TestSniffHeader(t *testing.T) {
	qcow2 := func(version uint32, backing uint64, crypt uint32, incompat uint64) []byte {
		h := make([]byte, 104)
		copy(h, "QFI\xfb")
		binary.BigEndian.PutUint32(h[4:], version)
		binary.BigEndian.PutUint64(h[8:], backing)
		binary.BigEndian.PutUint32(h[32:], crypt)
		binary.BigEndian.PutUint64(h[72:], incompat)
		return h
	}
	for _, tc := range []struct {
		name  string
		h     []byte
		field string // "": accepted
	}{
		{"raw", []byte("hello"), ""},
		{"empty", nil, ""},
		{"qcow2 v3", qcow2(3, 0, 0, 0), ""},
		{"qcow2 v2", qcow2(2, 0, 0, 0), ""},
		{"qcow2 dirty", qcow2(3, 0, 0, 1), ""},
		{"qcow2 backing", qcow2(3, 512, 0, 0), "body"},
		{"qcow2 encrypted", qcow2(3, 0, 1, 0), "body"},
		{"qcow2 data file", qcow2(3, 0, 0, 4), "body"},
		{"qcow v1", qcow2(1, 0, 0, 0), "format"},
		{"qcow2 cut", qcow2(3, 0, 0, 0)[:40], "body"},
		{"qed", []byte("QED\x00rest"), "format"},
		{"vmdk sparse", []byte("KDMV...."), "format"},
		{"vmdk descriptor", []byte("\n# Disk DescriptorFile\nRW 8 FLAT \"/etc/shadow\" 0\n"), "format"},
		{"vhdx", []byte("vhdxfile...."), "format"},
	} {
		fe := sniffHeader(tc.h)
		got := ""
		if len(fe) > 0 {
			got = fe[0].Field
		}
		if got != tc.field {
			t.Errorf("%s: %v, want field %q", tc.name, fe, tc.field)
		}
	}
}

func TestParseImageInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want imageInfo
		err  bool
	}{
		{"raw", `{"virtual-size": 1048576, "filename": "x", "format": "raw", "actual-size": 0}`, imageInfo{Format: "raw", VirtualSize: 1 << 20}, false},
		{"backing", `{"virtual-size": 8, "format": "qcow2", "backing-filename": "/etc/shadow"}`, imageInfo{Format: "qcow2", VirtualSize: 8, Backing: "/etc/shadow"}, false},
		{"full backing", `{"virtual-size": 8, "format": "qcow2", "full-backing-filename": "/b"}`, imageInfo{Format: "qcow2", VirtualSize: 8, Backing: "/b"}, false},
		{"data file", `{"virtual-size": 8, "format": "qcow2", "format-specific": {"type": "qcow2", "data": {"data-file": "/d"}}}`, imageInfo{Format: "qcow2", VirtualSize: 8, DataFile: "/d"}, false},
		{"no format", `{"virtual-size": 8}`, imageInfo{}, true},
		{"no size", `{"format": "raw"}`, imageInfo{}, true},
		{"negative size", `{"format": "raw", "virtual-size": -1}`, imageInfo{}, true},
		{"not json", `qemu-img: error`, imageInfo{}, true},
		{"wrong type", `{"format": 3, "virtual-size": 8}`, imageInfo{}, true},
	} {
		got, err := parseImageInfo([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// checkImageInfo names the field of each mismatch.
func TestCheckImageInfo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		info   imageInfo
		format string
		size   int64
		fields string
	}{
		{"raw ok", imageInfo{Format: "raw", VirtualSize: 10}, "raw", 10, ""},
		{"qcow2 ok", imageInfo{Format: "qcow2", VirtualSize: 1 << 30}, "qcow2", 10, ""},
		{"mismatch", imageInfo{Format: "vpc", VirtualSize: 10}, "raw", 10, "format"},
		{"backing", imageInfo{Format: "qcow2", VirtualSize: 10, Backing: "/x"}, "qcow2", 10, "body"},
		{"data file", imageInfo{Format: "qcow2", VirtualSize: 10, DataFile: "/x"}, "qcow2", 10, "body"},
		{"empty", imageInfo{Format: "qcow2"}, "qcow2", 10, "body"},
		{"raw size differs", imageInfo{Format: "raw", VirtualSize: 9}, "raw", 10, "body"},
	} {
		var got []string
		for _, f := range checkImageInfo(tc.info, tc.format, tc.size) {
			got = append(got, f.Field)
		}
		if strings.Join(got, ",") != tc.fields {
			t.Errorf("%s: fields %v, want %q", tc.name, got, tc.fields)
		}
	}
}

func FuzzParseImageInfo(f *testing.F) {
	f.Add([]byte(`{"virtual-size": 1048576, "format": "raw"}`))
	f.Add([]byte(`{"virtual-size": 8, "format": "qcow2", "format-specific": {"type": "qcow2", "data": {"data-file": "/d"}}}`))
	f.Add([]byte(`{"format-specific": null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseImageInfo(b)
		if err != nil {
			return
		}
		if info.Format == "" || info.VirtualSize < 0 {
			t.Fatalf("accepted %+v", info)
		}
		_ = checkImageInfo(info, "raw", 1)
	})
}

func FuzzSniffHeader(f *testing.F) {
	f.Add([]byte("QFI\xfb\x00\x00\x00\x03"))
	f.Add([]byte("# Disk DescriptorFile"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, h []byte) {
		for _, fe := range sniffHeader(h) {
			if fe.Field != "body" && fe.Field != "format" || fe.Reason == "" {
				t.Fatalf("field error %+v", fe)
			}
		}
	})
}
