package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"vgrid/internal/hypervisor"
)

// Moving a stopped or suspended instance to another host.
//
// Portable lists, for a stopped instance, disk.qcow2 (the overlay) and
// state.json (its last run: accelerator, exit reason, CPU time); for a
// suspended one also memory.state (the saved guest) and cidata.iso (the
// seed the saved guest had attached: a resume needs the same machine,
// while a boot writes the seed afresh from the spec). spec.json is not
// listed: Adopt is given this host's spec. Neither is anything of the
// process (pidfile, sockets, console, QEMU's log) nor, of course, the
// base image, which the destination has in its own cache.
//
// Adopt moves the files from the caller's directory into a hidden
// directory of StateDir, ".adopt-<id>" (not an instance: not a valid ID),
// rebases the overlay in place onto this host's copy of the image
// (setQcow2Backing, in Go: the header's backing file name and format
// extension, as qemu-img rebase -u would), writes spec.json and a
// state.json for this host (the saved spec's image paths replaced by this
// host's, the suspension marked synced on this boot), fsyncs all of it,
// and renames the directory to StateDir/<id>: the instance appears whole
// or not at all. A failed Adopt can be run again: a file already moved
// into the hidden directory is taken from there.

// portableNames are the files Portable lists, in order; the seed and the
// saved state only for a suspended instance.
var portableNames = []string{diskFile, stateFile, seedFile, memStateFile}

// Portable implements hypervisor.Driver.
func (d *Driver) Portable(ctx context.Context, id string) ([]hypervisor.PortableFile, error) {
	if !hypervisor.ValidID(id) {
		return nil, fmt.Errorf("portable %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return nil, ErrClosed
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return nil, fmt.Errorf("portable %s: %w", id, hypervisor.ErrNotFound)
	}
	if hasIncoming(p) { // its disk may be a partial copy (migrate.go)
		return nil, errIncoming("portable", id)
	}
	d.recoverOp(ctx, id, p, true)
	if pid := readPID(p.PIDFile); alive(pid, marker(p)) {
		return nil, fmt.Errorf("portable %s: qemu %d runs: %w", id, pid, hypervisor.ErrRunning)
	}
	d.settle(id, p)
	_, suspended := suspendedState(p)
	var out []hypervisor.PortableFile
	for _, name := range portableNames {
		if !suspended && (name == seedFile || name == memStateFile) {
			continue
		}
		path := filepath.Join(p.Dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("portable %s: %w", id, err)
		}
		out = append(out, hypervisor.PortableFile{Name: name, Path: path, Size: fi.Size()})
	}
	return out, nil
}

// Adopt implements hypervisor.Driver.
func (d *Driver) Adopt(ctx context.Context, spec hypervisor.InstanceSpec, dir string) (hypervisor.Instance, error) {
	if err := checkSpec(spec); err != nil {
		return hypervisor.Instance{}, err
	}
	if d.closed() {
		return hypervisor.Instance{}, ErrClosed
	}
	id := spec.ID
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Dir); err == nil {
		if _, err := os.Stat(p.Spec); err == nil {
			return hypervisor.Instance{}, fmt.Errorf("adopt %s: %w", id, hypervisor.ErrExists)
		}
		// Left by a start that failed before it wrote spec.json: nothing
		// of an instance.
		if err := os.RemoveAll(p.Dir); err != nil {
			return hypervisor.Instance{}, fmt.Errorf("adopt %s: %w", id, err)
		}
	}
	// A QEMU of this ID without its directory cannot be this instance.
	if err := d.killStrays(id, p, 0); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("adopt %s: %w", id, err)
	}
	if err := d.adoptFiles(spec, p, dir); err != nil {
		return hypervisor.Instance{}, fmt.Errorf("adopt %s: %w", id, err)
	}
	d.log.Info("adopted a moved instance", "instance", id)
	d.changes.Notify(id)
	return d.inspect(id)
}

func (d *Driver) adoptFiles(spec hypervisor.InstanceSpec, p Paths, dir string) error {
	base, err := filepath.Abs(spec.Image.Disk)
	if err != nil {
		return err
	}
	if _, err := os.Stat(base); err != nil {
		return fmt.Errorf("image disk: %w", err)
	}
	tmp := filepath.Join(d.opts.StateDir, ".adopt-"+spec.ID)
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return err
	}
	// take moves name from dir into tmp (or finds it there from an
	// earlier try) and returns its path in tmp; "" if it is in neither.
	take := func(name string) (string, error) {
		dst := filepath.Join(tmp, name)
		if err := moveFile(filepath.Join(dir, name), dst); err == nil || !errors.Is(err, os.ErrNotExist) {
			return dst, err
		}
		if _, err := os.Stat(dst); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", nil
			}
			return "", err
		}
		return dst, nil
	}
	var st runState
	statePath, err := take(stateFile)
	if err != nil {
		return err
	}
	if statePath != "" {
		if err := readJSON(statePath, &st); err != nil {
			return err
		}
	}
	disk, err := take(diskFile)
	if err != nil {
		return err
	}
	if disk == "" {
		return fmt.Errorf("%w: no %s in %s", hypervisor.ErrInvalid, diskFile, dir)
	}
	accel := st.Accel
	if accel == "" {
		accel = d.accelFor(spec)
	}
	toSync := []string{disk}
	if st.Suspended != nil {
		for _, name := range []string{memStateFile, seedFile} {
			f, err := take(name)
			if err != nil {
				return err
			}
			if f == "" {
				return fmt.Errorf("%w: a suspended instance without its %s", hypervisor.ErrInvalid, name)
			}
			toSync = append(toSync, f)
		}
		old := spec
		if st.Suspended.Spec != nil {
			old = *st.Suspended.Spec
		}
		if err := movable(old, spec, accel, d.accelFor(spec)); err != nil {
			return err
		}
		// The same image, at this host's paths.
		old.Image = spec.Image
		fi, err := os.Stat(filepath.Join(tmp, memStateFile))
		if err != nil {
			return err
		}
		st.Suspended = &savedState{At: st.Suspended.At, Bytes: fi.Size(), Duration: st.Suspended.Duration,
			Spec: &old, BootID: d.bootID, Synced: true}
	} else {
		// A state file without its record (or a seed) is of no use.
		os.Remove(filepath.Join(tmp, memStateFile))
	}
	if err := setQcow2Backing(disk, base, spec.Image.DiskFormat); err != nil {
		return fmt.Errorf("rebase the disk: %w", err)
	}
	for _, f := range toSync[1:] {
		if err := syncFile(f); err != nil {
			return err
		}
	}
	// This host's record: no process, the exit as the other host had it.
	rec := runState{Accel: accel, StartedAt: st.StartedAt, StoppedAt: st.StoppedAt, ExitReason: st.ExitReason,
		Suspended: st.Suspended, CPUSeconds: st.CPUSeconds}
	if !rec.exitRecorded() {
		rec.StoppedAt = rec.StartedAt
	}
	if rec.ExitReason == "" {
		rec.ExitReason = "moved from another host"
	}
	if err := writeJSON(filepath.Join(tmp, stateFile), rec); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(tmp, specFile), spec); err != nil {
		return err
	}
	syncDir(tmp)
	if err := os.Rename(tmp, p.Dir); err != nil {
		return err
	}
	syncDir(d.opts.StateDir)
	return nil
}

// movable checks that a guest saved with old, under accel, can be resumed
// here as spec: the same machine (as resumable), the same image by its
// description (its files are at other paths here), and an accelerator
// this host gives it (here: what it would use for spec).
func movable(old, spec hypervisor.InstanceSpec, accel, here string) error {
	switch {
	case old.ID != spec.ID:
		return fmt.Errorf("%w: saved as %s, adopted as %s", hypervisor.ErrInvalid, old.ID, spec.ID)
	case accel != here:
		return fmt.Errorf("%w: suspended under %s, this host would resume it under %s", hypervisor.ErrInvalid, accel, here)
	}
	oi, ni := old.Image, spec.Image
	if oi.Name != ni.Name || oi.Boot != ni.Boot || oi.DiskFormat != ni.DiskFormat || oi.Cmdline != ni.Cmdline || oi.MinDisk != ni.MinDisk ||
		(oi.Kernel == "") != (ni.Kernel == "") || (oi.Initrd == "") != (ni.Initrd == "") {
		return fmt.Errorf("%w: suspended with image %s, cannot resume with a different one", hypervisor.ErrInvalid, oi.Name)
	}
	old.Image = spec.Image
	return resumable(old, spec, accel)
}

// moveFile renames src to dst, or copies it (then removes src) when they
// are on different file systems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	part := dst + ".part"
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(part)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(part)
		return err
	}
	if err := os.Rename(part, dst); err != nil {
		os.Remove(part)
		return err
	}
	return os.Remove(src)
}

// syncFile fsyncs a file.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
