package proto

import "vgrid/internal/model"

// PortName is the virtio-serial port name the guest looks for.
const PortName = "vgrid.agent"

// The workspace context reaches the guest as a NoCloud seed: an iso9660
// disk (an ISO 9660 image with Rock Ridge and Joliet, label cidata) attached as a second virtio-blk disk.
// meta-data holds "key: value" lines (instance-id, local-hostname) and a
// "public-keys:" list of "  - <ssh key>" lines; user-data is run once per
// instance-id when it starts with "#!"; vgrid-env holds KEY=VALUE lines.
// network-config (NoCloud network configuration version 2, only when the
// guest has interfaces on private networks) gives each interface, matched
// by its MAC address, its name, addresses and gateway; the guest agent
// applies it, and without it configures eth0 by DHCP. vgrid-cluster.json
// (only for a member of a cluster) is the JSON of a model.ClusterContext:
// the roster the agent writes into /etc/hosts, and the cluster's key pair.
// vgrid-volumes.json (only when network volumes are attached) is a JSON
// array of SeedVolume: the disks the agent finds by serial, formats on
// first use and mounts.
const (
	SeedLabel         = "cidata"
	SeedMetaData      = "meta-data"
	SeedUserData      = "user-data"
	SeedEnv           = "vgrid-env"
	SeedNetworkConfig = "network-config"
	SeedCluster       = "vgrid-cluster.json"
	SeedVolumes       = "vgrid-volumes.json"
)

// SeedVolume is one network volume in vgrid-volumes.json: the virtio-blk
// disk whose serial is Serial, mounted at Mount ("" : attached only),
// read-only when ReadOnly. Name is the volume's, for reports.
type SeedVolume struct {
	Name     string `json:"name,omitempty"`
	Serial   string `json:"serial"`
	Mount    string `json:"mount,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// States of a volume in the guest (VolumeStatus.State).
const (
	VolumeMounted  = "mounted"  // mounted at its Mount
	VolumeAttached = "attached" // found, and not to be mounted (no Mount)
	VolumeError    = "error"    // not found, not formatted or not mounted: Error says why
)

// VolumeStatus is what the guest agent made of one volume of the seed; it
// goes with the ready and facts messages (Message.Volumes) and reaches the
// control plane in the workspace's guest facts.
type VolumeStatus = model.GuestVolume

// Message types.
const (
	TypeReady    = "ready"    // guest -> host, at boot; Info set
	TypeFacts    = "facts"    // host -> guest request; guest -> host reply with Info
	TypePing     = "ping"     // host -> guest
	TypePong     = "pong"     // guest -> host
	TypeShutdown = "shutdown" // host -> guest: power off cleanly; the guest echoes it as an ack just before powering off
	TypeError    = "error"    // guest -> host; Message set
	// TypeExec (host -> guest) runs Exec in the guest; the guest answers
	// with output messages (Stream, Data) and one exit message
	// (ExitCode, and Message when it could not run or was killed), all
	// with the request's ID. Commands still running when the host's
	// connection ends are killed.
	TypeExec   = "exec"
	TypeOutput = "output" // guest -> host
	TypeExit   = "exit"   // guest -> host
)

// Output streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// ExecRequest is a command to run in the guest: argv[0] is looked up in
// PATH; Env adds KEY=VALUE entries to the agent's environment; Dir is the
// working directory ("" is /); TimeoutS bounds its run in seconds (0: the
// guest agent's default); Stdin, if set, is its standard input (else it
// reads nothing).
type ExecRequest struct {
	Argv     []string `json:"argv"`
	Env      []string `json:"env,omitempty"`
	Dir      string   `json:"dir,omitempty"`
	TimeoutS int      `json:"timeout_s,omitempty"`
	Stdin    []byte   `json:"stdin,omitempty"`
}

// Message is one line on the channel.
type Message struct {
	Type    string           `json:"type"`
	ID      string           `json:"id,omitempty"` // echoed in the reply
	Info    *model.GuestInfo `json:"info,omitempty"`
	Message string           `json:"message,omitempty"`
	// Volumes go with Info (ready and facts messages from the guest):
	// the network volumes of the seed, and what became of each.
	Volumes []VolumeStatus `json:"volumes,omitempty"`
	// Exec is a TypeExec request.
	Exec *ExecRequest `json:"exec,omitempty"`
	// Stream and Data are a TypeOutput message's.
	Stream string `json:"stream,omitempty"`
	Data   []byte `json:"data,omitempty"`
	// ExitCode is a TypeExit message's: the command's exit status, 128+N
	// when signal N ended it, 126 or 127 when it could not be run.
	ExitCode *int `json:"exit_code,omitempty"`
}

// AgentPath is where the guest image installs the guest agent; the host
// runs its subcommands there through TypeExec.
const AgentPath = "/usr/sbin/vgrid-guest-agent"

// GrowFSFlag and GrowFSWaitFlag make the guest agent grow the root
// filesystem online after the host grew its disk: AgentPath
// -growfs=BYTES [-growfs-wait=DURATION] waits (default 10 s) until the
// guest's kernel sees the disk at BYTES or more, grows the filesystem to
// fill it, and prints a GrowFSResult as one line of JSON (exit 0), or
// says why not on stderr (exit 1). An agent that predates them refuses
// the flag (exit 2).
const (
	GrowFSFlag     = "growfs"
	GrowFSWaitFlag = "growfs-wait"
)

// GrowFSResult is what the guest agent prints with GrowFSFlag.
type GrowFSResult struct {
	// DiskBytes is the root disk's size as the guest's kernel sees it.
	DiskBytes int64 `json:"disk_bytes"`
	// FSBytes is the root filesystem's size (its blocks × block size).
	FSBytes int64 `json:"fs_bytes"`
	// Grown says that this call grew the filesystem (false: it already
	// filled the disk, e.g. grown by the agent itself when it saw the
	// disk change).
	Grown bool `json:"grown"`
}
