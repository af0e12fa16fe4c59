package hypervisor

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"vgrid/internal/model"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("instance not found")
	ErrInvalid  = errors.New("invalid instance spec")
	// ErrNotRunning is returned by Suspend for an instance that has no
	// guest to suspend (it is stopped).
	ErrNotRunning = errors.New("instance not running")
	// ErrRunning is returned by Portable for an instance whose process
	// runs: only a stopped or suspended instance can move.
	ErrRunning = errors.New("instance running")
	// ErrExists is returned by Adopt when this host already has an
	// instance of that ID.
	ErrExists = errors.New("instance exists")
	// ErrGuestNotReady is returned by Exec while the guest's agent has
	// not connected (the guest still boots, or has no agent).
	ErrGuestNotReady = errors.New("guest agent not connected")
	// ErrNotInPlace is returned (wrapped, with the reason) by Resize for a
	// change the running guest cannot take without a new QEMU process: more
	// vCPUs than it was started with, memory above its MaxMemory.
	ErrNotInPlace = errors.New("cannot change in place")
	// ErrIncoming is returned for an instance that is waiting for a live
	// migration (PrepareIncoming) by calls that need it to run.
	ErrIncoming = errors.New("instance waiting for an incoming migration")
	// ErrBusy is returned by SaveImage for an instance in the middle of
	// something that changes its disk or process under it (a suspend, a
	// resume, a live migration).
	ErrBusy = errors.New("instance busy")
)

// Consistency of a saved image (SaveResult.Consistency).
const (
	// SavedStopped: the instance had no process; its disk is what its
	// guest left at its last power off.
	SavedStopped = "stopped"
	// SavedSuspended: the instance was suspended; its disk is as of the
	// suspend, without what the guest's page cache held (that is in its
	// saved memory): crash-consistent.
	SavedSuspended = "crash-consistent, suspended"
	// SavedCrashSynced: the guest ran; it was told to sync its page cache
	// to disk first, then its disk copied at one point in time: as if the
	// guest had crashed right after the sync.
	SavedCrashSynced = "crash-consistent, after sync"
	// SavedCrash: the guest ran and could not be told to sync (no guest
	// agent): what it had not written back is not in the copy.
	SavedCrash = "crash-consistent"
)

// SaveResult describes one image SaveImage wrote.
type SaveResult struct {
	// Bytes is the size of the file written.
	Bytes int64
	// Took is from the call until the file was complete.
	Took time.Duration
	// Consistency is one of the Saved* constants.
	Consistency string
}

// MigrationEndpoint is where an instance prepared for an incoming live
// migration (Driver.PrepareIncoming) takes it: Memory is host:port where
// the destination's QEMU takes the migration stream (memory and device
// state), Disk the NBD URI (nbd://host:port/export) of the destination's
// disk, which the source mirrors its disk to while the guest runs.
type MigrationEndpoint = model.MigrationEndpoint

// MigrateOptions tune a live migration.
type MigrateOptions struct {
	// MaxDowntime is the longest the guest may be paused at the switch
	// (QEMU's downtime-limit); 0: the driver's default.
	MaxDowntime time.Duration
	// Bandwidth caps the migration stream in bytes/s; 0: no cap.
	Bandwidth int64
	// NoAutoConverge turns off throttling a guest that dirties memory
	// faster than it is sent (on by default).
	NoAutoConverge bool
	// Mode is how memory is copied: MigrateLive, MigratePaused, or ""
	// for the driver's default.
	Mode MigrateMode
}

// MigrateMode is how a live migration copies memory.
type MigrateMode string

const (
	// MigrateLive pre-copies memory while the guest runs, again and again
	// as it dirties pages, and pauses it only for the last pages and the
	// devices: the shortest pause, but it relies on the hypervisor
	// tracking every page the guest writes.
	MigrateLive MigrateMode = model.MigrateLive
	// MigratePaused pauses the guest first and copies its memory once:
	// the pause lasts the whole copy, and nothing depends on tracking
	// dirty pages. The disk is still copied while the guest runs.
	MigratePaused MigrateMode = model.MigratePaused
)

// Valid reports whether m is "" or a known mode.
func (m MigrateMode) Valid() bool { return m == "" || m == MigrateLive || m == MigratePaused }

// MigrationProgress is how an outgoing live migration goes: Phase is
// "disk" (the disk is mirrored), "memory" (memory is pre-copied) or
// "switchover" (the guest is paused to finish); DiskTotal and DiskDone
// count the disk mirror's bytes; MemoryTotal is the guest's RAM,
// MemoryTransferred what was sent so far (pages sent again count again),
// MemoryRemaining what is left of this pass, DirtyRate how fast the guest
// dirties memory (bytes/s), Passes QEMU's dirty-sync-count.
type MigrationProgress = model.MigrationProgress

// MigrationResult measures one completed live migration.
type MigrationResult struct {
	// Total is from the call until the guest ran at the destination.
	Total time.Duration
	// Downtime is how long the guest was paused (QEMU's measure,
	// including the disk mirror's completion).
	Downtime time.Duration
	// MemoryBytes and DiskBytes are what was sent of each.
	MemoryBytes int64
	DiskBytes   int64
}

// PortableFile is one file that carries a stopped or suspended instance
// to another host (Driver.Portable).
type PortableFile struct {
	// Name is the file's name relative to the instance, slash-separated,
	// without ".." (e.g. "disk.qcow2"): Adopt looks for it under this
	// name in the directory it is given.
	Name string
	// Path is the file on this host (absolute).
	Path string
	// Size is its length in bytes when Portable looked.
	Size int64
}

// InstanceState is what the driver sees of a guest process.
type InstanceState string

// Instance states.
const (
	InstanceRunning InstanceState = "running" // the process lives (the guest may still be booting)
	InstancePaused  InstanceState = "paused"
	InstanceStopped InstanceState = "stopped" // no process; files (disk) remain
	// InstanceSuspended: no process; the guest's memory and device state
	// is saved on the host beside its disk, and Start resumes it.
	InstanceSuspended InstanceState = "suspended"
)

// SuspendResult measures one save (Suspend) or restore (resume by Start)
// of a guest's state, so that the host's rates can be learnt.
type SuspendResult struct {
	Bytes    int64         // size of the saved state
	Duration time.Duration // from the call until the guest was saved (no process left) or ran again
}

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
	// MaxMemory is the most memory Resize may give the guest without a
	// new process: QEMU's RAM is this, and a balloon takes the rest back
	// down to Quantum.Memory at start. 0 (or less than Quantum.Memory):
	// Quantum.Memory, and memory can only shrink and grow back.
	MaxMemory model.ByteSize
	// NICs are the guest's interfaces on private networks, each on a tap
	// the caller made (the host agent, internal/overlay) in the network
	// namespace the driver runs in. None: one user-mode interface (NAT by
	// QEMU, no inbound).
	NICs []NIC
	// Volumes are network volumes (NBD exports over TLS) attached to the
	// guest as virtio-blk disks, and mounted by its agent (volume.go).
	Volumes []VolumeAttachment
}

// NIC is one guest interface on a tap device.
type NIC struct {
	// Tap is the tap device's name; it exists before Start.
	Tap string
	// MAC is the guest's hardware address.
	MAC string
	// Address (with its prefix length) and Gateway reach the guest in its
	// seed (NoCloud network-config); the guest agent applies them.
	Address netip.Prefix
	Gateway netip.Addr
	// MTU is the network's MTU (its bridge's: the underlay's less the
	// VXLAN overhead), told to the guest by the virtio device (host_mtu)
	// and in network-config; 0 leaves the guest's default (1500), with
	// which full-size frames would not fit the overlay.
	MTU int
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
	// ExitReason says why a stopped instance stopped, when known. For a
	// suspended one it is "suspended", or why its last resume failed.
	ExitReason string
	// Saved is the saved state of a suspended instance.
	Saved *SuspendResult
	// LastResume is set when the running process was resumed from a
	// saved state rather than booted.
	LastResume *SuspendResult
	// CPUSeconds is the CPU time the instance's current process has used,
	// as its cgroup counts it (cumulative since the process started; a
	// resume is a new process and starts again from 0). 0 when no process
	// runs (stopped or suspended).
	CPUSeconds float64
	// FinalCPUSeconds is, for a stopped or suspended instance, what
	// CPUSeconds was when its last process ended: the counter read after
	// the process was gone and before its cgroup was removed. 0 while a
	// process runs, and when the driver did not see the end.
	FinalCPUSeconds float64
}

// Driver runs guests on one host. Every method is safe for concurrent use
// and idempotent where it says so. IDs not known return ErrNotFound.
// ExecRequest is a command to run in a guest. Stdin, if set, is its
// standard input; Timeout bounds its run (0: the guest agent's default of
// a minute; at most an hour).
type ExecRequest struct {
	Argv    []string
	Env     []string
	Dir     string
	Stdin   []byte
	Timeout time.Duration
}

// ExecResult is how a command in a guest ended.
type ExecResult struct {
	ExitCode int
	Message  string // why, when it could not run or was killed
}

// Output streams of Exec.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

type Driver interface {
	// Start creates the instance's disk (a qcow2 overlay on the image),
	// context seed and cgroup, and starts the guest. Starting an instance
	// that already runs returns it unchanged. An instance that was stopped
	// keeps its disk and boots from it again. A suspended instance is
	// resumed: the guest continues where it was (no reboot), and its saved
	// state is deleted once it runs. Resuming needs the spec it was
	// suspended with, up to the CPU cap and I/O limits (else ErrInvalid).
	Start(ctx context.Context, spec InstanceSpec) (Instance, error)
	// Suspend pauses the guest, saves its memory and device state on the
	// host and ends its process; disk and spec stay. The guest does not
	// notice, except that its clock lags by the time it was suspended.
	// Suspending a suspended instance is a no-op returning its saved
	// state; a stopped one returns ErrNotRunning.
	Suspend(ctx context.Context, id string) (SuspendResult, error)
	// Stop asks the guest to power off (ACPI) and kills the process after
	// timeout. Stopping a stopped instance is a no-op; stopping a
	// suspended one discards its saved state.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Delete stops the instance and removes everything it had on the host.
	// Deleting an unknown instance is a no-op.
	Delete(ctx context.Context, id string) error
	// Get returns one instance.
	Get(ctx context.Context, id string) (Instance, error)
	// List returns every instance the host has, including those started by
	// an earlier agent process (adoption).
	List(ctx context.Context) ([]Instance, error)
	// Resize changes a running (or stopped) instance's quantum in place:
	// CPU cap (cgroup), memory (balloon, within the MaxMemory it started
	// with; the cgroup limit follows), disk (grown online, the guest's
	// filesystem too; never shrunk), disk I/O caps (QEMU throttling). The
	// quantum is recorded in spec.json. A change that needs a new QEMU
	// process (more vCPUs, memory above MaxMemory, a smaller disk) returns
	// an error wrapping ErrNotInPlace with the reason, and changes nothing.
	// Bandwidth is the caller's (the host's overlay), not the driver's.
	Resize(ctx context.Context, id string, q model.Quantum) error
	// PrepareIncoming makes spec.ID ready on this host to take a running
	// guest live from another host: its disk (an empty qcow2 overlay of the
	// same size on spec.Image), seed and cgroup, and a QEMU process with the
	// same machine that waits for the migration stream on listen and
	// exports the disk over NBD for the source's mirror. listen is an IP
	// address of this host that the source reaches (not 0.0.0.0, else
	// ErrInvalid) and a port: 0 picks free ports, P takes memory on P and
	// the disk on P+1. Get reports it InstancePaused with ExitReason
	// "incoming" until the guest arrives, then running, still "incoming",
	// until FinishIncoming; Start, Suspend and Exec refuse it with
	// ErrIncoming meanwhile, also once its process has ended (its disk is
	// a partial copy). Calling it again for the same ID returns the same
	// endpoint while its process waits, and prepares it afresh (perhaps
	// on other ports) once that ended; an ID this host has otherwise
	// returns ErrExists. Delete undoes it.
	PrepareIncoming(ctx context.Context, spec InstanceSpec, listen string) (MigrationEndpoint, error)
	// MigrateOut moves the running instance id live to another host's
	// endpoint: its disk overlay is mirrored to to.Disk while the guest
	// runs, then its memory pre-copied, then the guest pauses here and goes
	// on there. progress (may be nil) is called along the way. On success
	// the guest runs at the destination, its process here is gone and its
	// files remain until Delete. On error, or when ctx is cancelled, the
	// migration is undone and the guest runs on here, nothing lost (unless
	// it completed meanwhile: then it succeeds); the destination's process
	// ends, and it is the caller's to delete or prepare again. progress is
	// called on MigrateOut's goroutine, never while the switch waits on
	// the driver, and should return quickly.
	MigrateOut(ctx context.Context, id string, to MigrationEndpoint, opt MigrateOptions, progress func(MigrationProgress)) (MigrationResult, error)
	// FinishIncoming ends the incoming side once the source said the
	// migration completed: the NBD export is closed and the instance is an
	// ordinary running instance of this host (Get shows it running, with
	// the guest's report: its agent goes on, unaware that it moved). An
	// instance whose guest did not arrive returns an error (the caller
	// deletes it). Finishing a finished instance that runs returns it.
	FinishIncoming(ctx context.Context, id string) (Instance, error)
	// ConsoleLog returns up to max bytes of the end of the serial console.
	ConsoleLog(ctx context.Context, id string, max int) ([]byte, error)
	// Portable lists the files that must move for a stopped or suspended
	// instance to continue on another host: its disk (the overlay; never
	// the image's base disk, which the other host has in its own image
	// cache), and for a suspended one its saved state and whatever else
	// its resume needs. The instance stays as it is; the caller copies the
	// files (they do not change while the instance is neither started nor
	// deleted) and, once the other host has adopted them, deletes it
	// here (Delete removes every file listed). A running or paused
	// instance returns ErrRunning, an unknown one ErrNotFound.
	Portable(ctx context.Context, id string) ([]PortableFile, error)
	// Adopt makes the files another host's Portable listed, copied into
	// dir under their Names, this host's instance spec.ID, stopped or
	// suspended as it was there. The files are moved out of dir (which
	// may then be removed). spec is the instance's spec on this host: its
	// image is the same image in this host's cache (the disk is rebased
	// onto spec.Image.Disk); for a suspended instance it must describe the
	// machine that was saved (vCPUs, memory, image, accelerator), else
	// ErrInvalid. A following Start boots a stopped instance from the disk
	// it brought, or resumes a suspended one (its guest goes on, uptime
	// and all). An ID this host already has returns ErrExists. Adopt is
	// safe to call again with the same dir after it failed.
	Adopt(ctx context.Context, spec InstanceSpec, dir string) (Instance, error)
	// Exec runs a command in the running instance's guest (through its
	// guest agent) and returns when it ends; out receives its output as it
	// comes (an error from out abandons the command). A command the guest
	// could not run, or that was killed, still has an ExecResult (exit code
	// 126 or 127, or 128+signal, with a Message). A stopped or suspended
	// instance returns ErrNotRunning, one whose guest agent has not
	// connected ErrGuestNotReady, an unknown one ErrNotFound.
	Exec(ctx context.Context, id string, req ExecRequest, out func(stream string, data []byte) error) (ExecResult, error)
	// SaveImage writes the instance's disk as a standalone image at dst (an
	// absolute path; its directory exists, the file does not): a qcow2
	// file with no backing file, the image's base flattened in, that
	// boots as an image of its own. A stopped or suspended instance is
	// copied as it is; a running one is copied at one point in time while
	// its guest goes on, after the guest was asked to sync its page cache
	// (SaveResult.Consistency says which it was). progress (may be nil) is
	// called now and then with the bytes of the virtual disk done and
	// their total. On error or when ctx is cancelled nothing is left at
	// dst and the instance is as it was. An instance whose migration,
	// suspend or resume is under way returns ErrBusy (ErrIncoming while it
	// waits for an incoming migration), an unknown one ErrNotFound.
	SaveImage(ctx context.Context, id string, dst string, progress func(done, total int64)) (SaveResult, error)
	// Changes delivers an instance ID whenever its state or guest report
	// changes, so the agent can report without polling. Never closed before Close.
	Changes() <-chan string
	// Close releases connections; guests keep running.
	Close() error
}
