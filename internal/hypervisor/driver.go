package hypervisor

import (
	"context"
	"errors"
	"time"

	"vgrid/internal/model"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("instance not found")
	ErrInvalid  = errors.New("invalid instance spec")
)

// InstanceState is what the driver sees of a guest process.
type InstanceState string

// Instance states.
const (
	InstanceRunning InstanceState = "running" // the process lives (the guest may still be booting)
	InstancePaused  InstanceState = "paused"
	InstanceStopped InstanceState = "stopped" // no process; files (disk) remain
)

// LocalImage is an image whose files are in the host's cache.
type LocalImage struct {
	Name       string
	Boot       string // "direct" or "firmware"
	Disk       string // base disk path (never written)
	DiskFormat string // raw or qcow2
	Kernel     string // direct boot only
	Initrd     string
	Cmdline    string
	MinDisk    model.ByteSize
}

// InstanceSpec is everything a driver needs to start one workspace.
type InstanceSpec struct {
	// ID names the instance on this host: files, cgroup and process are
	// found again by it after an agent restart. [a-z0-9-], at most 40 bytes.
	ID       string
	Hostname string
	Quantum  model.Quantum
	Image    LocalImage
	Context  *model.Context
	// Accel is "kvm", "tcg" or "" (the driver's default).
	Accel string
}

// Instance is the driver's view of one workspace on this host.
type Instance struct {
	ID        string
	State     InstanceState
	PID       int
	Accel     string
	Cgroup    map[string]string // controller -> cgroup directory
	StartedAt time.Time         // when the process was exec'd
	// Guest is the latest report of the in-guest agent; nil until it is ready.
	Guest *model.GuestInfo
	// ExitReason says why a stopped instance stopped, when known.
	ExitReason string
}

// Driver runs guests on one host. Every method is safe for concurrent use
// and idempotent where it says so. IDs not known return ErrNotFound.
type Driver interface {
	// Start creates the instance's disk (a qcow2 overlay on the image),
	// context seed and cgroup, and starts the guest. Starting an instance
	// that already runs returns it unchanged. An instance that was stopped
	// keeps its disk and boots from it again.
	Start(ctx context.Context, spec InstanceSpec) (Instance, error)
	// Stop asks the guest to power off (ACPI) and kills the process after
	// timeout. Stopping a stopped instance is a no-op.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Delete stops the instance and removes everything it had on the host.
	// Deleting an unknown instance is a no-op.
	Delete(ctx context.Context, id string) error
	// Get returns one instance.
	Get(ctx context.Context, id string) (Instance, error)
	// List returns every instance the host has, including those started by
	// an earlier agent process (adoption).
	List(ctx context.Context) ([]Instance, error)
	// Resize changes the CPU cap and memory limit of a running instance.
	Resize(ctx context.Context, id string, q model.Quantum) error
	// ConsoleLog returns up to max bytes of the end of the serial console.
	ConsoleLog(ctx context.Context, id string, max int) ([]byte, error)
	// Changes delivers an instance ID whenever its state or guest report
	// changes, so the agent can report without polling. Never closed before Close.
	Changes() <-chan string
	// Close releases connections; guests keep running.
	Close() error
}
