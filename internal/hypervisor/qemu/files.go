package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/hypervisor"
)

// runState is state.json: what a later Driver must know about the last
// run that the process table does not tell.
type runState struct {
	Accel      string    `json:"accel,omitempty"`
	PID        int       `json:"pid,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	StoppedAt  time.Time `json:"stopped_at,omitempty"`
	ExitReason string    `json:"exit_reason,omitempty"`
	// Suspended is set, once the process is gone, when the guest's state
	// was saved to memory.state (suspend.go); a launch clears it.
	Suspended *savedState `json:"suspended,omitempty"`
	// LastResume is set when this run was resumed from a saved state.
	LastResume *savedState `json:"last_resume,omitempty"`
	// CPUSeconds is the CPU time the run's process used, read from its
	// cgroup when its exit was recorded (usage.go).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

// exitRecorded reports whether the last run's end has been written down.
func (s runState) exitRecorded() bool {
	return s.StartedAt.IsZero() || !s.StoppedAt.Before(s.StartedAt)
}

func readSpec(p Paths) (hypervisor.InstanceSpec, error) {
	var s hypervisor.InstanceSpec
	err := readJSON(p.Spec, &s)
	return s, err
}

func readState(p Paths) (runState, error) {
	var s runState
	err := readJSON(p.State, &s)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	return s, err
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic replaces path so that readers never see half a file.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// tail returns up to max bytes of the end of a file (nil if it is missing).
func tail(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := int64(0)
	if max >= 0 && st.Size() > int64(max) {
		off = st.Size() - int64(max)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}
