package trace

import (
	"testing"

	"vgrid/internal/testenv"
)

// tracesDir is Dir for tests: a skip (a failure under VGRID_REQUIRE_ALL)
// when there is no trace directory.
func tracesDir(tb testing.TB) string {
	tb.Helper()
	d, err := Dir()
	if err != nil {
		testenv.Skip(tb, "no trace directory: %v", err)
	}
	return d
}
