package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/hypervisor"
)

// Moving instances between simulated hosts. Portable writes a stopped or
// suspended instance's files into its host's directory (the stateDir the
// host was made for, which must then be an absolute path), stateDir/<id>:
// disk.img (what the guest wrote, WriteDisk), instance.json (the rest of
// the instance) and, when suspended, memory.state (sparse, of the saved
// size). Adopt reads them from the directory it is given and moves them
// into its own host's directory; Delete removes that directory.

// File names of a fake instance.
const (
	diskFile   = "disk.img"
	recordFile = "instance.json"
	savedFile  = "memory.state"
)

// record is instance.json.
type record struct {
	Spec       hypervisor.InstanceSpec  `json:"spec"`
	State      hypervisor.InstanceState `json:"state"`
	ExitReason string                   `json:"exit_reason,omitempty"`
	StartedAt  time.Time                `json:"started_at"`
	UpBefore   time.Duration            `json:"up_before_ns"`
	// BootID is a suspended guest's boot, which its memory carries.
	BootID   string                    `json:"boot_id,omitempty"`
	Saved    *hypervisor.SuspendResult `json:"saved,omitempty"`
	FinalCPU float64                   `json:"final_cpu,omitempty"`
	Console  []byte                    `json:"console,omitempty"`
}

// instanceDir is where the instance's files go; "" when the host has no
// directory. Called with h.mu.
func (h *host) instanceDir(id string) string {
	if !filepath.IsAbs(h.dir) || !hypervisor.ValidID(id) {
		return ""
	}
	return filepath.Join(h.dir, id)
}

// WriteDisk stands for the guest of running instance id writing data to
// its disk (replacing what it wrote before).
func (d *Driver) WriteDisk(id string, data []byte) error {
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	switch {
	case in == nil:
		return fmt.Errorf("write disk of %q: %w", id, hypervisor.ErrNotFound)
	case in.state != hypervisor.InstanceRunning:
		return fmt.Errorf("write disk of %s: %w", id, hypervisor.ErrNotRunning)
	}
	in.disk = append([]byte(nil), data...)
	return nil
}

// ReadDisk stands for the guest of running instance id reading what is on
// its disk.
func (d *Driver) ReadDisk(id string) ([]byte, error) {
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	switch {
	case in == nil:
		return nil, fmt.Errorf("read disk of %q: %w", id, hypervisor.ErrNotFound)
	case in.state != hypervisor.InstanceRunning:
		return nil, fmt.Errorf("read disk of %s: %w", id, hypervisor.ErrNotRunning)
	}
	return append([]byte(nil), in.disk...), nil
}

// Backing returns the image disk an instance's disk is an overlay on.
func (d *Driver) Backing(id string) (string, bool) {
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	if in == nil {
		return "", false
	}
	return in.backing, true
}

// Portable implements hypervisor.Driver.
func (d *Driver) Portable(ctx context.Context, id string) ([]hypervisor.PortableFile, error) {
	if _, closed := d.state(); closed {
		return nil, ErrClosed
	}
	h := d.host
	h.mu.Lock()
	defer h.mu.Unlock()
	in := h.insts[id]
	switch {
	case in == nil:
		return nil, fmt.Errorf("portable %q: %w", id, hypervisor.ErrNotFound)
	case in.state != hypervisor.InstanceStopped && in.state != hypervisor.InstanceSuspended:
		return nil, fmt.Errorf("portable %s: %w", id, hypervisor.ErrRunning)
	}
	dir := h.instanceDir(id)
	if dir == "" {
		return nil, fmt.Errorf("portable %s: the fake host %q has no directory to write files in", id, h.dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("portable %s: %w", id, err)
	}
	rec := record{Spec: in.spec, State: in.state, ExitReason: in.exitReason, StartedAt: in.startedAt,
		UpBefore: in.upBefore, Saved: copyResult(in.saved), FinalCPU: in.finalCPU, Console: in.console}
	if in.state == hypervisor.InstanceSuspended {
		rec.BootID = in.bootID
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{diskFile: in.disk, recordFile: b}
	names := []string{diskFile, recordFile}
	if in.state == hypervisor.InstanceSuspended {
		names = append(names, savedFile)
	} else if err := os.Remove(filepath.Join(dir, savedFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("portable %s: %w", id, err)
	}
	var out []hypervisor.PortableFile
	for _, name := range names {
		path := filepath.Join(dir, name)
		var err error
		if name == savedFile {
			err = writeSparse(path, in.saved.Bytes)
		} else {
			err = os.WriteFile(path, files[name], 0o600)
		}
		if err != nil {
			return nil, fmt.Errorf("portable %s: %w", id, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("portable %s: %w", id, err)
		}
		out = append(out, hypervisor.PortableFile{Name: name, Path: path, Size: fi.Size()})
	}
	return out, nil
}

// writeSparse makes path a file of size bytes that holds nothing.
func writeSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Adopt implements hypervisor.Driver.
func (d *Driver) Adopt(ctx context.Context, spec hypervisor.InstanceSpec, dir string) (hypervisor.Instance, error) {
	if err := spec.Validate(); err != nil {
		return hypervisor.Instance{}, err
	}
	if _, closed := d.state(); closed {
		return hypervisor.Instance{}, ErrClosed
	}
	id := spec.ID
	h := d.host
	h.mu.Lock()
	if h.insts[id] != nil {
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("adopt %s: %w", id, hypervisor.ErrExists)
	}
	in, err := h.adopt(spec, dir)
	if err != nil {
		h.mu.Unlock()
		return hypervisor.Instance{}, fmt.Errorf("adopt %s: %w", id, err)
	}
	h.insts[id] = in
	out := in.view(time.Now())
	h.mu.Unlock()
	h.notifyAll(id)
	return out, nil
}

// adopt reads a moved instance from dir. Called with h.mu.
func (h *host) adopt(spec hypervisor.InstanceSpec, dir string) (*instance, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", hypervisor.ErrInvalid, recordFile, err)
	}
	disk, err := os.ReadFile(filepath.Join(dir, diskFile))
	if err != nil {
		return nil, err
	}
	in := &instance{spec: spec, state: rec.State, startedAt: rec.StartedAt, exitReason: rec.ExitReason,
		finalCPU: rec.FinalCPU, console: rec.Console, disk: disk, backing: spec.Image.Disk}
	names := []string{diskFile, recordFile}
	switch rec.State {
	case hypervisor.InstanceStopped:
	case hypervisor.InstanceSuspended:
		old := rec.Spec
		oi, ni := old.Image, spec.Image
		if old.ID != spec.ID || old.Quantum.VCPUs != spec.Quantum.VCPUs || old.Quantum.Memory != spec.Quantum.Memory ||
			oi.Name != ni.Name || oi.Boot != ni.Boot || oi.DiskFormat != ni.DiskFormat || oi.Cmdline != ni.Cmdline {
			return nil, fmt.Errorf("%w: the machine differs from the suspended one", hypervisor.ErrInvalid)
		}
		fi, err := os.Stat(filepath.Join(dir, savedFile))
		if err != nil {
			return nil, err
		}
		if rec.Saved == nil || fi.Size() != rec.Saved.Bytes {
			return nil, fmt.Errorf("%w: the saved state does not match its record", hypervisor.ErrInvalid)
		}
		in.saved, in.upBefore, in.bootID = copyResult(rec.Saved), rec.UpBefore, rec.BootID
		names = append(names, savedFile)
	default:
		return nil, fmt.Errorf("%w: a %s instance cannot move", hypervisor.ErrInvalid, rec.State)
	}
	if to := h.instanceDir(spec.ID); to != "" {
		if err := os.MkdirAll(to, 0o750); err != nil {
			return nil, err
		}
		for _, name := range names {
			if err := os.Rename(filepath.Join(dir, name), filepath.Join(to, name)); err != nil {
				return nil, err
			}
		}
	}
	return in, nil
}
