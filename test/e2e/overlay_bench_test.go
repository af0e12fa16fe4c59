package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/guest/guesttest"
	"vgrid/internal/netgrid/gridtest"
)

// BenchmarkOverlayThroughput measures guest-to-guest TCP throughput over a
// VXLAN overlay between two hosts against the same sender to an identical
// guest on its own host's bridge (no VXLAN), in one run, alternating: the
// ratio says what the overlay costs. Real guests on a grid of 2 hosts
// (network namespaces); the sender pushes -mib MiB of zeros with dd | nc,
// timed in the guest (/proc/uptime, 10 ms).
//
//	go test ./test/e2e -run XXX -bench OverlayThroughput -benchtime 1x -v
//	VGRID_BENCH_ROUNDS=5 VGRID_BENCH_MIB=64 VGRID_BENCH_CPU=0.5 ... (defaults; a grid of 2 hosts offers 1 core each on a 2-core machine)
func BenchmarkOverlayThroughput(b *testing.B) {
	guesttest.RequireRoot(b)
	guesttest.RequireQEMU(b)
	gridtest.Require(b)
	rounds := envN("VGRID_BENCH_ROUNDS", 5)
	mib := envN("VGRID_BENCH_MIB", 64)
	cpu := envS("VGRID_BENCH_CPU", "0.5")
	img := guesttest.Image(b)
	g := gridtest.Start(b, gridtest.Options{Hosts: 2, Images: []string{filepath.Dir(img.Disk.Path)}})
	ctx := context.Background()
	h1, h2 := g.Hosts[0].Name, g.Hosts[1].Name
	if _, err := g.Client.CreateNetwork(ctx, api.NetworksPost{Name: "tp", Subnet: "10.77.0.0/24"}); err != nil {
		b.Fatal(err)
	}
	spec := func(name string, roles ...string) string {
		s := "name: " + name + "\nduration: 1h\nnetworks: [{name: tp}]\ncontext:\n  user_data: |\n    #!/bin/sh\n    nc -ll -p 7002 -e sh -c 'cat > /dev/null' &\nroles:\n"
		for _, r := range roles {
			s += fmt.Sprintf("  - name: %s\n    image: vgrid-guest\n    quantum: {vcpus: 1, cpu: %s, memory: 128Mi}\n", r, cpu)
		}
		return s
	}
	// The sender and the bridge peer on host1, the VXLAN peer on host2:
	// each cluster made while the other host is cordoned.
	place := func(on, off, name string, roles ...string) {
		if out, err := g.CLI("node", "cordon", off); err != nil {
			b.Fatal(err, out)
		}
		defer g.CLI("node", "uncordon", off)
		if _, err := g.Client.CreateCluster(ctx, []byte(spec(name, roles...))); err != nil {
			b.Fatal(err)
		}
	}
	place(h1, h2, "local", "send", "near")
	place(h2, h1, "remote", "far")
	local := waitClusterReady(b, g, g.Client, "local", 3*time.Minute)
	remote := waitClusterReady(b, g, g.Client, "remote", 3*time.Minute)
	near, far := local.Details[1], remote.Details[0]
	if local.Details[0].Host != h1 || near.Host != h1 || far.Host != h2 {
		b.Fatalf("placement: sender %s, near %s, far %s; want %s, %s, %s", local.Details[0].Host, near.Host, far.Host, h1, h1, h2)
	}
	sender := local.Details[0].Name
	measure := func(to string) float64 {
		script := fmt.Sprintf(`s=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero bs=65536 count=%d 2>/dev/null | nc -w 10 %s 7002; e=$(cut -d' ' -f1 /proc/uptime); echo "$s $e"`, mib*16, to)
		out, code := execIn(b, g.Client, sender, script)
		f := strings.Fields(out)
		if code != 0 || len(f) != 2 {
			b.Fatalf("send to %s: exit %d %q", to, code, out)
		}
		s, _ := strconv.ParseFloat(f[0], 64)
		e, _ := strconv.ParseFloat(f[1], 64)
		return float64(mib) * 8 * 1.048576 / (e - s) // Mbit/s
	}
	var vx, br, ratio []float64
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		v := measure(far.Addresses[0])
		r := measure(near.Addresses[0])
		vx, br, ratio = append(vx, v), append(br, r), append(ratio, v/r)
		b.Logf("round %d: VXLAN across hosts %.0f Mbit/s, same-host bridge %.0f Mbit/s, ratio %.2f", i+1, v, r, v/r)
	}
	b.StopTimer()
	b.ReportMetric(median(vx), "vxlan-Mbit/s")
	b.ReportMetric(median(br), "bridge-Mbit/s")
	b.ReportMetric(median(ratio), "vxlan/bridge")
	b.Logf("median of %d rounds (%d MiB each, guests capped at %s core): VXLAN %.0f Mbit/s [%.0f..%.0f], bridge %.0f Mbit/s [%.0f..%.0f], ratio %.2f [%.2f..%.2f]",
		rounds, mib, cpu, median(vx), minOf(vx), maxOf(vx), median(br), minOf(br), maxOf(br), median(ratio), minOf(ratio), maxOf(ratio))
	for _, name := range []string{"local", "remote"} {
		_, _ = g.Client.DeleteCluster(ctx, name)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func minOf(xs []float64) float64 { s := append([]float64(nil), xs...); sort.Float64s(s); return s[0] }
func maxOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)-1]
}

func envN(name string, def int) int {
	if n, err := strconv.Atoi(envS(name, "")); err == nil && n > 0 {
		return n
	}
	return def
}

func envS(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
