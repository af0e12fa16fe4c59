package etcdtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/testenv"
)

func TestStartErrors(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		testenv.Skip(t, "etcd server: %v", err)
	}
	tests := []struct {
		name string
		n    int
		opts Options
		want string
	}{
		{"no members", 0, Options{}, "want at least 1"},
		{"missing binary", 1, Options{Binary: "/nonexistent/etcd"}, "/nonexistent/etcd"},
		// etcd refuses the flag and exits: the error shows its log.
		{"member exits", 1, Options{Binary: bin, ExtraArgs: []string{"--no-such-flag"}}, "no-such-flag"},
	}
	for _, tt := range tests {
		c, err := StartCluster(t.TempDir(), tt.n, tt.opts)
		if err == nil {
			c.Stop()
			t.Fatalf("StartCluster(%s): got no error", tt.name)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("StartCluster(%s): got %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

func TestStopRemovesData(t *testing.T) {
	dir := t.TempDir()
	c := New(t, 1)
	c2, err := StartCluster(dir, 1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints()) != 1 || c2.Endpoints()[0] == c.Endpoints()[0] {
		t.Fatalf("endpoints %v and %v: want one each, distinct", c.Endpoints(), c2.Endpoints())
	}
	if _, err := os.Stat(filepath.Join(dir, "m0.etcd")); err != nil {
		t.Fatalf("data dir: %v", err)
	}
	c2.Stop()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("after Stop: %d entries left in %s, want none", len(entries), dir)
	}
	if err := c2.Kill(5); err == nil {
		t.Fatalf("Kill(5) of a 1-member cluster: got no error")
	}
}
