package image

import (
	"vgrid/internal/testenv"

	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vgrid/internal/model"
)

// buildForTest builds an image with a stand-in agent binary.
func buildForTest(t *testing.T, out string) model.Image {
	t.Helper()
	if _, _, err := FindKernel(DefaultBootDir); err != nil {
		testenv.Skip(t, "%v", err)
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, "%s is not installed (e2fsprogs)", tool)
		}
	}
	agent := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\necho stand-in agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	img, err := Build(context.Background(), Options{OutDir: out, AgentBinary: agent, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build log:\n%s", log.String())
	return img
}

func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two images")
	}
	dirs := []string{t.TempDir(), t.TempDir()}
	imgs := []model.Image{buildForTest(t, dirs[0]), buildForTest(t, dirs[1])}
	for _, f := range []string{VmlinuxFile, InitrdFile, RootfsFile} {
		a, err := os.ReadFile(filepath.Join(dirs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dirs[1], f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds", f)
		}
	}
	a, b := imgs[0], imgs[1]
	if a.Disk.SHA256 != b.Disk.SHA256 || a.Kernel.SHA256 != b.Kernel.SHA256 || a.Initrd.SHA256 != b.Initrd.SHA256 {
		t.Errorf("manifest hashes differ: %+v vs %+v", a, b)
	}
}

func TestBuildContents(t *testing.T) {
	dir := t.TempDir()
	img := buildForTest(t, dir)

	if img.Boot != "direct" || img.DiskFormat != "raw" || img.Cmdline != Cmdline ||
		img.MinDisk != DefaultRootfsSize || img.Name != DefaultName || !img.CreatedAt.IsZero() {
		t.Errorf("image = %+v", img)
	}
	if img.Disk.Path != filepath.Join(dir, RootfsFile) || img.Disk.Size != int64(DefaultRootfsSize) || len(img.Disk.SHA256) != 64 {
		t.Errorf("disk = %+v", img.Disk)
	}
	if img.Kernel == nil || img.Initrd == nil || img.Kernel.Path != filepath.Join(dir, VmlinuxFile) {
		t.Fatalf("kernel/initrd = %+v %+v", img.Kernel, img.Initrd)
	}
	loaded, err := LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, img) {
		t.Errorf("LoadManifest = %+v, want %+v", loaded, img)
	}
	// A moved image directory still loads with correct paths.
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if m, err := LoadManifest(moved); err != nil || m.Disk.Path != filepath.Join(moved, RootfsFile) || m.Initrd.Path != filepath.Join(moved, InitrdFile) {
		t.Errorf("LoadManifest(moved) = %+v, %v", m, err)
	}
	dir = moved

	// The filesystem is clean and has what busybox init needs.
	if out, err := exec.Command("e2fsck", "-fn", filepath.Join(dir, RootfsFile)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
	for _, tt := range []struct{ path, typ, mode string }{
		{"/sbin/init", "symlink", "0777"},
		{"/bin/sh", "symlink", "0777"},
		{"/bin/busybox", "regular", "0755"},
		{"/usr/sbin/vgrid-guest-agent", "regular", "0755"},
		{"/etc/inittab", "regular", "0644"},
		{"/etc/shadow", "regular", "0600"},
		{"/etc/init.d/rcS", "regular", "0755"},
		{"/usr/share/udhcpc/default.script", "regular", "0755"},
		{"/root", "directory", "0700"},
		{"/tmp", "directory", "01777"},
		{"/", "directory", "0755"},
	} {
		out, err := exec.Command("debugfs", "-R", "stat "+tt.path, filepath.Join(dir, RootfsFile)).Output()
		if err != nil {
			t.Fatalf("debugfs stat %s: %v", tt.path, err)
		}
		s := string(out)
		if !strings.Contains(s, "User:     0   Group:     0") || !strings.Contains(s, "ctime: 0x386d4380") {
			t.Errorf("%s: owner or time not fixed:\n%s", tt.path, s)
		}
		if want := "Type: " + tt.typ + "    Mode:  " + tt.mode + " "; !strings.Contains(s, want) {
			t.Errorf("%s: want %q, got %q", tt.path, want, firstLine(s))
		}
	}

	// The initrd has /init, busybox and the modules, virtio_ring before virtio.
	f, err := os.Open(filepath.Join(dir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]cpioEntry{}
	for _, e := range readNewc(t, raw) {
		names[e.Name] = e
	}
	for _, want := range []string{"init", "bin/busybox", "bin/switch_root", "dev/console", "newroot",
		"lib/modules/virtio_mmio.ko", "lib/modules/virtio_console.ko", "lib/modules/virtio_balloon.ko", "lib/modules/cdrom.ko", "lib/modules/isofs.ko"} {
		if _, ok := names[want]; !ok {
			t.Errorf("initrd has no %s", want)
		}
	}
	init := string(names["init"].Data)
	if i, j := strings.Index(init, "virtio_ring virtio "), strings.Index(init, "virtio_console"); i < 0 || j < i {
		t.Errorf("init loads modules in the wrong order:\n%s", init)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func TestBuildOptionErrors(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, nil, 0o755)
	tests := []struct {
		name string
		opt  Options
	}{
		{"no out dir", Options{AgentBinary: agent}},
		{"no agent", Options{OutDir: t.TempDir()}},
		{"missing agent", Options{OutDir: t.TempDir(), AgentBinary: "/nonexistent/agent", KernelImage: agent, ModulesDir: "/"}},
		{"tiny rootfs", Options{OutDir: t.TempDir(), AgentBinary: agent, KernelImage: agent, RootfsSize: model.MiB}},
		{"not a kernel", Options{OutDir: t.TempDir(), AgentBinary: agent, KernelImage: agent, ModulesDir: t.TempDir()}},
	}
	for _, tt := range tests {
		if _, err := Build(context.Background(), tt.opt); err == nil {
			t.Errorf("%s: Build succeeded", tt.name)
		}
	}
}
