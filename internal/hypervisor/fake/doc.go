// Package fake is an in-memory hypervisor.Driver for unit tests of the
// host agent: guests "boot" at once (or after a set delay), report facts
// derived from their quantum, and can be made to fail or crash. Instances
// belong to a simulated host named by the state directory, so a new Driver
// on the same directory adopts them, as with real guests. It passes the
// hypervisortest conformance suite; only tests import it.
package fake
