package api

import "vgrid/internal/model"

// Network volumes (vgrid volume ...).
//
// A user's POST /volumes stores a volume (state creating) on a storage
// host the control plane chose; that host's agent finds it in its
// assignments (Assignments.Volumes), makes and exports it with its
// qemu-storage-daemon, and reports it ready with where it serves it
// (POST /nodes/{node}/volumes/{project}/{name}, VolumeReport). The hosts
// of the workspaces that attach it find its endpoint in their
// assignments (Assignments.VolumeEndpoints) and give it to QEMU.

// VolumesPost is the body of POST /volumes.
type VolumesPost struct {
	Name string         `json:"name"`
	Size model.ByteSize `json:"size"`
	// IOPS and BPS cap each attachment's I/O (0: no cap).
	IOPS int64 `json:"iops,omitempty"`
	BPS  int64 `json:"bps,omitempty"`
	// Node picks the storage host (admins only; empty: the control plane
	// chooses).
	Node string `json:"node,omitempty"`
}

// VolumeResize is the body of POST /volumes/{name}/resize: the new size
// (volumes only grow).
type VolumeResize struct {
	Size model.ByteSize `json:"size"`
}

// VolumeSnapshot is the body of POST /volumes/{name}/snapshot: the name
// of the new volume that gets the content.
type VolumeSnapshot struct {
	To string `json:"to"`
}

// VolumeList is the answer of GET /volumes.
type VolumeList struct {
	Volumes []model.Volume `json:"volumes"`
}

// Volume states a storage host is asked for (VolumeServe.Want).
const (
	VolumeWantServe  = "serve"  // exist with Size, exported
	VolumeWantDelete = "delete" // unexported and removed
)

// VolumeServe is a volume a host's agent serves (Assignments.Volumes).
type VolumeServe struct {
	// ID is the volume's name on the storage host and its export's name.
	ID      string         `json:"id"`
	Project string         `json:"project"`
	Name    string         `json:"name"`
	Size    model.ByteSize `json:"size"`
	// Want is VolumeWantServe or VolumeWantDelete.
	Want string `json:"want"`
	// State is the volume's state as the control plane has it.
	State model.VolumeState `json:"state"`
	// From is, for a volume being made from a snapshot, the ID of the
	// volume (on this host) whose content it gets.
	From string `json:"from,omitempty"`
}

// VolumeEndpoint is a volume the host's workspaces attach, with where it
// is served (Assignments.VolumeEndpoints).
type VolumeEndpoint struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	Name    string `json:"name"`
	// Node is the storage host; Host, Port and Export where it serves
	// the volume.
	Node   string `json:"node"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Export string `json:"export"`
	IOPS   int64  `json:"iops,omitempty"`
	BPS    int64  `json:"bps,omitempty"`
}

// VolumeReport is what a storage host's agent says of a volume it serves
// (POST /nodes/{node}/volumes/{project}/{name}): ready with its endpoint,
// failed with a reason, or deleted.
type VolumeReport struct {
	ID       string                `json:"id"`
	State    model.VolumeState     `json:"state"`
	Size     model.ByteSize        `json:"size,omitempty"`
	Endpoint *model.VolumeEndpoint `json:"endpoint,omitempty"`
	Reason   string                `json:"reason,omitempty"`
	// Deleted says the volume is gone from the host (its record goes).
	Deleted bool `json:"deleted,omitempty"`
}

// StorageHost is the body of PUT /nodes/{node}/storage: where the host's
// agent serves volumes (host:port), so that it may be chosen to store
// them; empty: it serves none.
type StorageHost struct {
	Address string `json:"address"`
}
