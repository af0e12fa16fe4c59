// Package fake is an in-memory hypervisor.Driver for unit tests of the
// host agent: guests "boot" at once (or after a set delay), report facts
// derived from their quantum, and can be made to fail or crash. Instances
// belong to a simulated host named by the state directory, so a new Driver
// on the same directory adopts them, as with real guests. A live migration
// goes from one fake host to another through a table of the whole process
// (migrate.go): the guest takes its disk, uptime and boot ID along, and
// Faults can make each step fail. It passes the
// hypervisortest conformance suite; only tests import it.
package fake
