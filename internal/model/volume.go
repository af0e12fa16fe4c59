package model

import "time"

// VolumeState is the lifecycle state of a network volume.
type VolumeState string

// Volume states. A volume is creating until its storage host's agent has
// made and exported it (ready), resizing while that agent grows it, and
// deleting until the agent has removed it; failed says why in Reason.
const (
	VolumeCreating VolumeState = "creating"
	VolumeReady    VolumeState = "ready"
	VolumeResizing VolumeState = "resizing"
	VolumeDeleting VolumeState = "deleting"
	VolumeFailed   VolumeState = "failed"
)

// Volume is a network block device of a project: a disk image on a
// storage host (Node), served over NBD with TLS by that host's agent, and
// attached to workspaces on any host through their spec (VolumeMount).
// Its data outlives the workspaces that use it.
type Volume struct {
	// ID names the volume on its storage host (the export's name) and,
	// shortened, is the disk's serial in the guest.
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Project string   `json:"project"`
	Size    ByteSize `json:"size"`
	// Node is the storage host, chosen by the control plane.
	Node string `json:"node"`
	// IOPS and BPS cap each attachment's I/O (0: no cap).
	IOPS  int64       `json:"iops,omitempty"`
	BPS   int64       `json:"bps,omitempty"`
	State VolumeState `json:"state"`
	// Reason says why the volume failed (or what it waits for).
	Reason string `json:"reason,omitempty"`
	// Endpoint is where the storage host serves it, once ready.
	Endpoint *VolumeEndpoint `json:"endpoint,omitempty"`
	// SnapshotOf names the volume (of the same project) whose content
	// this one was made with; empty for an empty volume.
	SnapshotOf string `json:"snapshot_of,omitempty"`
	// ScratchOf names the cluster member (a workspace of the project)
	// whose scratch volume this is: made with it, attached to it only,
	// deleted with it. Empty for a volume a user made.
	ScratchOf string    `json:"scratch_of,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Attached are the workspaces (names in the project) whose specs
	// use the volume, kept by the control plane.
	Attached []string `json:"attached,omitempty"`
	// Revision is the store revision the object was read at (for CAS).
	Revision int64 `json:"revision,omitempty"`
}

// VolumeEndpoint is where a storage host serves a volume: an NBD server
// on Host:Port (TLS, client certificates of the grid's CA), export Export.
type VolumeEndpoint struct {
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Export string `json:"export"`
}

// VolumeMount attaches a volume of the workspace's project to it: the
// guest agent formats it on first use and mounts it at Mount.
type VolumeMount struct {
	Name     string `json:"name"`
	Mount    string `json:"mount"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ScratchSpec asks for a volume per member of a cluster role, made with
// the cluster and deleted with it, mounted at Mount.
type ScratchSpec struct {
	Size  ByteSize `json:"size"`
	Mount string   `json:"mount"`
}

// VolumeSerial is the disk serial a guest sees for the volume with id: at
// most 20 bytes (virtio-blk's limit), of [a-z0-9-].
func VolumeSerial(id string) string {
	s := "vg-" + id
	if len(s) > 20 {
		s = s[:20]
	}
	return s
}

// ScratchName names member i's scratch volume in role r of cluster c:
// its member name with "-scratch".
func ScratchName(cluster, role string, i int) string {
	return MemberName(cluster, role, i) + "-scratch"
}

// memberVolumes are the volumes member i of role r attaches: the role's,
// then its scratch volume.
func memberVolumes(cluster string, r ClusterRole, i int) []VolumeMount {
	if len(r.Volumes) == 0 && r.Scratch == nil {
		return nil
	}
	out := append([]VolumeMount(nil), r.Volumes...)
	if s := r.Scratch; s != nil {
		out = append(out, VolumeMount{Name: ScratchName(cluster, r.Name, i), Mount: s.Mount})
	}
	return out
}
