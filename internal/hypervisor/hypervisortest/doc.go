// Package hypervisortest is the conformance suite every hypervisor.Driver
// passes: Run starts, inspects, stops, restarts, deletes, adopts, moves
// and live-migrates instances of a given image through the Driver
// interface only, so the in-memory fake and the real QEMU driver are held
// to the same contract.
package hypervisortest
