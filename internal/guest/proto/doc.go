// Package proto is the line protocol on the virtio-serial channel between a
// host agent and the in-guest agent: one JSON object per line, each way.
//
// The guest sends "ready" once at boot (the write blocks until the host side
// connects, which is what we want) and answers every host request. The host
// sends "facts" right after it (re)connects, so a restarted host agent gets
// a fresh report without the guest having to notice the reconnect. The
// guest also sends "facts" unasked (no ID) when what it reports of its
// machine changes: MemTotal (the balloon moved), the root disk's size (it
// was grown) or the online CPUs.
//
// Some host requests are the guest agent's own binary (AgentPath) run
// through "exec": with -growfs it grows the root filesystem to its disk's
// new size and prints a GrowFSResult as one JSON line.
package proto
