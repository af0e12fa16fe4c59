// Package netnsrun runs code in a network namespace: on an OS thread of
// its own, locked and moved into the namespace for the call. Sockets the
// code opens stay in the namespace (and may be used from any goroutine
// afterwards); processes it starts (exec.Cmd.Start) are forked from that
// thread and so start in the namespace. Only the network namespace
// changes.
package netnsrun
