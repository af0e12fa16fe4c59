package spec

import (
	"os"
	"path/filepath"
	"testing"
)

func clusterSeeds() [][]byte {
	files, _ := filepath.Glob("testdata/cluster/*")
	seeds := [][]byte{[]byte(clusterYAML)}
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			seeds = append(seeds, data)
		}
	}
	return seeds
}

// FuzzParseCluster checks that ParseCluster never panics and that whatever
// it accepts is valid, expands into valid workspaces, and survives
// ExportCluster, JSON and ApplySets without sets unchanged.
func FuzzParseCluster(f *testing.F) {
	for _, seed := range clusterSeeds() {
		f.Add(seed)
	}
	for _, extra := range []string{
		"networks: [{name: lab}, {subnet: 10.0.0.0/24}]\n",
		"networks: [{}, {}]\n",
		"context: {ssh_keys: [x], env: {VGRID_ROLE: y}, hostname: h}\n",
		"  - {name: head, count: 0, image: x, quantum: {vcpus: 1, memory: 64Mi, bandwidth: 1Gbit/s}}\n",
		"  - {name: r, count: 1e2, image: x, quantum: {vcpus: 1, memory: 64Mi, bandwidth: 12MB}, placement: spread}\n",
	} {
		f.Add([]byte(clusterYAML + extra))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseCluster(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseCluster: got an error with an empty message")
			}
			return
		}
		if err := ValidateCluster(s, nil); err != nil {
			t.Fatalf("ValidateCluster after a successful ParseCluster: got %v, want nil", err)
		}
		clusterRoundTrip(t, s)
		checkMembers(t, s)
	})
}

// FuzzApplySets checks that ApplySets never panics and that what it
// returns is valid and survives a round trip.
func FuzzApplySets(f *testing.F) {
	for _, set := range []string{
		"worker.count=8", "worker.quantum.memory=256Mi", "lease={kind: reservation, start: \"2026-11-24T13:00:00Z\"}",
		"context.env.A=yes", "head.context.user_data=", "roles=[{name: x, image: y, quantum: {vcpus: 1, memory: 64Mi}}]",
		"networks=[{subnet: 10.0.0.0/24}]", "worker.quantum={vcpus: 2, cpu: 1.5, memory: 1Gi}", "roles.head.placement=pack",
		"worker.context.ssh_keys=[]", "duration=90", "name=x", "lease.preemptible=false", "worker.quantum.bandwidth=1e3Mbit",
	} {
		f.Add(set, "worker.count=0")
	}
	base, err := ParseCluster([]byte(clusterYAML))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		s, err := ApplySets(base, []string{a, b})
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ApplySets: got an error with an empty message")
			}
			return
		}
		if err := ValidateCluster(s, nil); err != nil {
			t.Fatalf("ValidateCluster after ApplySets: got %v, want nil", err)
		}
		clusterRoundTrip(t, s)
		checkMembers(t, s)
	})
}
