package model

// GridSpec is a virtual grid: networks, volumes, clusters and single
// workspaces composed in one file, with one lease for the whole grid (or
// per part). Parameters (${name} in the file) let the same file describe
// a small trial and a big run (internal/gridspec parses and expands it).
type GridSpec struct {
	// Name names the grid; it is not a prefix of its parts' names.
	Name string `json:"name"`
	// Params are the parameters' defaults, by name; values given at
	// apply time override them. Kept so that an export can be
	// re-applied with other values.
	Params map[string]string `json:"params,omitempty"`
	// Lease and Duration apply to every cluster and workspace that gives
	// none of its own: they share one window (linked leases, all or
	// nothing). A nil Lease means the earliest window from now.
	Lease      *LeaseSpec      `json:"lease,omitempty"`
	Duration   Duration        `json:"duration,omitempty"`
	Networks   []GridNetwork   `json:"networks,omitempty"`
	Volumes    []GridVolume    `json:"volumes,omitempty"`
	Clusters   []ClusterSpec   `json:"clusters,omitempty"`
	Workspaces []WorkspaceSpec `json:"workspaces,omitempty"`
}

// GridNetwork is a network a grid makes (its parts name it in their
// networks).
type GridNetwork struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet,omitempty"`
	NAT    bool   `json:"nat,omitempty"`
}

// GridVolume is a volume a grid makes (its parts attach it by name).
// SnapshotOf, when set, names an existing volume of the project whose
// content the new one starts with.
type GridVolume struct {
	Name       string   `json:"name"`
	Size       ByteSize `json:"size"`
	IOPS       int64    `json:"iops,omitempty"`
	BPS        int64    `json:"bps,omitempty"`
	SnapshotOf string   `json:"snapshot_of,omitempty"`
}
