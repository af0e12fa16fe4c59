// Package sched decides where workspaces run. It is pure: it takes a
// snapshot of hosts and their commitments, the request and the time, and
// returns a decision, with no I/O, no wall clock and no goroutines, so that
// the same code runs in the server and (later) in the simulator.
//
// This first version places by first fit over free capacity now and, when a
// request does not fit, says which resource was short, by how much, and
// when the commitments standing in the way end.
package sched
