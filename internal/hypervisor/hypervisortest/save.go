package hypervisortest

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"vgrid/internal/hypervisor"
)

// CheckStandaloneImage checks with qemu-img (when it is installed) that
// the file at path is a qcow2 image without a backing file whose
// metadata is sound (qemu-img check), and returns its virtual size (0
// when qemu-img is not there).
func CheckStandaloneImage(t *testing.T, path string) int64 {
	t.Helper()
	img, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Logf("qemu-img not installed: %s not checked", path)
		return 0
	}
	out, err := exec.Command(img, "info", "--output=json", path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v: %s", path, err, out)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		Backing     string `json:"backing-filename"`
		FullBacking string `json:"full-backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info %s: %v: %s", path, err, out)
	}
	if info.Format != "qcow2" || info.Backing != "" || info.FullBacking != "" {
		t.Errorf("saved image %s: format %q, backing %q, want qcow2 without a backing file", path, info.Format, info.Backing)
	}
	if out, err := exec.Command(img, "check", "-f", "qcow2", path).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check %s: %v: %s", path, err, out)
	}
	return info.VirtualSize
}

// checkSaveStopped saves the stopped instance id: a standalone image of
// the size reported, consistency "stopped"; the same destination again
// is ErrInvalid, an unknown instance ErrNotFound; the instance stays
// stopped.
func checkSaveStopped(t *testing.T, d hypervisor.Driver, id string) {
	t.Helper()
	ctx := Context(t)
	dst := filepath.Join(t.TempDir(), "saved.qcow2")
	var calls int
	var last, total int64
	res, err := d.SaveImage(ctx, id, dst, func(done, tot int64) {
		calls++
		if done < last || done > tot || tot <= 0 {
			t.Errorf("SaveImage progress: %d of %d after %d", done, tot, last)
		}
		last, total = done, tot
	})
	if err != nil {
		t.Fatalf("SaveImage of a stopped instance: %v", err)
	}
	st, err := os.Stat(dst)
	if err != nil || res.Bytes != st.Size() || res.Bytes <= 0 || res.Took <= 0 {
		t.Errorf("SaveImage: got %+v, file %v (%v), want its size and time", res, st, err)
	}
	if res.Consistency != hypervisor.SavedStopped {
		t.Errorf("SaveImage consistency: got %q, want %q", res.Consistency, hypervisor.SavedStopped)
	}
	if calls == 0 || last != total {
		t.Errorf("SaveImage progress: %d calls, ended at %d of %d, want it to end at the total", calls, last, total)
	}
	if vs := CheckStandaloneImage(t, dst); vs != 0 && vs != total {
		t.Errorf("saved image: virtual size %d, progress total %d", vs, total)
	}
	if _, err := d.SaveImage(ctx, id, dst, nil); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("SaveImage onto an existing file: got %v, want ErrInvalid", err)
	}
	if in, err := d.Get(ctx, id); err != nil || in.State != hypervisor.InstanceStopped {
		t.Errorf("after SaveImage: got %+v, %v, want it still stopped", in, err)
	}
}
