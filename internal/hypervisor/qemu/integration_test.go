package qemu

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"vgrid/internal/cgroup"
	"vgrid/internal/guest/guesttest"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// requireHost skips a test that needs real QEMU, root (cgroups) and the
// guest kernel.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		guesttest.Skip(t, "needs root for cgroups")
	}
	guesttest.RequireQEMU(t)
}

// localImage turns the test guest image into what the driver boots.
func localImage(img model.Image) hypervisor.LocalImage {
	li := hypervisor.LocalImage{
		Name: img.Name, Boot: img.Boot, Disk: img.Disk.Path, DiskFormat: img.DiskFormat,
		Cmdline: img.Cmdline, MinDisk: img.MinDisk,
	}
	if img.Kernel != nil {
		li.Kernel = img.Kernel.Path
	}
	if img.Initrd != nil {
		li.Initrd = img.Initrd.Path
	}
	return li
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

// newTestDriver makes a driver with its own cgroup parent, closed when
// the test ends.
func newTestDriver(t *testing.T, stateDir string) *Driver {
	t.Helper()
	d, err := New(Options{StateDir: stateDir, CgroupParent: testCgroupParent, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// testCgroupParent is the cgroup parent of the tests' instances; TestMain
// removes it at the end.
const testCgroupParent = "vgrid-test"

func TestMain(m *testing.M) {
	if os.Getenv(crashAtEnv) != "" {
		// This binary runs as an agent that a crash test kills.
		os.Exit(crashChild())
	}
	code := m.Run()
	if h, err := cgroup.Detect(); err == nil {
		for _, mnt := range h.Mounts() {
			_ = os.Remove(filepath.Join(mnt, testCgroupParent))
		}
	}
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	hypervisortest.Run(t, func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) }, img, hypervisortest.RealPIDs())
}
