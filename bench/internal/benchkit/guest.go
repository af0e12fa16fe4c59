package benchkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"vgrid/internal/guest/guesttest"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// WorkDir returns dir, created if missing, or else a new directory made by
// os.MkdirTemp(parent, pattern) (parent "" is the system's temporary
// directory). cleanup removes the new directory and leaves dir alone.
func WorkDir(dir, parent, pattern string) (path string, cleanup func(), err error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("work directory: %w", err)
		}
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return "", nil, fmt.Errorf("work directory: %w", err)
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// Logger returns the logger the harnesses give the QEMU driver: text on
// standard error, warnings and errors only unless verbose.
func Logger(verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// guestTimeout bounds WaitGuest.
const guestTimeout = 2 * time.Minute

// WaitGuest waits until the guest of instance id on d has reported (its
// agent answers). It fails when the instance stops or after two minutes.
func WaitGuest(ctx context.Context, d hypervisor.Driver, id string) error {
	deadline := time.Now().Add(guestTimeout)
	for {
		in, err := d.Get(ctx, id)
		if err != nil {
			return err
		}
		if in.Guest != nil {
			return nil
		}
		if in.State == hypervisor.InstanceStopped {
			return fmt.Errorf("%s stopped: %s", id, in.ExitReason)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no guest report", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LocalImage returns img as a driver takes it: the paths of its files on
// this machine.
func LocalImage(img model.Image) hypervisor.LocalImage {
	li := hypervisor.LocalImage{Name: img.Name, Boot: img.Boot, Disk: img.Disk.Path, DiskFormat: img.DiskFormat,
		Cmdline: img.Cmdline, MinDisk: img.MinDisk}
	if img.Kernel != nil {
		li.Kernel = img.Kernel.Path
	}
	if img.Initrd != nil {
		li.Initrd = img.Initrd.Path
	}
	return li
}

// GuestImage builds (or finds in its cache) the tests' guest image, the
// way internal/guest/guesttest builds it for the driver's tests. What
// would skip or fail a test is returned as an error.
func GuestImage() (hypervisor.LocalImage, error) {
	tb := &mainTB{}
	var img model.Image
	func() {
		defer func() {
			if r := recover(); r != nil && r != errStopTB {
				panic(r)
			}
		}()
		guesttest.RequireQEMU(tb)
		img = guesttest.Image(tb)
	}()
	if tb.failed != "" {
		return hypervisor.LocalImage{}, errors.New(tb.failed)
	}
	return LocalImage(img), nil
}

// mainTB is the part of testing.TB that guesttest uses, outside a test.
type mainTB struct {
	testing.TB // not set: a method not below would panic
	failed     string
}

// errStopTB unwinds GuestImage from a Fatal or Skip.
var errStopTB = errors.New("stop")

func (t *mainTB) Helper()                           {}
func (t *mainTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *mainTB) Fatal(args ...any)                 { t.failed = fmt.Sprint(args...); panic(errStopTB) }
func (t *mainTB) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }
func (t *mainTB) Skipf(format string, args ...any) {
	t.Fatal("cannot run: " + fmt.Sprintf(format, args...))
}
func (t *mainTB) Skip(args ...any) { t.Fatal("cannot run: " + fmt.Sprint(args...)) }
