package etcdtest

import (
	"testing"

	"vgrid/internal/testenv"
)

// New starts an n-member cluster for a test in a temporary directory and
// stops it when the test ends. It skips the test (or fails it under
// VGRID_REQUIRE_ALL) when no etcd executable is installed.
func New(tb testing.TB, n int) *Cluster {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		testenv.Skip(tb, "etcd server: %v", err)
	}
	c, err := StartCluster(tb.TempDir(), n, Options{Binary: bin})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	return c
}
