// Package spec reads and checks workspace specs: the YAML or JSON documents
// users submit to ask for a workspace.
//
// Parse is strict: unknown fields, duplicate keys, values of the wrong type
// and trailing data are errors, and every error that concerns a field names
// it by its path (for example "quantum.memory" or "context.ssh_keys[1]").
// Field-level problems are returned as *FieldErrors, which the API can hand
// back to clients as a JSON list of {"field", "reason"} objects.
//
// Validate checks the semantic rules (name form, resource bounds, lease
// length, guest context limits). Parse calls it without an image lookup; the
// server calls it again with one, to check that the image exists.
//
// # Cluster specs
//
// ParseCluster reads a virtual cluster (examples/cluster.yaml) with the
// same strictness; unknown fields also get a hint ("roles[1].quantum.cpus:
// unknown field (did you mean cpu or vcpus?)"). A cluster has:
//
//   - name, lease, duration: as for a workspace, with the same rules. The
//     one lease covers the whole cluster: its members start and end
//     together.
//   - context: given to every member, with the rules of a workspace's
//     context, except that hostname is refused (each member's hostname is
//     its name) and so are VGRID_CLUSTER, VGRID_ROLE and VGRID_INDEX,
//     which vgrid sets for each member (so env holds at most 61 entries).
//   - networks (at most 4): each entry is either {name: N}, an existing
//     network of the project that every member joins, or the cluster's own
//     network, written without a name ({} or {subnet: 10.10.0.0/24}; at
//     most one; the subnet rules of internal/ipam). Without networks the
//     cluster gets its own network with a subnet vgrid picks.
//   - roles (1 to 16): name (a DNS label, unique in the cluster), count (0
//     to 256, default 1; 0 keeps a scaled-down role), image and quantum
//     (as for a workspace), context and placement. There are at most 1024
//     members in all.
//
// Member i (from 0) of a role is the workspace "<cluster>-<role>-<i>". So
// that every name fits a workspace's 63 characters up to index 255, the
// cluster's and the role's names may have 58 characters together. Members
// expand in the spec's role order, then by index (model.ClusterSpec.Members).
//
// A role's context is merged over the cluster's (model.MergeContext): its
// user_data replaces the cluster's; env is the union, the role's value
// winning for a name in both; ssh_keys are the cluster's followed by the
// role's that are not among them. The merged context obeys the workspace
// limits.
//
// placement is a soft preference among a small enum: "spread" (anti-
// affinity: the role's members on different hosts when possible), "pack"
// (on as few hosts as possible), or absent (the scheduler's usual choice).
//
// A quantum's bandwidth (for roles and workspaces alike) caps the guest's
// network traffic in bits per second, with decimal prefixes: "800kbit",
// "100Mbit", "1.5Gbit" ("/s" or "ps" may follow: "1Gbit/s", "100Mbps").
// Byte forms ("12MB", "10Mi") and bare numbers are refused with a hint; 0
// or absent means no cap, and a cap must be from 1Mbit to 100Gbit.
//
// ApplySets applies --set PATH=VALUE overrides, with roles named by name
// (worker.count=8, worker.quantum.memory=256Mi, lease.kind=best-effort),
// and ExportCluster writes a spec back as YAML that ParseCluster reads to
// the same spec.
package spec
