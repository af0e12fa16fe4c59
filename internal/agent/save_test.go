package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/server"
	"vgrid/internal/testenv"
)

// TestSaveRunsAndUploads saves a running workspace through the agent
// (fake driver): the save is done, the image is the project's, and its
// content is what the guest wrote; a save the driver fails is failed with
// the driver's reason, in the save and in the workspace's events. No
// file is left in the agent's save directory.
func TestSaveRunsAndUploads(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img not found (the repository checks uploads with it): %v", err)
	}
	blobs := filepath.Join(t.TempDir(), "blobs")
	r := newRigWith(t, func(c *server.Config) { c.BlobDir = blobs })
	// A bound, not a target: under the race detector, beside the driver's
	// tests with real guests, the whole save took over 30 s once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	if err := r.drv.WriteDisk(w.ID, []byte("marker written by the guest\n")); err != nil {
		t.Fatal(err)
	}

	s, err := r.user.SaveWorkspace(ctx, "w1", api.SaveRequest{Image: "saved-env", Tags: []string{"v1"}})
	if err != nil {
		t.Fatal(err)
	}
	var states []model.SaveState
	s, err = r.user.WaitSave(ctx, "w1", s.ID, 50*time.Millisecond, func(s model.Save) { states = append(states, s.State) })
	if err != nil {
		t.Fatal(err)
	}
	if s.State != model.SaveDone || !strings.HasPrefix(s.Digest, "sha256:") || s.Bytes <= 0 || s.Consistency != "crash-consistent, after sync" {
		t.Fatalf("save ended %+v (states seen %v)", s, states)
	}
	imgs, err := r.user.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var img *model.Image
	for i := range imgs {
		if imgs[i].Name == "saved-env" {
			img = &imgs[i]
		}
	}
	if img == nil || img.Digest != s.Digest || img.Project != "default" || img.DiskFormat != "qcow2" || img.Boot != "direct" || img.Kernel == nil {
		t.Fatalf("image made: %+v", img)
	}
	// The blob the repository keeps holds what the guest wrote.
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.Disk.Path, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert of the stored image: %v: %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil || !bytes.HasPrefix(b, []byte("marker written by the guest\n")) {
		t.Fatalf("the stored image does not begin with the guest's marker (%d bytes, %v)", len(b), err)
	}

	// A save the driver fails.
	r.drv.SetFaults(fake.Faults{SaveErr: errors.New("disk on fire")})
	s2, err := r.user.SaveWorkspace(ctx, "w1", api.SaveRequest{Image: "saved-env2"})
	if err != nil {
		t.Fatal(err)
	}
	s2, err = r.user.WaitSave(ctx, "w1", s2.ID, 50*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2.State != model.SaveFailed || !strings.Contains(s2.Error, "disk on fire") {
		t.Fatalf("failed save: %+v", s2)
	}
	// (Each end's event is written just after the save's record.)
	var joined string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		evs, err := r.user.WorkspaceEvents(ctx, "w1")
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for _, e := range evs {
			all = append(all, e.Message)
		}
		joined = strings.Join(all, "\n")
		if strings.Contains(joined, "saved as image saved-env (") && strings.Contains(joined, "save failed: ") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("events:\n%s", joined)
			break
		}
	}
	if imgs, err = r.user.Images(ctx); err != nil {
		t.Fatal(err)
	}
	for _, i := range imgs {
		if i.Name == "saved-env2" {
			t.Errorf("a failed save made image %s", i.Name)
		}
	}
	r.eventually("no file left in the save directory", func() bool {
		ents, _ := os.ReadDir(filepath.Join(r.dataDir, "saves"))
		return len(ents) == 0
	})
}
