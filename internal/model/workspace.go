package model

import "time"

// State is the observed lifecycle state of a workspace.
type State string

// Workspace states. A workspace moves Pending -> Starting -> Running ->
// Stopping -> Stopped; Failed is terminal until the user starts it again.
const (
	StatePending  State = "Pending"  // accepted, waiting for placement or for its host's agent
	StateStarting State = "Starting" // the QEMU process runs, the guest is not ready yet
	StateRunning  State = "Running"  // the guest agent reported ready
	StateStopping State = "Stopping" // a stop was asked for and is under way
	StateStopped  State = "Stopped"  // no process; the disk is kept
	// StateSuspended: no process; memory saved on the host, resumed later
	// without a reboot (preemption by the lease calendar).
	StateSuspended State = "Suspended"
	StateFailed    State = "Failed" // see Status.Reason
	// StateQueued: a best-effort lease waits in the calendar's queue; no
	// host yet. The calendar's start action places it (Pending).
	StateQueued State = "Queued"
	// StateScheduled: a reservation (or deadline lease) has its slots at a
	// later time; no host is assigned until the calendar starts it.
	StateScheduled State = "Scheduled"
)

// Desired is what the user (or the lease) wants of a workspace.
type Desired string

// Desired states.
const (
	DesiredRunning Desired = "running"
	DesiredStopped Desired = "stopped"
	DesiredDeleted Desired = "deleted" // the agent tears it down, then the server forgets it
	// DesiredSuspended: the lease calendar preempted the workspace; the
	// agent saves its memory to disk (driver Suspend) and reports
	// Suspended. Desired running again resumes it without a reboot.
	DesiredSuspended Desired = "suspended"
)

// LeaseSpec says how a workspace wants its time. Its length is the spec's
// Duration. A nil LeaseSpec is an immediate lease.
type LeaseSpec struct {
	// Kind is immediate (default), best-effort, reservation or deadline.
	Kind LeaseKind `json:"kind,omitempty"`
	// Start is when a reservation begins (RFC 3339).
	Start time.Time `json:"start,omitzero"`
	// Deadline is when a deadline lease must have ended (RFC 3339).
	Deadline time.Time `json:"deadline,omitzero"`
	// Preemptible applies to best-effort leases (default true): a
	// reservation may suspend them and they are resumed later.
	Preemptible *bool `json:"preemptible,omitempty"`
}

// LeaseKind returns the spec's lease kind, defaulting to immediate.
func (s WorkspaceSpec) LeaseKind() LeaseKind {
	if s.Lease == nil || s.Lease.Kind == "" {
		return LeaseImmediate
	}
	return s.Lease.Kind
}

// Quantum is the resource share a workspace gets and the host enforces.
type Quantum struct {
	// VCPUs is the number of virtual CPUs the guest sees.
	VCPUs int `json:"vcpus"`
	// CPU caps host CPU time in cores (0.5 = half a core). It is also what
	// placement reserves on the host. Zero means VCPUs.
	CPU float64 `json:"cpu,omitempty"`
	// Memory is guest RAM.
	Memory ByteSize `json:"memory"`
	// Disk is the virtual size of the workspace's root disk.
	Disk ByteSize `json:"disk,omitempty"`
	// DiskIOPS and DiskBPS cap the root disk's I/O (0: no cap).
	DiskIOPS int64    `json:"disk_iops,omitempty"`
	DiskBPS  ByteSize `json:"disk_bps,omitempty"`
	// Bandwidth caps the guest's network traffic, each way (0: no cap).
	Bandwidth BitRate `json:"bandwidth,omitempty"`
	// MaxMemory is the most memory a resize may give the running guest
	// (its RAM at start; a balloon holds it down to Memory). 0: Memory.
	// It is not counted by placement; only Memory is.
	MaxMemory ByteSize `json:"max_memory,omitempty"`
}

// CPUCores returns the CPU share in cores, defaulting to VCPUs.
func (q Quantum) CPUCores() float64 {
	if q.CPU > 0 {
		return q.CPU
	}
	return float64(q.VCPUs)
}

// Resources converts a quantum into what placement counts.
func (q Quantum) Resources() Resources {
	return Resources{MilliCPU: int64(q.CPUCores()*1000 + 0.5), Memory: q.Memory, Disk: q.Disk, Bandwidth: q.Bandwidth.BytesPerSecond()}
}

// Context is what the guest learns about itself at boot: written into a
// NoCloud seed (a "cidata" ISO), so that cloud-init images and the vgrid
// guest image read it the same way.
type Context struct {
	UserData string            `json:"user_data,omitempty"`
	SSHKeys  []string          `json:"ssh_keys,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	// Cluster is the roster of the cluster the workspace is a member of,
	// set by the control plane (nil for a lone workspace).
	Cluster *ClusterContext `json:"cluster,omitempty"`
}

// WorkspaceSpec is what a user asks for.
type WorkspaceSpec struct {
	Name    string  `json:"name"`
	Image   string  `json:"image"`
	Quantum Quantum `json:"quantum"`
	// Duration is the lease length; the workspace is stopped when it ends.
	Duration Duration `json:"duration"`
	Context  *Context `json:"context,omitempty"`
	// Lease says when the workspace runs; nil is an immediate lease.
	Lease *LeaseSpec `json:"lease,omitempty"`
	// Volumes are network volumes of the project attached to the
	// workspace (see Volume).
	Volumes []VolumeMount `json:"volumes,omitempty"`
}

// GuestInfo is what the in-guest agent reports about itself.
type GuestInfo struct {
	VCPUs     int      `json:"vcpus"`
	MemoryMiB int64    `json:"memory_mib"` // MemTotal as the guest sees it
	Addresses []string `json:"addresses"`
	Hostname  string   `json:"hostname,omitempty"`
	Kernel    string   `json:"kernel,omitempty"`
	DiskBytes int64    `json:"disk_bytes,omitempty"` // size of the root disk
	UptimeS   float64  `json:"uptime_s,omitempty"`
	Context   bool     `json:"context,omitempty"` // the cidata seed was read
	Agent     string   `json:"agent,omitempty"`   // guest agent version
	// Roster is the revision of the cluster roster the guest agent
	// applied (model.ClusterContext.Revision); 0: none.
	Roster int `json:"roster,omitempty"`
	// Volumes are what the guest agent made of the attached volumes.
	Volumes []GuestVolume `json:"volumes,omitempty"`
}

// GuestVolume is one attached volume as the guest sees it: found (Device),
// formatted at this boot, mounted, or the error.
type GuestVolume struct {
	Name   string `json:"name,omitempty"`
	Serial string `json:"serial"`
	Mount  string `json:"mount,omitempty"`
	// Device is the guest's block device (/dev/vdc), once found.
	Device string `json:"device,omitempty"`
	State  string `json:"state"` // mounted, attached (no mount asked) or error
	// Formatted says that the guest agent made the filesystem at this
	// boot (the volume had none).
	Formatted bool   `json:"formatted,omitempty"`
	ReadOnly  bool   `json:"read_only,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Timings records when a workspace passed each step of its start, so that
// the overhead of the control plane and agent can be measured.
type Timings struct {
	Created        time.Time `json:"created,omitempty"`         // the API accepted the request
	Scheduled      time.Time `json:"scheduled,omitempty"`       // placed on a host
	AgentReceived  time.Time `json:"agent_received,omitempty"`  // the host's agent saw the assignment
	ProcessStarted time.Time `json:"process_started,omitempty"` // QEMU was exec'd
	GuestReady     time.Time `json:"guest_ready,omitempty"`     // the guest agent said ready
	// Suspension (lease preemption): when the agent saved the guest, how
	// long the save took and how much it wrote; when the guest ran again
	// from the saved state, and how long the restore took.
	Suspended    time.Time `json:"suspended,omitempty"`
	SuspendTook  Duration  `json:"suspend_took,omitempty"`
	SuspendBytes int64     `json:"suspend_bytes,omitempty"`
	Resumed      time.Time `json:"resumed,omitempty"`
	ResumeTook   Duration  `json:"resume_took,omitempty"`
}

// WorkspaceStatus is what vgrid observed.
type WorkspaceStatus struct {
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"` // why Failed or Stopped
	Node   string `json:"node,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Accel  string `json:"accel,omitempty"` // kvm or tcg
	// Cgroup is where the host enforces the quantum, one path per controller.
	Cgroup    map[string]string `json:"cgroup,omitempty"`
	StartedAt time.Time         `json:"started_at,omitempty"`
	// ExpiresAt is when the lease ends and the workspace is stopped.
	ExpiresAt time.Time  `json:"expires_at,omitempty"`
	Guest     *GuestInfo `json:"guest,omitempty"`
	Timings   Timings    `json:"timings"`
	// Generation counts starts; an agent report for an older generation is dropped.
	Generation int64 `json:"generation"`
	// Lease is the workspace's lease in the control plane's calendar
	// (project/name, with #generation after a restart by the user).
	Lease string `json:"lease,omitempty"`
	// Suspensions counts how often the calendar suspended the workspace.
	Suspensions int `json:"suspensions,omitempty"`
	// Hold, in what an agent is sent only, says why it must not start the
	// guest yet: the guests still up on its host leave no room for it.
	Hold string `json:"hold,omitempty"`
	// Move, while set, says the workspace's files (disk, and saved memory
	// if it is suspended) are on another host: the agent of Node copies
	// them from there before it starts or resumes it.
	Move *Move `json:"move,omitempty"`
	// ResumeOn is where the calendar resumed the workspace while its guest
	// was still being saved here: it moves there once saved.
	ResumeOn string `json:"resume_on,omitempty"`
	// Migration, while set, says the running guest is moving live from
	// Node to Migration.To (see Migration).
	Migration *Migration `json:"migration,omitempty"`
	// Staging, while set, says the image is being fetched to the hosts
	// ahead of the lease's start (see Staging).
	Staging *Staging `json:"staging,omitempty"`
	// Applied is the quantum the host last said it enforces on the
	// running guest (after a start or a resize); the spec's quantum is
	// what is wanted.
	Applied *Quantum `json:"applied,omitempty"`
}

// Migration phases.
const (
	// MigrationPreparing: the destination's agent prepares the guest
	// there (disk, network, a QEMU waiting for the stream).
	MigrationPreparing = "preparing"
	// MigrationRunning: the source's agent sends the disk and memory.
	MigrationRunning = "migrating"
)

// Migration is a running guest moving live from its Node to To: the
// destination's agent prepares it and reports where it listens
// (Endpoint); the source's agent then mirrors the disk and copies the
// memory there while the guest runs, and reports the result. The guest
// keeps its addresses, MACs, quantum and uptime. Until it is done the
// workspace is on Node, and its lease holds room on both hosts.
type Migration struct {
	To    string    `json:"to"`
	Phase string    `json:"phase"`
	Since time.Time `json:"since"`
	// Why it moves: "requested", "drain", "resize", or the reservation
	// that needs the host.
	Why string `json:"why,omitempty"`
	// Quantum, when set, is the quantum the guest has at the destination
	// (a resize carried out by migrating).
	Quantum *Quantum `json:"quantum,omitempty"`
	// Endpoint is where the destination takes the migration.
	Endpoint *MigrationEndpoint `json:"endpoint,omitempty"`
	// Bandwidth caps the migration stream (0: none).
	Bandwidth BitRate `json:"bandwidth,omitempty"`
	// Mode is how memory is copied: "live", "paused", or empty for the
	// source host's default.
	Mode string `json:"mode,omitempty"`
	// Cancel asks the source to stop the migration and keep the guest.
	Cancel bool `json:"cancel,omitempty"`
	// Progress, as the source's agent reports it.
	Progress *MigrationProgress `json:"progress,omitempty"`
	// Calendar says the calendar decided the move (to make room for a
	// reservation): a failure then displaces the lease as preemption would.
	Calendar bool `json:"calendar,omitempty"`
	// Member is the workspace's member index in its (cluster) lease.
	Member int `json:"member,omitempty"`
}

// Migration modes (Migration.Mode): how memory is copied.
const (
	// MigrateLive pre-copies memory while the guest runs.
	MigrateLive = "live"
	// MigratePaused pauses the guest for the whole copy.
	MigratePaused = "paused"
)

// MigrationEndpoint is where a destination's QEMU takes a migration: the
// memory stream (host:port) and the disk mirror (an NBD URI).
type MigrationEndpoint struct {
	Memory string `json:"memory"`
	Disk   string `json:"disk"`
}

// MigrationProgress is how a live migration goes, as the source sees it.
type MigrationProgress struct {
	Phase             string    `json:"phase"` // disk, memory, switchover
	DiskTotal         int64     `json:"disk_total,omitempty"`
	DiskDone          int64     `json:"disk_done,omitempty"`
	MemoryTotal       int64     `json:"memory_total,omitempty"`
	MemoryTransferred int64     `json:"memory_transferred,omitempty"`
	MemoryRemaining   int64     `json:"memory_remaining,omitempty"`
	DirtyRate         int64     `json:"dirty_rate,omitempty"` // bytes/s
	Passes            int       `json:"passes,omitempty"`
	At                time.Time `json:"at,omitzero"`
}

// Move is a workspace's files moving from host From to its Node.
type Move struct {
	From string `json:"from"`
	// Source is where From's agent serves them (host:port).
	Source string `json:"source"`
	// Memory says the saved memory moves too (a suspended workspace).
	Memory bool      `json:"memory,omitempty"`
	Since  time.Time `json:"since"`
	// Progress, as the destination's agent reports it.
	Bytes int64 `json:"bytes,omitempty"`
	Done  int64 `json:"done,omitempty"`
}

// Workspace is the stored object: spec plus desired state plus status.
type Workspace struct {
	ID        string          `json:"id"`
	Project   string          `json:"project"`
	Spec      WorkspaceSpec   `json:"spec"`
	Desired   Desired         `json:"desired"`
	Status    WorkspaceStatus `json:"status"`
	CreatedAt time.Time       `json:"created_at"`
	// Cluster is set on a member of a cluster: its lease, start and stop
	// are the cluster's.
	Cluster *ClusterRef `json:"cluster,omitempty"`
	// NICs are the workspace's interfaces on private networks, decided by
	// the control plane; none means QEMU's user-mode network only.
	NICs []NIC `json:"nics,omitempty"`
	// RequestID is the Idempotency-Key of the request that created it: the
	// same create sent again (a client that lost the answer, a replica
	// that died with it) gets this workspace back instead of a refusal.
	RequestID string `json:"request_id,omitempty"`
	// Revision is the store revision the object was read at (for CAS).
	Revision int64 `json:"revision,omitempty"`
}

// Event is one line in a workspace's history.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // e.g. created, scheduled, started, ready, stopped, failed
	Message string    `json:"message"`
}
