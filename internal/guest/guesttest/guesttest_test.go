package guesttest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"vgrid/internal/model"
)

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd/vgrid-guest-agent/main.go")); err != nil {
		t.Errorf("module root %s has no guest agent: %v", root, err)
	}
}

// fakeModule writes a module tree with the hashed source directories.
func fakeModule(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range sourceDirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestInputHash(t *testing.T) {
	base := map[string]string{
		"go.mod":                         "module vgrid\n",
		"internal/guest/agent/agent.go":  "package agent\n",
		"internal/guest/image/image.go":  "package image\n",
		"internal/guest/agent/x_test.go": "package agent\n",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	busybox := filepath.Join(t.TempDir(), "busybox")
	os.WriteFile(busybox, []byte("b"), 0o755)

	ref, err := inputHash(fakeModule(t, base), kernel, busybox)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		files    map[string]string
		kernel   string
		wantSame bool
	}{
		{"same inputs", base, kernel, true},
		{"test file changed", with("internal/guest/agent/x_test.go", "package agent // changed\n"), kernel, true},
		{"agent source changed", with("internal/guest/agent/agent.go", "package agent // changed\n"), kernel, false},
		{"new builder file", with("internal/guest/image/guestfs", "x"), kernel, false},
		{"go.mod changed", with("go.mod", "module vgrid\n\ngo 1.26\n"), kernel, false},
		{"other kernel", base, busybox, false},
	}
	for _, tt := range tests {
		got, err := inputHash(fakeModule(t, tt.files), tt.kernel, busybox)
		if err != nil {
			t.Fatal(err)
		}
		if (got == ref) != tt.wantSame {
			t.Errorf("%s: hash %s vs %s, want same=%v", tt.name, got, ref, tt.wantSame)
		}
	}
}

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lock(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock(path, false); err == nil {
		t.Error("second lock succeeded while the first is held")
	}
	unlock()
	unlock2, err := lock(path, false)
	if err != nil {
		t.Errorf("lock after unlock: %v", err)
	} else {
		unlock2()
	}
}

func TestImageCached(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the guest image")
	}
	a := Image(t)
	b := Image(t)
	if !reflect.DeepEqual(a, b) || !complete(a) {
		t.Errorf("Image returned %+v then %+v", a, b)
	}
	// A fresh process (simulated by forgetting the in-memory cache) finds
	// the image on disk instead of rebuilding it.
	mu.Lock()
	cached = map[string]model.Image{}
	mu.Unlock()
	st, err := os.Stat(a.Disk.Path)
	if err != nil {
		t.Fatal(err)
	}
	c := Image(t)
	st2, err := os.Stat(c.Disk.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, c) || !st.ModTime().Equal(st2.ModTime()) {
		t.Errorf("image was rebuilt: %+v %v vs %+v %v", a, st.ModTime(), c, st2.ModTime())
	}
}
