package hypervisortest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/hypervisor"
)

// DiskProbe lets the suite see that an instance's disk moved with it: a
// token written to the disk by the guest on one host is found by the
// guest on the other.
type DiskProbe struct {
	// Prepare returns spec changed so that the probe works on its guest
	// (e.g. user-data that writes token), or spec as it is.
	Prepare func(spec hypervisor.InstanceSpec, token string) hypervisor.InstanceSpec
	// Write has the guest of running instance id write token to its disk
	// and returns once it is there (synced).
	Write func(t *testing.T, d hypervisor.Driver, id, token string)
	// Read returns what the guest of running instance id finds on its
	// disk, waiting up to GuestTimeout for it to look.
	Read func(t *testing.T, d hypervisor.Driver, id string) string
}

// WithDiskProbe makes the Move tests check the disk's content with p.
func WithDiskProbe(p DiskProbe) Option { return func(c *config) { c.probe = &p } }

// hostImage returns img as another host's image cache has it: its files
// hard-linked (or copied) into dir. Files that do not exist (a fake
// driver's image) just get paths in dir.
func hostImage(t *testing.T, img hypervisor.LocalImage, dir string) hypervisor.LocalImage {
	t.Helper()
	place := func(p string) string {
		if p == "" {
			return ""
		}
		dst := filepath.Join(dir, filepath.Base(p))
		if _, err := os.Stat(p); err != nil {
			return dst
		}
		if err := os.Link(p, dst); err != nil {
			copyFile(t, p, dst)
		}
		return dst
	}
	out := img
	out.Disk, out.Kernel, out.Initrd = place(img.Disk), place(img.Kernel), place(img.Initrd)
	return out
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyPortable checks what Portable listed and copies it into staging, as
// the destination's agent would over the network.
func copyPortable(t *testing.T, files []hypervisor.PortableFile, img hypervisor.LocalImage, staging string) {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || path.IsAbs(f.Name) || path.Clean(f.Name) != f.Name || strings.HasPrefix(f.Name, "..") || seen[f.Name] {
			t.Fatalf("Portable: bad or repeated name %q", f.Name)
		}
		seen[f.Name] = true
		if !filepath.IsAbs(f.Path) {
			t.Fatalf("Portable: %s: path %q is not absolute", f.Name, f.Path)
		}
		for _, base := range []string{img.Disk, img.Kernel, img.Initrd} {
			if base != "" && f.Path == base {
				t.Fatalf("Portable lists the image's file %s", base)
			}
		}
		fi, err := os.Stat(f.Path)
		if err != nil || fi.Size() != f.Size {
			t.Fatalf("Portable: %s: got %v, %v, want a file of %d bytes", f.Name, fi, err, f.Size)
		}
		copyFile(t, f.Path, filepath.Join(staging, filepath.FromSlash(f.Name)))
	}
	t.Logf("portable files: %d", len(files))
	for _, f := range files {
		t.Logf("  %s: %d bytes", f.Name, f.Size)
	}
}

func newToken(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "tok" + hex.EncodeToString(b)
}

// testMove moves a stopped (or suspended) instance from a driver on one
// state directory, with its own image cache, to a driver on another, and
// starts (resumes) it there.
func testMove(t *testing.T, newDriver NewDriver, img hypervisor.LocalImage, c config, suspended bool) {
	ctx := Context(t)
	stateA, dA := setup(t, newDriver)
	_, dB := setup(t, newDriver)
	cacheA, cacheB := t.TempDir(), t.TempDir()
	imgA, imgB := hostImage(t, img, cacheA), hostImage(t, img, cacheB)

	id := "move-stop"
	if suspended {
		id = "move-susp"
	}
	token := newToken(t)
	spec := Spec(id, imgA)
	if c.probe != nil {
		spec = c.probe.Prepare(spec, token)
	}
	if _, err := dA.Portable(ctx, id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Portable of an unknown instance: got %v, want ErrNotFound", err)
	}
	if _, err := dA.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	before := WaitGuest(t, dA, id)
	if c.probe != nil {
		c.probe.Write(t, dA, id, token)
	}
	if _, err := dA.Portable(ctx, id); !errors.Is(err, hypervisor.ErrRunning) {
		t.Errorf("Portable of a running instance: got %v, want ErrRunning", err)
	}
	var res hypervisor.SuspendResult
	var boot string
	if suspended {
		time.Sleep(uptimeRun)
		boot = bootOf(t, c, dA, id)
		res = suspend(t, dA, id)
	} else if err := dA.Stop(ctx, id, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	files, err := dA.Portable(ctx, id)
	if err != nil {
		t.Fatalf("Portable: %v", err)
	}
	staging := t.TempDir()
	copyPortable(t, files, imgA, staging)

	specB := spec
	specB.Image = imgB
	if suspended {
		bigger := specB
		bigger.Quantum.Memory *= 2
		if _, err := dB.Adopt(ctx, bigger, staging); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("Adopt of a suspended instance as a bigger machine: got %v, want ErrInvalid", err)
		}
	}
	in, err := dB.Adopt(ctx, specB, staging)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	want := hypervisor.InstanceStopped
	if suspended {
		want = hypervisor.InstanceSuspended
	}
	if in.ID != id || in.State != want || in.PID != 0 {
		t.Fatalf("Adopt: got %+v, want %s without a process", in, want)
	}
	if suspended && (in.Saved == nil || in.Saved.Bytes != res.Bytes) {
		t.Errorf("Adopt: got Saved %+v, want %d bytes saved", in.Saved, res.Bytes)
	}
	if got, err := dB.Get(ctx, id); err != nil || got.State != want {
		t.Errorf("Get after Adopt: got %+v, %v, want %s", got, err, want)
	}
	if _, err := dB.Adopt(ctx, specB, staging); !errors.Is(err, hypervisor.ErrExists) {
		t.Errorf("second Adopt: got %v, want ErrExists", err)
	}

	// The source lets it go: its files go with Delete. So does its image
	// cache, so the destination cannot be using the source's image.
	if err := dA.Delete(ctx, id); err != nil {
		t.Fatalf("Delete on the source: %v", err)
	}
	for _, f := range files {
		if _, err := os.Stat(f.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s on the source after Delete: got %v, want it gone", f.Path, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateA, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance directory on the source after Delete: got %v, want it gone", err)
	}
	if err := os.RemoveAll(cacheA); err != nil {
		t.Fatal(err)
	}

	if suspended {
		// The guest goes on, uptime and all, on the other host.
		resume(t, c, dB, specB, before, boot)
		if c.probe != nil {
			if got := c.probe.Read(t, dB, id); got != token {
				t.Errorf("the resumed guest reads %q from its disk, want %q", got, token)
			}
			// And its disk is the moved one, on this host: booted again
			// here, the guest reads the token from it.
			if err := dB.Stop(ctx, id, 30*time.Second); err != nil {
				t.Fatalf("Stop on the destination: %v", err)
			}
			if _, err := dB.Start(ctx, specB); err != nil {
				t.Fatalf("Start on the destination: %v", err)
			}
			WaitGuest(t, dB, id)
		}
	} else {
		started, err := dB.Start(ctx, specB)
		if err != nil {
			t.Fatalf("Start on the destination: %v", err)
		}
		if started.State != hypervisor.InstanceRunning || started.LastResume != nil {
			t.Errorf("Start on the destination: got %+v, want running, booted", started)
		}
		WaitGuest(t, dB, id)
	}
	if c.probe != nil {
		if got := c.probe.Read(t, dB, id); got != token {
			t.Errorf("the guest on the destination reads %q from its disk, want %q", got, token)
		}
	}
	if err := dB.Delete(ctx, id); err != nil {
		t.Fatalf("Delete on the destination: %v", err)
	}
}
