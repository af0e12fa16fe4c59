package guesttest

import (
	"vgrid/internal/testenv"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/guest/image"
	"vgrid/internal/model"
)

// CacheEnv overrides the cache root (default /var/tmp/vgrid-test-image).
const CacheEnv = "VGRID_TEST_IMAGE_DIR"

const defaultCacheRoot = "/var/tmp/vgrid-test-image"

// staleAfter is how old another cached image must be before Image deletes it.
const staleAfter = 24 * time.Hour

// sourceDirs are hashed into the cache key: everything that goes into the
// agent binary or decides how the image is built.
var sourceDirs = []string{
	"cmd/vgrid-guest-agent",
	"internal/guest/agent",
	"internal/guest/proto",
	"internal/guest/image",
	"internal/model",
}

var (
	mu     sync.Mutex
	cached = map[string]model.Image{} // cache dir -> image, per test binary
)

// RequireQEMU skips the test unless qemu-system-x86_64, qemu-img and a
// Debian cloud kernel (/boot/vmlinuz-*-cloud-amd64) are present.
func RequireQEMU(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			Skip(t, "%s is not installed (apt-get install qemu-system-x86 qemu-utils)", bin)
		}
	}
	requireKernel(t)
}

func requireKernel(t testing.TB) {
	t.Helper()
	if _, _, err := image.FindKernel(image.DefaultBootDir); err != nil {
		Skip(t, "no guest kernel: %v", err)
	}
}

// Image returns the guest image built from the current sources, building
// it (agent binary included) on first use. The result is cached under
// /var/tmp/vgrid-test-image/<hash of the inputs>; callers must treat its
// files as read-only (put a qcow2 overlay on the disk).
func Image(t testing.TB) model.Image {
	t.Helper()
	requireKernel(t)
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (apt-get install e2fsprogs)", tool)
		}
	}
	modRoot, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	kernel, _, err := image.FindKernel(image.DefaultBootDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := inputHash(modRoot, kernel, image.DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	root := os.Getenv(CacheEnv)
	if root == "" {
		root = defaultCacheRoot
	}
	dir := filepath.Join(root, key)

	mu.Lock()
	defer mu.Unlock()
	if img, ok := cached[dir]; ok {
		return img
	}
	start := time.Now()
	img, built, err := buildLocked(modRoot, root, dir, kernel)
	if err != nil {
		t.Fatal(err)
	}
	if built {
		t.Logf("guesttest: built guest image in %s (%s)", dir, time.Since(start).Round(time.Millisecond))
		pruneStale(root, key)
	}
	cached[dir] = img
	return img
}

// buildLocked builds into dir under an exclusive flock on dir+".lock",
// unless a complete image (image.json is written last) is already there.
func buildLocked(modRoot, root, dir, kernel string) (model.Image, bool, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return model.Image{}, false, fmt.Errorf("guest image cache: %w", err)
	}
	unlock, err := lock(dir+".lock", true)
	if err != nil {
		return model.Image{}, false, err
	}
	defer unlock()
	if img, err := image.LoadManifest(dir); err == nil && complete(img) {
		now := time.Now() // the manifest's mtime is the last use, for pruneStale
		_ = os.Chtimes(filepath.Join(dir, image.ManifestFile), now, now)
		return img, false, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return model.Image{}, false, fmt.Errorf("guest image cache: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return model.Image{}, false, fmt.Errorf("guest image cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	agent := filepath.Join(dir, "vgrid-guest-agent")
	if err := BuildAgent(ctx, modRoot, agent); err != nil {
		return model.Image{}, false, err
	}
	img, err := image.Build(ctx, image.Options{OutDir: dir, KernelImage: kernel, AgentBinary: agent})
	if err != nil {
		return model.Image{}, false, err
	}
	return img, true, nil
}

// complete reports whether the image's files are all there at their sizes.
func complete(img model.Image) bool {
	files := []*model.ImageFile{&img.Disk, img.Kernel, img.Initrd}
	for _, f := range files {
		if f == nil {
			return false
		}
		st, err := os.Stat(f.Path)
		if err != nil || st.Size() != f.Size {
			return false
		}
	}
	return true
}

// BuildAgent builds the static guest agent (CGO_ENABLED=0, linux/amd64)
// from the module rooted at modRoot into out.
func BuildAgent(ctx context.Context, modRoot, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/vgrid-guest-agent")
	cmd.Dir = modRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build guest agent: %w: %s", err, bytes.TrimSpace(b))
	}
	return nil
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// inputHash hashes the sources of the agent and the builder (not their
// tests), go.mod and go.sum, the Go version and the identity of the kernel
// and busybox (path, size, mtime).
func inputHash(modRoot, kernel, busybox string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "go %s\n", runtime.Version())
	for _, p := range []string{kernel, busybox} {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("hash inputs: %w", err)
		}
		fmt.Fprintf(h, "file %s %d %d\n", p, st.Size(), st.ModTime().UnixNano())
	}
	var files []string
	for _, f := range []string{"go.mod", "go.sum"} {
		if _, err := os.Stat(filepath.Join(modRoot, f)); err == nil {
			files = append(files, f)
		}
	}
	for _, d := range sourceDirs {
		err := filepath.WalkDir(filepath.Join(modRoot, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			rel, err := filepath.Rel(modRoot, p)
			if err != nil {
				return err
			}
			files = append(files, rel)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash inputs: %w", err)
		}
	}
	sort.Strings(files)
	for _, f := range files {
		fh, err := os.Open(filepath.Join(modRoot, f))
		if err != nil {
			return "", fmt.Errorf("hash inputs: %w", err)
		}
		fmt.Fprintf(h, "src %s\n", f)
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("hash inputs: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// lock takes an flock on path; with wait false it fails at once when the
// lock is held.
func lock(path string, wait bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// pruneStale removes other cached images (other sources, e.g. an older
// checkout) not used for staleAfter.
func pruneStale(root, keep string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep {
			continue
		}
		dir := filepath.Join(root, e.Name())
		st, err := os.Stat(filepath.Join(dir, image.ManifestFile))
		if err != nil || time.Since(st.ModTime()) < staleAfter {
			continue
		}
		unlock, err := lock(dir+".lock", false)
		if err != nil {
			continue
		}
		os.RemoveAll(dir) // the lock file stays: removing it would race with a new locker
		unlock()
	}
}

// Skip skips for a missing prerequisite, or fails under VGRID_REQUIRE_ALL.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Skip(t, format, args...)
}

// RequireRoot skips (or, under VGRID_REQUIRE_ALL, fails) unless root.
func RequireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
}
