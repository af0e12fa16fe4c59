package image

import (
	"os"
	"testing"
)

// skipMissing skips for a missing prerequisite, or fails under
// VGRID_REQUIRE_ALL (CI), where everything is installed. (This package's
// internal tests cannot import guesttest, which imports this package.)
func skipMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("VGRID_REQUIRE_ALL") != "" {
		t.Fatalf("VGRID_REQUIRE_ALL is set, but: "+format, args...)
	}
	t.Skipf(format, args...)
}
