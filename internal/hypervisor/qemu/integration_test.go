package qemu

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
			// The per-host parents of newHostDriver (migrate_test.go).
			if ents, err := os.ReadDir(filepath.Join(mnt, testCgroupParent)); err == nil {
				for _, e := range ents {
					if e.IsDir() && strings.HasPrefix(e.Name(), hostParentPrefix) {
						_ = os.Remove(filepath.Join(mnt, testCgroupParent, e.Name()))
					}
				}
			}
			_ = os.Remove(filepath.Join(mnt, testCgroupParent))
		}
	}
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	requireHost(t)
	img := localImage(guesttest.Image(t))
	// Each state directory is a host with cgroups of its own: a live
	// migration runs an instance's QEMU on two of them at once.
	hypervisortest.Run(t, func(t *testing.T, dir string) hypervisor.Driver { return newHostDriver(t, dir) }, img,
		hypervisortest.RealPIDs(), hypervisortest.WithDiskProbe(diskProbe), hypervisortest.WithGuestProbe(hypervisortest.ExecGuestProbe()))
}

// diskProbe writes a token to the guest's disk with user-data, which also
// makes every boot print what the disk holds (a line added to rcS) and
// keeps printing it while the guest runs (so a resumed guest prints it
// too); both are read from the serial console.
var diskProbe = hypervisortest.DiskProbe{
	Prepare: func(spec hypervisor.InstanceSpec, token string) hypervisor.InstanceSpec {
		ctx := model.Context{}
		if spec.Context != nil {
			ctx = *spec.Context
		}
		ctx.UserData = "#!/bin/sh\n" +
			"echo " + token + " > /root/probe; sync\n" +
			"echo 'echo PROBE-FOUND $(cat /root/probe) > /dev/ttyS0' >> /etc/init.d/rcS; sync\n" +
			"echo PROBE-WRITTEN $(cat /root/probe) > /dev/ttyS0\n" +
			"while :; do echo PROBE-FOUND $(cat /root/probe) > /dev/ttyS0; sleep 1; done\n"
		spec.Context = &ctx
		return spec
	},
	Write: func(t *testing.T, d hypervisor.Driver, id, token string) {
		t.Helper()
		if got := consoleMatch(t, d, id, probeWrittenRE); got != token {
			t.Fatalf("the guest wrote %q, want %q", got, token)
		}
	},
	Read: func(t *testing.T, d hypervisor.Driver, id string) string {
		t.Helper()
		return consoleMatch(t, d, id, probeFoundRE)
	},
}

// The line must be whole: the console may be read while the guest is in
// the middle of writing one ("PROBE-FOUND toka" at the end of the log).
var (
	probeWrittenRE = regexp.MustCompile(`(?m)^PROBE-WRITTEN (\S*)\r?\n`)
	probeFoundRE   = regexp.MustCompile(`(?m)^PROBE-FOUND (\S*)\r?\n`)
)

// consoleMatch waits for re on id's console and returns its first group.
func consoleMatch(t *testing.T, d hypervisor.Driver, id string, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(hypervisortest.GuestTimeout)
	for {
		log, err := d.ConsoleLog(context.Background(), id, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if m := re.FindSubmatch(log); m != nil {
			return string(m[1])
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s on the console within %s:\n%s", id, re, hypervisortest.GuestTimeout, log[max(0, len(log)-2048):])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
