package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/guest/guesttest"
	"vgrid/internal/netgrid/gridtest"
)

// startGuestGrid starts a grid of 3 hosts (network namespaces) with the
// test guest image, for tests that boot real guests on it (skipped in
// -short mode and where root, QEMU or namespaces are missing, which
// VGRID_REQUIRE_ALL makes failures). extra are more vgrid up flags. If
// the test fails, the agents' warnings are logged before the grid goes.
func startGuestGrid(t *testing.T, extra ...string) *gridtest.Grid {
	t.Helper()
	if testing.Short() {
		t.Skip("boots real guests")
	}
	guesttest.RequireRoot(t)
	guesttest.RequireQEMU(t)
	gridtest.Require(t)
	img := guesttest.Image(t)
	start := time.Now()
	g := gridtest.Start(t, gridtest.Options{Hosts: 3, Images: []string{filepath.Dir(img.Disk.Path)}, ExtraArgs: extra})
	t.Logf("grid of 3 ready in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		// (Before the grid's cleanup removes the logs.)
		if t.Failed() {
			for _, h := range g.Hosts {
				t.Logf("agent %s warnings:\n%s", h.Name, warnings(filepath.Join(h.DataDir, "agent.log")))
			}
		}
	})
	return g
}
