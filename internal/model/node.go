package model

import "time"

// Resources is what placement counts on a host.
type Resources struct {
	MilliCPU int64    `json:"millicpu"` // thousandths of a core
	Memory   ByteSize `json:"memory"`
	Disk     ByteSize `json:"disk"`
	// Bandwidth is network bandwidth in bytes per second (0: not counted
	// for a request; a host with 0 offers none).
	Bandwidth ByteSize `json:"bandwidth,omitempty"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU + o.MilliCPU, Memory: r.Memory + o.Memory, Disk: r.Disk + o.Disk, Bandwidth: r.Bandwidth + o.Bandwidth}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU - o.MilliCPU, Memory: r.Memory - o.Memory, Disk: r.Disk - o.Disk, Bandwidth: r.Bandwidth - o.Bandwidth}
}

// Fits reports whether o fits inside r.
func (r Resources) Fits(o Resources) bool {
	return o.MilliCPU <= r.MilliCPU && o.Memory <= r.Memory && o.Disk <= r.Disk && o.Bandwidth <= r.Bandwidth
}

// Node is a physical host that runs an agent.
type Node struct {
	Name     string            `json:"name"`
	Address  string            `json:"address,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Resources         `json:"capacity"`
	// Storage is where the host's agent serves network volumes
	// (IP:port of its storage daemon); "": it serves none.
	Storage string `json:"storage,omitempty"`
	// Accel is the acceleration the agent uses: kvm or tcg.
	Accel         string    `json:"accel"`
	Hypervisor    string    `json:"hypervisor,omitempty"` // e.g. "qemu 7.2.22"
	Cgroup        string    `json:"cgroup,omitempty"`     // v1, v2 or hybrid
	AgentVersion  string    `json:"agent_version,omitempty"`
	RegisteredAt  time.Time `json:"registered_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Measured is what the host's guests showed of its speed; the lease
	// calendar plans boots, suspensions and resumptions with it.
	Measured *HostTimes `json:"measured,omitempty"`
	// Transfer is host:port where the host's agent serves the files of
	// workspaces moving to other hosts (empty: it serves none).
	Transfer string `json:"transfer,omitempty"`
	// Running are the workspaces (IDs) whose guests run on the host, as
	// its agent said in its last heartbeat.
	Running []string `json:"running,omitempty"`
	// Images are the images whose files the host has in its cache (sorted),
	// as its agent said in its last heartbeat: the lease calendar plans no
	// staging time for them there.
	Images []string `json:"images,omitempty"`

	// Set by the control plane only (what an agent sends is ignored):

	// State is Ready, NotReady (heartbeats late: given no new work) or
	// Lost (gone longer: its leases were handled elsewhere).
	State NodeState `json:"state,omitempty"`
	// Cordoned hosts keep what they run but are given nothing new.
	Cordoned bool      `json:"cordoned,omitempty"`
	LostAt   time.Time `json:"lost_at,omitzero"`
	// CertificateExpiresAt is when the host's current client certificate
	// expires (its agent renews it before).
	CertificateExpiresAt time.Time `json:"certificate_expires_at,omitzero"`
}

// NodeState is a host's health as the control plane sees it.
type NodeState string

// Host states.
const (
	NodeReady    NodeState = "Ready"
	NodeNotReady NodeState = "NotReady"
	NodeLost     NodeState = "Lost"
)

// HostTimes are recent measurements on a host: boot time (QEMU started to
// guest agent ready) of fresh starts, and the rates of saving a guest's
// memory to disk and restoring it. The last MaxSamples of each are kept;
// the calendar is given the slowest.
type HostTimes struct {
	Boot    []Duration `json:"boot,omitempty"`
	Suspend []int64    `json:"suspend_rates,omitempty"` // bytes/s
	Resume  []int64    `json:"resume_rates,omitempty"`  // bytes/s
	// Stage are the rates at which the host received image files and
	// moving workspaces' files, as its agent measured them (heartbeats).
	Stage []int64 `json:"stage_rates,omitempty"` // bytes/s
	// Migrate are the rates of the live migrations from or to the host
	// (memory and disk sent over the migration's total time).
	Migrate []int64 `json:"migrate_rates,omitempty"` // bytes/s
}

// MaxSamples bounds each list of HostTimes.
const MaxSamples = 8

// BootTime is the slowest recent boot (0: none measured).
func (h *HostTimes) BootTime() time.Duration {
	var m Duration
	if h != nil {
		for _, d := range h.Boot {
			m = max(m, d)
		}
	}
	return m.D()
}

// SuspendRate is the slowest recent save rate (0: none measured).
func (h *HostTimes) SuspendRate() int64 {
	return slowest(h, func(h *HostTimes) []int64 { return h.Suspend })
}

// MigrateRate is the slowest recent live migration rate (0: none
// measured).
func (h *HostTimes) MigrateRate() int64 {
	return slowest(h, func(h *HostTimes) []int64 { return h.Migrate })
}

// StageRate is the slowest recent rate of receiving files (0: none
// measured).
func (h *HostTimes) StageRate() int64 {
	return slowest(h, func(h *HostTimes) []int64 { return h.Stage })
}

// ResumeRate is the slowest recent restore rate (0: none measured).
func (h *HostTimes) ResumeRate() int64 {
	return slowest(h, func(h *HostTimes) []int64 { return h.Resume })
}

func slowest(h *HostTimes, f func(*HostTimes) []int64) int64 {
	var m int64
	if h == nil {
		return 0
	}
	for _, r := range f(h) {
		if r > 0 && (m == 0 || r < m) {
			m = r
		}
	}
	return m
}

// AddSample appends v to a list of samples, keeping the last MaxSamples.
func AddSample[T any](list []T, v T) []T {
	list = append(list, v)
	if len(list) > MaxSamples {
		list = append(list[:0:0], list[len(list)-MaxSamples:]...)
	}
	return list
}

// Image is a bootable environment that workspaces are built from.
type Image struct {
	Name string `json:"name"`
	// Boot is "direct" (QEMU loads Kernel/Initrd itself, -M microvm) or
	// "firmware" (BIOS boots the disk, as for ordinary cloud images).
	Boot string `json:"boot"`
	// Disk is the base disk; workspaces get a qcow2 overlay on it.
	Disk       ImageFile  `json:"disk"`
	DiskFormat string     `json:"disk_format"` // raw or qcow2
	Kernel     *ImageFile `json:"kernel,omitempty"`
	Initrd     *ImageFile `json:"initrd,omitempty"`
	Cmdline    string     `json:"cmdline,omitempty"`
	// MinDisk is the base disk's virtual size: a workspace disk is never smaller.
	MinDisk   ByteSize  `json:"min_disk"`
	CreatedAt time.Time `json:"created_at"`
	// Project owns the image: the project that pushed it, "" for an image
	// the operator registered. Names are unique across the grid.
	Project string `json:"project,omitempty"`
	// Public images are seen (and used) by every project; the operator's
	// always are. Others are seen by their project only.
	Public bool `json:"public"`
	// Tags are free labels given at push.
	Tags []string `json:"tags,omitempty"`
	// Digest is "sha256:<hex>" of the disk's content; Size its bytes.
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// UploadedAt is when its upload ended (zero for the operator's).
	UploadedAt time.Time `json:"uploaded_at,omitzero"`
}

// ImageFile is one file of an image, named by content.
type ImageFile struct {
	Path   string `json:"path"`   // where the control plane serves it from
	SHA256 string `json:"sha256"` // the cache key on hosts
	Size   int64  `json:"size"`
}
