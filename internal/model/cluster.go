package model

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ClusterSpec is what a user asks for to get a virtual cluster: groups of
// workspaces (roles) that share one lease, one guest context and one or
// more overlay networks. internal/spec documents the file format.
type ClusterSpec struct {
	// Name names the cluster and prefixes its members' names.
	Name string `json:"name"`
	// Lease says when the whole cluster runs (nil: immediate); all
	// members start and end together.
	Lease *LeaseSpec `json:"lease,omitempty"`
	// Duration is the lease length, as for a workspace.
	Duration Duration `json:"duration"`
	// Context is given to every member, under its role's context.
	Context *Context `json:"context,omitempty"`
	// Networks are the networks every member joins; empty means a private
	// network made for the cluster (OwnNetwork).
	Networks []ClusterNetwork `json:"networks,omitempty"`
	Roles    []ClusterRole    `json:"roles"`
}

// ClusterNetwork is one network of a cluster: an existing network of the
// project (Name), or, without a name, the cluster's own network, with a
// Subnet or one the control plane picks.
type ClusterNetwork struct {
	Name string `json:"name,omitempty"`
	// Subnet is an IPv4 CIDR prefix (see internal/ipam); only for the
	// cluster's own network.
	Subnet string `json:"subnet,omitempty"`
}

// ClusterRole is a group of identical members of a cluster.
type ClusterRole struct {
	Name string `json:"name"`
	// Count is the number of members (0: the role is scaled down).
	Count   int     `json:"count"`
	Image   string  `json:"image"`
	Quantum Quantum `json:"quantum"`
	// Context is merged over the cluster's (see MergeContext).
	Context *Context `json:"context,omitempty"`
	// Placement is a soft preference for where the members run.
	Placement Placement `json:"placement,omitempty"`
	// Volumes are network volumes of the project every member attaches
	// (a writable one only in a role of one member).
	Volumes []VolumeMount `json:"volumes,omitempty"`
	// Scratch, when set, gives each member a volume of its own, made
	// with the cluster and deleted with it.
	Scratch *ScratchSpec `json:"scratch,omitempty"`
}

// Placement says how a role's members are spread over hosts. It is a
// preference: when it cannot be met, members are placed anyway.
type Placement string

// Placements.
const (
	PlacementAny    Placement = ""       // no preference: the scheduler's usual choice
	PlacementSpread Placement = "spread" // on different hosts when possible (anti-affinity)
	PlacementPack   Placement = "pack"   // on as few hosts as possible (affinity)
)

// Environment variables every member of a cluster gets.
const (
	EnvCluster = "VGRID_CLUSTER" // the cluster's name
	EnvRole    = "VGRID_ROLE"    // the member's role
	EnvIndex   = "VGRID_INDEX"   // the member's index in its role, from 0
)

// ClusterEnv lists the environment variables vgrid sets for each member;
// a cluster spec may not set them.
var ClusterEnv = []string{EnvCluster, EnvRole, EnvIndex}

// ClusterMember is one workspace of a cluster, ready to be created.
type ClusterMember struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Index     int       `json:"index"`
	Placement Placement `json:"placement,omitempty"`
	// Spec is the member's workspace: its role's image and quantum, the
	// merged context (hostname: Name, plus ClusterEnv), the cluster's
	// lease and duration.
	Spec WorkspaceSpec `json:"spec"`
}

// MemberName names member i of a role: "<cluster>-<role>-<i>".
func MemberName(cluster, role string, i int) string {
	return cluster + "-" + role + "-" + strconv.Itoa(i)
}

// Size returns the number of members of the cluster.
func (c ClusterSpec) Size() int {
	n := 0
	for _, r := range c.Roles {
		n += max(r.Count, 0)
	}
	return n
}

// Role returns the role called name.
func (c ClusterSpec) Role(name string) (ClusterRole, bool) {
	for _, r := range c.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return ClusterRole{}, false
}

// OwnNetwork reports whether the cluster gets a network of its own, and
// the subnet asked for it ("" lets the control plane choose): when it
// names no network, or when one of its networks has no name.
func (c ClusterSpec) OwnNetwork() (subnet string, ok bool) {
	if len(c.Networks) == 0 {
		return "", true
	}
	for _, n := range c.Networks {
		if n.Name == "" {
			return n.Subnet, true
		}
	}
	return "", false
}

// Members expands the cluster into its workspaces: roles in the spec's
// order, and in each role members 0 to Count-1.
func (c ClusterSpec) Members() []ClusterMember {
	out := make([]ClusterMember, 0, c.Size())
	for _, r := range c.Roles {
		for i := range r.Count {
			name := MemberName(c.Name, r.Name, i)
			ctx := MergeContext(c.Context, r.Context)
			ctx.Hostname = name
			if ctx.Env == nil {
				ctx.Env = make(map[string]string, len(ClusterEnv))
			}
			ctx.Env[EnvCluster] = c.Name
			ctx.Env[EnvRole] = r.Name
			ctx.Env[EnvIndex] = strconv.Itoa(i)
			out = append(out, ClusterMember{
				Name:      name,
				Role:      r.Name,
				Index:     i,
				Placement: r.Placement,
				Spec: WorkspaceSpec{
					Name:     name,
					Image:    r.Image,
					Quantum:  r.Quantum,
					Duration: c.Duration,
					Context:  ctx,
					Lease:    copyLease(c.Lease),
					Volumes:  memberVolumes(c.Name, r, i),
				},
			})
		}
	}
	return out
}

// MergeContext merges a role's context over the cluster's, into a new
// value that shares nothing with either:
//
//   - user_data: the role's when it has one, else the cluster's;
//   - env: both, the role's value winning for a name in both;
//   - ssh_keys: the cluster's, then the role's that are not among them;
//   - hostname: the role's when it has one, else the cluster's.
func MergeContext(cluster, role *Context) *Context {
	var c, r Context
	if cluster != nil {
		c = *cluster
	}
	if role != nil {
		r = *role
	}
	out := &Context{UserData: c.UserData, Hostname: c.Hostname}
	if r.UserData != "" {
		out.UserData = r.UserData
	}
	if r.Hostname != "" {
		out.Hostname = r.Hostname
	}
	if len(c.Env)+len(r.Env) > 0 {
		out.Env = make(map[string]string, len(c.Env)+len(r.Env))
		for k, v := range c.Env {
			out.Env[k] = v
		}
		for k, v := range r.Env {
			out.Env[k] = v
		}
	}
	for _, k := range slices.Concat(c.SSHKeys, r.SSHKeys) {
		if !slices.Contains(out.SSHKeys, k) {
			out.SSHKeys = append(out.SSHKeys, k)
		}
	}
	return out
}

func copyLease(l *LeaseSpec) *LeaseSpec {
	if l == nil {
		return nil
	}
	c := *l
	if l.Preemptible != nil {
		p := *l.Preemptible
		c.Preemptible = &p
	}
	return &c
}

// BitRate is a network bandwidth in bits per second. In JSON and YAML it
// is a string with a decimal unit: "800kbit", "100Mbit", "1.5Gbit" (an
// optional "/s" or "ps" may follow: "100Mbit/s", "100Mbps"). Byte-based
// forms ("100MB", "12Mi") and bare numbers other than 0 are refused:
// they are too easily taken for one another.
type BitRate int64

// Common rates.
const (
	Kbit BitRate = 1e3
	Mbit BitRate = 1e6
	Gbit BitRate = 1e9
	Tbit BitRate = 1e12
)

var bitUnits = []struct {
	prefix string
	mult   float64
}{{"", 1}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}

// byteHints maps byte-based units to bytes, for the hint in errors.
var byteHints = map[string]float64{
	"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ParseBitRate parses "100Mbit", "1.5Gbit", "800kbit", "1e8bit",
// "1Gbit/s", "100Mbps" or "0".
func ParseBitRate(s string) (BitRate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty bandwidth")
	}
	num, unit := s, ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		digitNext := i+1 < len(s) && (s[i+1] >= '0' && s[i+1] <= '9' || s[i+1] == '+' || s[i+1] == '-')
		if (c < '0' || c > '9') && c != '.' && c != '-' && c != '+' && ((c != 'e' && c != 'E') || !digitNext) {
			num, unit = s[:i], s[i:]
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a bandwidth (want bits per second with a unit, e.g. 100Mbit or 1Gbit)", s)
	}
	if unit == "" {
		if f == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%q has no unit: write bits per second, e.g. %sMbit", s, num)
	}
	base := unit
	switch {
	case strings.HasSuffix(base, "bit/s"):
		base = strings.TrimSuffix(base, "/s")
	case strings.HasSuffix(base, "bps"):
		base = strings.TrimSuffix(base, "ps") + "it"
	}
	if prefix, ok := strings.CutSuffix(base, "bit"); ok {
		for _, u := range bitUnits {
			if prefix == u.prefix {
				v := f * u.mult
				if math.Abs(v) >= math.MaxInt64/2 {
					return 0, fmt.Errorf("%q is too large", s)
				}
				return BitRate(math.Round(v)), nil
			}
		}
	}
	bytesUnit := strings.TrimSuffix(strings.TrimSuffix(unit, "/s"), "ps")
	if mult, ok := byteHints[bytesUnit]; ok {
		hint := "e.g. 100Mbit"
		if v := math.Abs(f * mult * 8); v < math.MaxInt64/2 && v >= 1 {
			hint = fmt.Sprintf("%s is %v", s, BitRate(math.Round(f*mult*8)))
		}
		return 0, fmt.Errorf("%q is in bytes: write bandwidth in bits per second (%s)", s, hint)
	}
	for _, u := range bitUnits[1:] {
		if unit == u.prefix {
			return 0, fmt.Errorf("%q has no unit: write bits per second, e.g. %sbit", s, s)
		}
	}
	return 0, fmt.Errorf("unknown unit %q in %q (use bit, kbit, Mbit, Gbit or Tbit, e.g. 100Mbit)", unit, s)
}

// String prints the rate with the largest decimal unit that divides it
// ("100Mbit", "1500Mbit", "123bit"), so that ParseBitRate reads it back
// exactly.
func (b BitRate) String() string {
	switch {
	case b == 0:
		return "0"
	case b%Tbit == 0:
		return strconv.FormatInt(int64(b/Tbit), 10) + "Tbit"
	case b%Gbit == 0:
		return strconv.FormatInt(int64(b/Gbit), 10) + "Gbit"
	case b%Mbit == 0:
		return strconv.FormatInt(int64(b/Mbit), 10) + "Mbit"
	case b%Kbit == 0:
		return strconv.FormatInt(int64(b/Kbit), 10) + "kbit"
	}
	return strconv.FormatInt(int64(b), 10) + "bit"
}

// BytesPerSecond converts the rate to bytes per second, rounding down.
func (b BitRate) BytesPerSecond() ByteSize { return ByteSize(b / 8) }

// MarshalJSON writes the rate as a string with a unit.
func (b BitRate) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON accepts a string with a unit, or 0.
func (b *BitRate) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	s := string(data)
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	}
	v, err := ParseBitRate(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Cluster is the stored object of a virtual cluster: the spec it was
// created from (with any --set applied), its one lease, and its members in
// the lease's member order. The members are workspaces of the project
// (Workspace.Cluster names the cluster); the cluster's state is theirs.
type Cluster struct {
	Project string      `json:"project"`
	Spec    ClusterSpec `json:"spec"`
	// Lease is the ID of the lease all members share.
	Lease string `json:"lease"`
	// Members are the member workspaces' names, in lease member order.
	Members []string `json:"members"`
	// Networks are the project networks the members are on; the first
	// one's addresses are those of the roster.
	Networks []string `json:"networks"`
	// PublicKey is the cluster's ssh public key (authorized_keys line);
	// the private key is in each member's context.
	PublicKey string    `json:"public_key,omitempty"`
	Desired   Desired   `json:"desired"`
	CreatedAt time.Time `json:"created_at"`
	Revision  int64     `json:"revision,omitempty"`
}

// ClusterStatus is a cluster as GET shows it: the stored object and the
// state of each member.
type ClusterStatus struct {
	Cluster
	// State is Ready when every member runs with its roster applied;
	// else the least advanced member state (Pending, Scheduled, Queued,
	// Starting, Running, Stopping, Stopped, Failed, Suspended).
	State   string         `json:"state"`
	Ready   int            `json:"ready"`
	Details []MemberStatus `json:"details"`
}

// MemberStatus is one member as ClusterStatus shows it.
type MemberStatus struct {
	Name      string   `json:"name"`
	Role      string   `json:"role"`
	Index     int      `json:"index"`
	Host      string   `json:"host,omitempty"`
	State     State    `json:"state"`
	Addresses []string `json:"addresses,omitempty"` // on the cluster's networks
	// Contextualized: the guest agent applied the current roster.
	Contextualized bool   `json:"contextualized"`
	Reason         string `json:"reason,omitempty"`
}
