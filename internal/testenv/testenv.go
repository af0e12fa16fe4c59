package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RequireAllEnv turns skips for missing prerequisites into failures.
const RequireAllEnv = "VGRID_REQUIRE_ALL"

// Skip skips the test for a missing prerequisite, or fails it under
// VGRID_REQUIRE_ALL.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv(RequireAllEnv) != "" {
		tb.Fatalf("%s is set, but: "+format, append([]any{RequireAllEnv}, args...)...)
	}
	tb.Skipf(format, args...)
}

// RequireRoot skips (or fails, see Skip) unless the test runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skip(tb, "needs root (cgroups, QEMU state)")
	}
}

// ModuleRoot is the directory holding go.mod, found from the working
// directory (a package's directory under go test).
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
