// Package hypervisor defines the Driver interface through which a host agent
// runs workspaces as guests. Backends: qemu (real QEMU processes controlled
// over QMP, with cgroups for the quantum), and fake (in memory, for unit tests
// of the agent). hypervisortest is the conformance suite both pass.
package hypervisor
