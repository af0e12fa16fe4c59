package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// guestRun runs a shell command in the guest and returns its standard
// output; a non-zero exit fails the test.
func guestRun(t *testing.T, d hypervisor.Driver, id, script string) string {
	t.Helper()
	var out, errOut strings.Builder
	res, err := d.Exec(context.Background(), id, hypervisor.ExecRequest{Argv: []string{"/bin/sh", "-c", script}, Timeout: time.Minute},
		func(stream string, b []byte) error {
			if stream == hypervisor.StreamStdout {
				out.Write(b)
			} else {
				errOut.Write(b)
			}
			return nil
		})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("guest %s: %q: %+v, %v: %s", id, script, res, err, errOut.String())
	}
	return out.String()
}

// TestSaveImageOfGuest saves a running guest's disk while it runs and
// boots a new instance from the saved image as its base: the file the
// guest wrote and synced is there, and so is one it wrote without a sync
// just before (SaveImage has the guest sync first). The first instance
// runs on meanwhile; stopped, its disk is saved again, and that image
// holds the same data as the instance's disk (qemu-img compare, through
// the overlay's backing chain).
func TestSaveImageOfGuest(t *testing.T) {
	dir, d, img := hostSetup(t)
	ctx := hypervisortest.Context(t)
	spec := hypervisortest.Spec("savesrc", img)
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, d, spec.ID)
	guestRun(t, d, spec.ID, "echo synced-marker-42 > /save-synced && sync && echo unsynced-marker-43 > /save-unsynced")

	out := t.TempDir()
	live := filepath.Join(out, "live.qcow2")
	var calls int
	var last, total int64
	res, err := d.SaveImage(ctx, spec.ID, live, func(done, tot int64) { calls, last, total = calls+1, done, tot })
	if err != nil {
		t.Fatalf("SaveImage of a running guest: %v", err)
	}
	t.Logf("saved a running guest: %+v, %d progress calls, last %d of %d", res, calls, last, total)
	if res.Consistency != hypervisor.SavedCrashSynced {
		t.Errorf("consistency: got %q, want %q", res.Consistency, hypervisor.SavedCrashSynced)
	}
	if st, err := os.Stat(live); err != nil || st.Size() != res.Bytes {
		t.Errorf("bytes: got %d, file %v %v", res.Bytes, st, err)
	}
	if calls == 0 || last != total || total <= 0 {
		t.Errorf("progress: %d calls, ended at %d of %d", calls, last, total)
	}
	vsize := hypervisortest.CheckStandaloneImage(t, live)
	// The guest ran on, and QEMU holds nothing of the save.
	if in, err := d.Get(ctx, spec.ID); err != nil || in.State != hypervisor.InstanceRunning {
		t.Fatalf("after a live save: %+v, %v, want it running", in, err)
	}
	if got := guestRun(t, d, spec.ID, "cat /save-synced"); got != "synced-marker-42\n" {
		t.Errorf("guest after the save reads %q", got)
	}
	if _, err := d.SaveImage(ctx, spec.ID, live, nil); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("SaveImage onto an existing file: got %v, want ErrInvalid", err)
	}

	if err := d.Stop(ctx, spec.ID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	stopped := filepath.Join(out, "stopped.qcow2")
	res, err = d.SaveImage(ctx, spec.ID, stopped, nil)
	if err != nil {
		t.Fatalf("SaveImage of a stopped instance: %v", err)
	}
	t.Logf("saved a stopped instance: %+v", res)
	if res.Consistency != hypervisor.SavedStopped {
		t.Errorf("consistency: got %q, want %q", res.Consistency, hypervisor.SavedStopped)
	}
	hypervisortest.CheckStandaloneImage(t, stopped)
	if b, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", stopped, filepath.Join(dir, spec.ID, diskFile)).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare of the saved image and the instance's disk: %v: %s", err, b)
	}

	// A new instance boots from the live copy as its image.
	saved := img
	saved.Name, saved.Disk, saved.DiskFormat = "saved", live, "qcow2"
	saved.MinDisk = model.ByteSize(vsize)
	spec2 := hypervisortest.Spec("savedst", saved)
	if _, err := d.Start(ctx, spec2); err != nil {
		t.Fatal(err)
	}
	hypervisortest.WaitGuest(t, d, spec2.ID)
	if got := guestRun(t, d, spec2.ID, "cat /save-synced /save-unsynced"); got != "synced-marker-42\nunsynced-marker-43\n" {
		t.Errorf("the guest booted from the saved image reads %q, want both markers", got)
	}
}
