package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// TestAdoptFiles adopts a suspended instance's files without booting
// anything: a first try that lacks a file fails and leaves no instance, a
// second one (the file now there) takes what the first had moved aside;
// the disk is rebased onto this host's image, the saved spec names this
// host's image files, and the files are listed again by Portable.
func TestAdoptFiles(t *testing.T) {
	requireHost(t)
	ctx := hypervisortest.Context(t)
	dir := t.TempDir()
	baseA, baseB := filepath.Join(dir, "a", "base.raw"), filepath.Join(dir, "b", "base.raw")
	for _, b := range []string{baseA, baseB} {
		if err := os.MkdirAll(filepath.Dir(b), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(b, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := newTestDriver(t, filepath.Join(dir, "state"))
	img := hypervisor.LocalImage{Name: "img", Boot: "direct", Disk: baseA, DiskFormat: "raw", Kernel: filepath.Join(dir, "a", "vmlinux")}
	specA := hypervisortest.Spec("moved", img)
	specB := specA
	specB.Image.Disk, specB.Image.Kernel = baseB, filepath.Join(dir, "b", "vmlinux")

	staging := filepath.Join(dir, "staging")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeQcow2Overlay(filepath.Join(staging, diskFile), baseA, "raw", 0); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	st := runState{Accel: d.accel, StartedAt: now.Add(-time.Minute), StoppedAt: now, ExitReason: "suspended", CPUSeconds: 1.5,
		Suspended: &savedState{At: now, Bytes: 5, Duration: time.Second, Spec: &specA, BootID: "another-host"}}
	if err := writeJSON(filepath.Join(staging, stateFile), st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, memStateFile), []byte("saved"), 0o600); err != nil {
		t.Fatal(err)
	}

	// No seed: refused, and nothing is there.
	if _, err := d.Adopt(ctx, specB, staging); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Fatalf("Adopt without the seed: got %v, want ErrInvalid", err)
	}
	if _, err := d.Get(ctx, specB.ID); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get after a failed Adopt: got %v, want ErrNotFound", err)
	}
	if insts, err := d.List(ctx); err != nil || len(insts) != 0 {
		t.Errorf("List after a failed Adopt: got %v, %v, want nothing", insts, err)
	}
	// A different machine is refused too.
	bigger := specB
	bigger.Quantum.Memory = 512 * model.MiB
	if err := os.WriteFile(filepath.Join(staging, seedFile), []byte("seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Adopt(ctx, bigger, staging); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Fatalf("Adopt as a bigger machine: got %v, want ErrInvalid", err)
	}

	in, err := d.Adopt(ctx, specB, staging)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != hypervisor.InstanceSuspended || in.Saved == nil || in.Saved.Bytes != 5 || in.FinalCPUSeconds != 1.5 {
		t.Errorf("Adopt: got %+v, want suspended, 5 bytes saved, 1.5 s of CPU", in)
	}
	if _, err := d.Adopt(ctx, specB, staging); !errors.Is(err, hypervisor.ErrExists) {
		t.Errorf("second Adopt: got %v, want ErrExists", err)
	}
	p := d.paths(specB.ID)
	if info := imgInfo(t, p.Disk); info.BackingFilename != baseB || info.BackingFormat != "raw" {
		t.Errorf("disk backing: got %q, %q, want %q, raw", info.BackingFilename, info.BackingFormat, baseB)
	}
	got, err := readState(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Suspended; s == nil || s.Spec == nil || s.Spec.Image != specB.Image || !s.Synced || s.BootID != d.bootID || !got.exitRecorded() {
		t.Errorf("state after Adopt: got %+v, %+v", got, got.Suspended)
	}
	if spec, err := readSpec(p); err != nil || spec.Image != specB.Image {
		t.Errorf("spec after Adopt: got %+v, %v", spec, err)
	}
	if _, err := os.Stat(filepath.Join(d.opts.StateDir, ".adopt-"+specB.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory of the driver: got %v, want it gone", err)
	}
	files, err := d.Portable(ctx, specB.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if len(names) != 4 {
		t.Errorf("Portable after Adopt: got %v, want disk, state, seed and saved state", names)
	}
	if err := d.Delete(ctx, specB.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Delete: %v", err)
	}
}

func TestMovable(t *testing.T) {
	img := hypervisor.LocalImage{Name: "i", Boot: "direct", Disk: "/a/d", DiskFormat: "raw", Kernel: "/a/k"}
	old := hypervisortest.Spec("r", img)
	here := old
	here.Image.Disk, here.Image.Kernel = "/b/d", "/b/k"
	if err := movable(old, here, AccelTCG, AccelTCG); err != nil {
		t.Errorf("the same image at other paths: %v", err)
	}
	for name, mutate := range map[string]func(*hypervisor.InstanceSpec){
		"id":      func(s *hypervisor.InstanceSpec) { s.ID = "other" },
		"memory":  func(s *hypervisor.InstanceSpec) { s.Quantum.Memory = 512 * model.MiB },
		"image":   func(s *hypervisor.InstanceSpec) { s.Image.Name = "j" },
		"cmdline": func(s *hypervisor.InstanceSpec) { s.Image.Cmdline = "quiet" },
		"accel":   func(s *hypervisor.InstanceSpec) { s.Accel = AccelKVM },
	} {
		s := here
		mutate(&s)
		if err := movable(old, s, AccelTCG, AccelTCG); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("%s changed: got %v, want ErrInvalid", name, err)
		}
	}
	if err := movable(old, here, AccelKVM, AccelTCG); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("saved under kvm, here tcg: got %v, want ErrInvalid", err)
	}
}

// TestSavedStateAfterHostRestart: a suspension whose state file was not
// yet fsynced when the host went down (another boot ID, not synced) is
// discarded by the next driver, the disk kept; one that was fsynced, or
// saved on this boot, stays suspended (and gets fsynced).
func TestSavedStateAfterHostRestart(t *testing.T) {
	requireHost(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	img := hypervisor.LocalImage{Name: "img", Boot: "direct", Disk: filepath.Join(dir, "base.raw"), DiskFormat: "raw", Kernel: "/k"}
	boot := bootID()
	for _, tt := range []struct {
		id      string
		bootID  string
		synced  bool
		suspend bool
	}{
		{"lost", "another-boot", false, false},
		{"synced", "another-boot", true, true},
		{"this-boot", boot, false, true},
		{"old-driver", "", false, true}, // fsynced before it was recorded
	} {
		spec := hypervisortest.Spec(tt.id, img)
		p := instancePaths(filepath.Join(state, tt.id), DefaultRunDir)
		if err := os.MkdirAll(p.Dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(p.Spec, spec); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		st := runState{Accel: AccelTCG, StartedAt: now.Add(-time.Minute), StoppedAt: now, ExitReason: "suspended",
			Suspended: &savedState{At: now, Bytes: 5, Spec: &spec, BootID: tt.bootID, Synced: tt.synced}}
		if err := writeJSON(p.State, st); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{memStatePath(p), p.Disk} {
			if err := os.WriteFile(f, []byte("saved"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := newTestDriver(t, state)
	ctx := hypervisortest.Context(t)
	for _, id := range []string{"lost", "synced", "this-boot", "old-driver"} {
		in, err := d.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p := d.paths(id)
		_, ferr := os.Stat(memStatePath(p))
		if id == "lost" {
			if in.State != hypervisor.InstanceStopped || in.Saved != nil || !errors.Is(ferr, os.ErrNotExist) {
				t.Errorf("%s: got %+v (state file: %v), want stopped, the file gone", id, in, ferr)
			}
			if _, err := os.Stat(p.Disk); err != nil {
				t.Errorf("%s: disk: %v, want it kept", id, err)
			}
			t.Logf("%s: %s", id, in.ExitReason)
			continue
		}
		if in.State != hypervisor.InstanceSuspended || ferr != nil {
			t.Errorf("%s: got %+v (state file: %v), want suspended", id, in, ferr)
		}
	}
	// The one of this boot gets fsynced in the background.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := readState(d.paths("this-boot"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Suspended != nil && st.Suspended.Synced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("this-boot: not marked synced: %+v", st.Suspended)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
