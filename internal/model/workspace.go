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
)

// Desired is what the user (or the lease) wants of a workspace.
type Desired string

// Desired states.
const (
	DesiredRunning Desired = "running"
	DesiredStopped Desired = "stopped"
	DesiredDeleted Desired = "deleted" // the agent tears it down, then the server forgets it
)

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
	return Resources{MilliCPU: int64(q.CPUCores()*1000 + 0.5), Memory: q.Memory, Disk: q.Disk}
}

// Context is what the guest learns about itself at boot: written into a
// NoCloud seed (a "cidata" ISO), so that cloud-init images and the vgrid
// guest image read it the same way.
type Context struct {
	UserData string            `json:"user_data,omitempty"`
	SSHKeys  []string          `json:"ssh_keys,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
}

// WorkspaceSpec is what a user asks for.
type WorkspaceSpec struct {
	Name    string  `json:"name"`
	Image   string  `json:"image"`
	Quantum Quantum `json:"quantum"`
	// Duration is the lease length; the workspace is stopped when it ends.
	Duration Duration `json:"duration"`
	Context  *Context `json:"context,omitempty"`
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
}

// Timings records when a workspace passed each step of its start, so that
// the overhead of the control plane and agent can be measured.
type Timings struct {
	Created        time.Time `json:"created,omitempty"`         // the API accepted the request
	Scheduled      time.Time `json:"scheduled,omitempty"`       // placed on a host
	AgentReceived  time.Time `json:"agent_received,omitempty"`  // the host's agent saw the assignment
	ProcessStarted time.Time `json:"process_started,omitempty"` // QEMU was exec'd
	GuestReady     time.Time `json:"guest_ready,omitempty"`     // the guest agent said ready
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
}

// Workspace is the stored object: spec plus desired state plus status.
type Workspace struct {
	ID        string          `json:"id"`
	Project   string          `json:"project"`
	Spec      WorkspaceSpec   `json:"spec"`
	Desired   Desired         `json:"desired"`
	Status    WorkspaceStatus `json:"status"`
	CreatedAt time.Time       `json:"created_at"`
	// Revision is the store revision the object was read at (for CAS).
	Revision int64 `json:"revision,omitempty"`
}

// Event is one line in a workspace's history.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // e.g. created, scheduled, started, ready, stopped, failed
	Message string    `json:"message"`
}
