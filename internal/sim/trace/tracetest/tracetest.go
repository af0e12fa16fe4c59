package tracetest

import (
	"testing"

	"vgrid/internal/sim/trace"
	"vgrid/internal/testenv"
)

// Dir is trace.Dir for tests: a skip (a failure under VGRID_REQUIRE_ALL)
// when there is no trace directory.
func Dir(tb testing.TB) string {
	tb.Helper()
	d, err := trace.Dir()
	if err != nil {
		testenv.Skip(tb, "no trace directory: %v", err)
	}
	return d
}
