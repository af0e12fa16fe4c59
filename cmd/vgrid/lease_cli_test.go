package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cli runs the vgrid command line with args against the client config at
// cfg and returns what it printed and its error.
func cli(t *testing.T, cfg string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--config", cfg}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// `vgrid lease extend` through a real control plane: granted, refused
// naming the reservation in the way and the longest extension, shortened.
func TestLeaseExtendCLI(t *testing.T) {
	dir, cfg, _ := cliPlane(t, "n1")
	spec := func(name, extra string) string {
		p := filepath.Join(dir, name+".yaml")
		body := fmt.Sprintf("name: %s\nimage: vgrid-guest\nquantum: {vcpus: 2, cpu: 2, memory: 512Mi, disk: 1Gi}\nduration: 1h\n%s", name, extra)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out, err := cli(t, cfg, "workspace", "create", "--wait=false", "-f", spec("work", "")); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err := cli(t, cfg, "lease", "extend", "work", "--by", "1h")
	if err != nil || !strings.Contains(out, "Lease:") {
		t.Fatalf("extend granted: %v\n%s", err, out)
	}
	start := time.Now().Add(3 * time.Hour).UTC().Format(time.RFC3339)
	if out, err := cli(t, cfg, "workspace", "create", "--wait=false", "-f", spec("booked", fmt.Sprintf("lease: {kind: reservation, start: %q}\n", start))); err != nil {
		t.Fatalf("reservation: %v\n%s", err, out)
	}
	out, err = cli(t, cfg, "lease", "extend", "work", "--by", "2h")
	if err == nil || !strings.Contains(err.Error(), "default/booked") || !strings.Contains(err.Error(), "longest extension possible now") {
		t.Fatalf("extend into a reservation: want a refusal naming default/booked and the longest extension, got %v\n%s", err, out)
	}
	if out, err := cli(t, cfg, "lease", "extend", "work", "--by", "-30m", "-o", "json"); err != nil || !strings.Contains(out, `"end"`) {
		t.Fatalf("shorten: %v\n%s", err, out)
	}
	if _, err := cli(t, cfg, "lease", "extend", "work"); err == nil || !strings.Contains(err.Error(), "--by") {
		t.Fatalf("no --by or --until: %v", err)
	}
}
