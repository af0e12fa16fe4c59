package proto

import "vgrid/internal/model"

// PortName is the virtio-serial port name the guest looks for.
const PortName = "vgrid.agent"

// The workspace context reaches the guest as a NoCloud seed: an iso9660
// disk (an ISO 9660 image with Rock Ridge and Joliet, label cidata) attached as a second virtio-blk disk.
// meta-data holds "key: value" lines (instance-id, local-hostname) and a
// "public-keys:" list of "  - <ssh key>" lines; user-data is run once per
// instance-id when it starts with "#!"; vgrid-env holds KEY=VALUE lines.
const (
	SeedLabel    = "cidata"
	SeedMetaData = "meta-data"
	SeedUserData = "user-data"
	SeedEnv      = "vgrid-env"
)

// Message types.
const (
	TypeReady    = "ready"    // guest -> host, at boot; Info set
	TypeFacts    = "facts"    // host -> guest request; guest -> host reply with Info
	TypePing     = "ping"     // host -> guest
	TypePong     = "pong"     // guest -> host
	TypeShutdown = "shutdown" // host -> guest: power off cleanly; the guest echoes it as an ack just before powering off
	TypeError    = "error"    // guest -> host; Message set
)

// Message is one line on the channel.
type Message struct {
	Type    string           `json:"type"`
	ID      string           `json:"id,omitempty"` // echoed in the reply
	Info    *model.GuestInfo `json:"info,omitempty"`
	Message string           `json:"message,omitempty"`
}
