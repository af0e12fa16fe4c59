// Package netgrid runs a grid of hosts on one Linux machine: each host is a
// persistent network namespace (/var/run/netns/<prefix><i>) joined to a
// bridge in the root namespace, and runs its own `vgrid agent`.
//
// Network (Setup, Teardown). Config names the bridge (default vgridbr0),
// its /24 subnet (default 10.77.0.0/24; the bridge holds .1) and the
// namespace prefix (default vgrid-h). Host i (1-based) is the namespace
// <prefix><i> with a veth pair: one end on the bridge in the root
// namespace, the other inside the namespace as eth0 with address .(10+i)/24
// and a default route via .1; lo is up. Everything is made with netlink
// (github.com/vishvananda/netlink, netns); nothing is shelled out except
// iptables, see below. Setup is idempotent: run again with the same Config
// it keeps what exists and makes or fixes what is missing (a namespace
// whose file lost its mount, a veth whose other end is gone, an address,
// a route, a link that is down). Teardown deletes the veths, the
// namespaces <prefix><digits> and the bridge.
//
// Filtering. Namespaces reach each other through the bridge (layer 2) and
// reach the root namespace at the bridge's address, which is on the same
// subnet: no IP forwarding is involved, and Setup leaves
// net.ipv4.ip_forward alone (guests use QEMU user networking, so they need
// none either). But when br_netfilter is loaded and
// net.bridge.bridge-nf-call-iptables is 1 (Docker and Kubernetes set it),
// bridged frames go through the iptables FORWARD chain, which a DROP policy
// would make drop traffic between namespaces; and a host firewall may drop
// what the namespaces send to the control plane on the root namespace
// (INPUT). So when iptables is installed Setup inserts, once,
//
//	iptables -I FORWARD -i <bridge> -o <bridge> -j ACCEPT
//	iptables -I INPUT -i <bridge> -j ACCEPT
//
// (each tagged with the comment "vgrid-netgrid <bridge>") and Teardown
// deletes them. The global sysctls are never changed: turning
// bridge-nf-call-iptables off would break other users of the bridge
// filter. With no iptables binary there are no rules to open.
//
// Agents (Grid). StartGrid runs one `vgrid agent` per namespace, each
// forked from a goroutine locked to an OS thread that was moved into the
// namespace (only the network namespace changes: the agent keeps the
// machine's mount namespace, so it sees the cgroup file systems; `ip netns
// exec` would remount /sys and hide them). The agent's QEMU processes
// inherit its namespace. Each agent has its data directory
// <data-dir>/hosts/<name>, logs to agent.log there, writes agent.pid there,
// and is given a share of the machine (DefaultShare) as its capacity. The
// grid restarts an agent that exits with a backoff; Host handles stop,
// kill, freeze (SIGSTOP of every process in the namespace: the agent and
// its guests) and thaw them. PIDs lists the processes of a namespace by
// comparing /proc/<pid>/ns/net with the namespace's file, as `ip netns
// pids` does.
package netgrid
