package benchkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

func TestWorkDir(t *testing.T) {
	t.Run("given, made if missing, kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		got, cleanup, err := WorkDir(dir, "", "x-")
		if err != nil {
			t.Fatal(err)
		}
		if got != dir {
			t.Errorf("WorkDir = %s, want %s", got, dir)
		}
		cleanup()
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("the given directory after cleanup: %v", err)
		}
	})
	t.Run("temporary, removed", func(t *testing.T) {
		parent := t.TempDir()
		got, cleanup, err := WorkDir("", parent, "bench-")
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(got) != parent || !strings.HasPrefix(filepath.Base(got), "bench-") {
			t.Errorf("WorkDir = %s, want bench-* in %s", got, parent)
		}
		if err := os.WriteFile(filepath.Join(got, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		cleanup()
		if _, err := os.Stat(got); !os.IsNotExist(err) {
			t.Errorf("the temporary directory after cleanup: %v, want it gone", err)
		}
	})
	t.Run("parent missing", func(t *testing.T) {
		if _, _, err := WorkDir("", filepath.Join(t.TempDir(), "none"), "bench-"); err == nil {
			t.Error("WorkDir under a missing parent: no error")
		}
	})
}

func TestLocalImage(t *testing.T) {
	base := model.Image{Name: "img", Boot: "direct", Disk: model.ImageFile{Path: "/i/disk"}, DiskFormat: "qcow2",
		Cmdline: "console=ttyS0", MinDisk: model.GiB}
	withFiles := base
	withFiles.Kernel, withFiles.Initrd = &model.ImageFile{Path: "/i/vmlinuz"}, &model.ImageFile{Path: "/i/initrd"}
	for _, tc := range []struct {
		name string
		img  model.Image
		want hypervisor.LocalImage
	}{
		{"disk only", base, hypervisor.LocalImage{Name: "img", Boot: "direct", Disk: "/i/disk", DiskFormat: "qcow2",
			Cmdline: "console=ttyS0", MinDisk: model.GiB}},
		{"kernel and initrd", withFiles, hypervisor.LocalImage{Name: "img", Boot: "direct", Disk: "/i/disk", DiskFormat: "qcow2",
			Cmdline: "console=ttyS0", MinDisk: model.GiB, Kernel: "/i/vmlinuz", Initrd: "/i/initrd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LocalImage(tc.img); got != tc.want {
				t.Errorf("LocalImage = %+v, want %+v", got, tc.want)
			}
		})
	}
}
