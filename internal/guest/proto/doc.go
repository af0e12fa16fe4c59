// Package proto is the line protocol on the virtio-serial channel between a
// host agent and the in-guest agent: one JSON object per line, each way.
//
// The guest sends "ready" once at boot (the write blocks until the host side
// connects, which is what we want) and answers every host request. The host
// sends "facts" right after it (re)connects, so a restarted host agent gets
// a fresh report without the guest having to notice the reconnect.
package proto
