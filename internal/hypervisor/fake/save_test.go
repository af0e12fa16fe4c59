package fake

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/hypervisortest"
	"vgrid/internal/model"
)

// TestSaveImage saves instances in each state and reads the images back
// with qemu-img (when installed): what the guest wrote is there, from
// offset 0, zeros after it, over the disk's virtual size.
func TestSaveImage(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3*clusterSize+100)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	// A cluster of zeros in the middle is left unallocated.
	clear(big[clusterSize : 2*clusterSize])
	tests := []struct {
		name  string
		data  []byte
		state hypervisor.InstanceState
		guest bool
		want  string
	}{
		{"running with a guest", []byte("marker\n"), hypervisor.InstanceRunning, true, hypervisor.SavedCrashSynced},
		{"running, guest not ready", nil, hypervisor.InstanceRunning, false, hypervisor.SavedCrash},
		{"stopped, several clusters", big, hypervisor.InstanceStopped, true, hypervisor.SavedStopped},
		{"suspended", []byte("s"), hypervisor.InstanceSuspended, true, hypervisor.SavedSuspended},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(t.TempDir())
			defer d.Close()
			if !tt.guest {
				d.SetFaults(Faults{NoGuest: true})
			}
			spec := hypervisortest.Spec("save-"+string(rune('a'+i)), img)
			spec.Quantum.Disk = model.MiB
			if _, err := d.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
			if tt.data != nil {
				if err := d.WriteDisk(spec.ID, tt.data); err != nil {
					t.Fatal(err)
				}
			}
			switch tt.state {
			case hypervisor.InstanceStopped:
				if err := d.Stop(ctx, spec.ID, 0); err != nil {
					t.Fatal(err)
				}
			case hypervisor.InstanceSuspended:
				if _, err := d.Suspend(ctx, spec.ID); err != nil {
					t.Fatal(err)
				}
			}
			dst := filepath.Join(t.TempDir(), "img.qcow2")
			res, err := d.SaveImage(ctx, spec.ID, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Consistency != tt.want {
				t.Errorf("consistency: got %q, want %q", res.Consistency, tt.want)
			}
			if st, err := os.Stat(dst); err != nil || st.Size() != res.Bytes {
				t.Errorf("bytes: got %d, file %v %v", res.Bytes, st, err)
			}
			if vs := hypervisortest.CheckStandaloneImage(t, dst); vs != 0 && vs != int64(model.MiB) {
				t.Errorf("virtual size: got %d, want %d", vs, model.MiB)
			}
			if _, err := exec.LookPath("qemu-img"); err != nil {
				return
			}
			raw := filepath.Join(t.TempDir(), "img.raw")
			if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", dst, raw).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img convert: %v: %s", err, out)
			}
			got, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, model.MiB)
			copy(want, tt.data)
			if !bytes.Equal(got, want) {
				t.Errorf("the image's content differs from what the guest wrote (%d bytes read)", len(got))
			}
		})
	}
}

func TestSaveImageRefusals(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	d := New(t.TempDir())
	defer d.Close()
	spec := hypervisortest.Spec("save-x", img)
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d.SetFaults(Faults{SaveErr: boom})
	if _, err := d.SaveImage(ctx, spec.ID, filepath.Join(dir, "a"), nil); !errors.Is(err, boom) {
		t.Errorf("with SaveErr: got %v, want boom", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed save left a file: %v", err)
	}
	d.SetFaults(Faults{})
	if _, err := d.SaveImage(ctx, spec.ID, "relative.qcow2", nil); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("relative destination: got %v, want ErrInvalid", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.WriteDisk(spec.ID, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SaveImage(cctx, spec.ID, filepath.Join(dir, "b"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled save left a file: %v", err)
	}
}
