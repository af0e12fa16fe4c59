// Package storage is the storage host's side of network volumes: one
// supervised qemu-storage-daemon per host serving qcow2 volumes over NBD
// with mutual TLS.
//
// A Daemon keeps its state in one directory:
//
//	<dir>/volumes/<name>.qcow2   the volumes
//	<dir>/exports.json           the exports to serve (written atomically)
//	<dir>/tls/                   the host's CA, certificate and key (0700)
//	<dir>/run/qmp.sock, qsd.pid  the daemon's QMP socket and pid file
//
// Start launches qemu-storage-daemon, talks to it over QMP (a small client
// in qmp.go), creates the TLS credentials (verify-peer on: clients need a
// certificate from the same CA) and the NBD server, and adds every export
// of exports.json again. A supervisor restarts the daemon with a capped
// backoff when it exits and adds the exports again, so that clients that
// reconnect find them. Each volume in use is one block node (a qcow2 node
// over its file, cache.no-flush off so that a client's flush reaches the
// disk); exports, resizes and snapshots act on that node.
package storage
