package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"vgrid/internal/hypervisor"
)

// ensureDisk creates the instance's qcow2 overlay on the image's disk,
// unless it exists: a restarted instance boots from the disk it had. Its
// virtual size is the larger of the quantum's disk and the image's MinDisk
// (0 keeps the base disk's size).
func (d *Driver) ensureDisk(ctx context.Context, spec hypervisor.InstanceSpec, p Paths) error {
	if _, err := os.Stat(p.Disk); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	base, err := filepath.Abs(spec.Image.Disk)
	if err != nil {
		return err
	}
	if _, err := os.Stat(base); err != nil {
		return fmt.Errorf("image disk: %w", err)
	}
	tmp := p.Disk + ".tmp"
	args := []string{"create", "-q", "-f", "qcow2", "-b", base, "-F", spec.Image.DiskFormat, tmp}
	if size := max(spec.Quantum.Disk, spec.Image.MinDisk); size > 0 {
		args = append(args, strconv.FormatInt(int64(size), 10))
	}
	if err := run(ctx, d.opts.QEMUImgPath, args...); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create disk: %w", err)
	}
	if err := os.Rename(tmp, p.Disk); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create disk: %w", err)
	}
	return nil
}

// run runs a helper program and returns its stderr in the error.
func run(ctx context.Context, prog string, args ...string) error {
	cmd := exec.CommandContext(ctx, prog, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("%s: %w: %s", filepath.Base(prog), err, msg)
		}
		return fmt.Errorf("%s: %w", filepath.Base(prog), err)
	}
	return nil
}
