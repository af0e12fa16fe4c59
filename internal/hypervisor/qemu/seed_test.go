package qemu

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/agent"
	"vgrid/internal/guest/proto"
	"vgrid/internal/model"
)

func TestSeedFiles(t *testing.T) {
	tests := []struct {
		name     string
		hostname string
		ctx      *model.Context
		wantHost string
		wantKeys []string
		wantUser string
		wantEnv  []agent.EnvVar
	}{
		{name: "no context", wantHost: "ws-1", wantUser: "#cloud-config\n"},
		{name: "spec hostname", hostname: "box", ctx: &model.Context{}, wantHost: "box", wantUser: "#cloud-config\n"},
		{
			name: "full", hostname: "box",
			ctx: &model.Context{
				Hostname: "head-0",
				SSHKeys:  []string{"ssh-ed25519 AAAA user@host", "ssh-rsa BBBB other"},
				Env:      map[string]string{"ROLE": "head", "A": "x y=z", "PEERS": "10.0.0.2,10.0.0.3"},
				UserData: "#!/bin/sh\necho hi\n",
			},
			wantHost: "head-0",
			wantKeys: []string{"ssh-ed25519 AAAA user@host", "ssh-rsa BBBB other"},
			wantUser: "#!/bin/sh\necho hi\n",
			wantEnv:  []agent.EnvVar{{Key: "A", Value: "x y=z"}, {Key: "PEERS", Value: "10.0.0.2,10.0.0.3"}, {Key: "ROLE", Value: "head"}},
		},
		{
			name: "keys without user data", ctx: &model.Context{SSHKeys: []string{"ssh-ed25519 AAAA"}},
			wantHost: "ws-1", wantKeys: []string{"ssh-ed25519 AAAA"},
			wantUser: "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			spec.Hostname, spec.Context = tt.hostname, tt.ctx
			files := SeedFiles(spec)
			// Read back with the guest agent's own parsers.
			md := agent.ParseMetaData(files[proto.SeedMetaData])
			if got := md.Values["instance-id"]; got != spec.ID {
				t.Errorf("instance-id: got %q, want %q", got, spec.ID)
			}
			if got := md.Values["local-hostname"]; got != tt.wantHost {
				t.Errorf("local-hostname: got %q, want %q", got, tt.wantHost)
			}
			if got := md.Lists["public-keys"]; !slices.Equal(got, tt.wantKeys) {
				t.Errorf("public-keys: got %q, want %q", got, tt.wantKeys)
			}
			if got := string(files[proto.SeedUserData]); got != tt.wantUser {
				t.Errorf("user-data: got %q, want %q", got, tt.wantUser)
			}
			if got := agent.ParseEnv(files[proto.SeedEnv]); !slices.Equal(got, tt.wantEnv) {
				t.Errorf("env: got %q, want %q", got, tt.wantEnv)
			}
		})
	}
}

func TestWriteSeedISO(t *testing.T) {
	dir := t.TempDir()
	d := &Driver{}
	p := instancePaths(dir, DefaultRunDir)
	spec := testSpec()
	spec.Context = &model.Context{Env: map[string]string{"A": "1"}}
	for range 2 { // written on every start: the second replaces the first
		if err := d.writeSeed(spec, p); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p.Seed)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32768+2048 {
		t.Fatalf("iso of %d bytes", len(b))
	}
	if label, ok := agent.ISOVolumeLabel(b[32768 : 32768+2048]); !ok || label != proto.SeedLabel {
		t.Errorf("iso label: got %q, %v, want %q", label, ok, proto.SeedLabel)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, err := exec.LookPath("isoinfo"); err != nil {
		return
	}
	for name, data := range SeedFiles(spec) {
		for _, ext := range []string{"-J", "-R"} {
			got, err := exec.Command("isoinfo", ext, "-i", p.Seed, "-x", "/"+name).Output()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("isoinfo %s -x /%s: got %q, %v; want %q", ext, name, got, err, data)
			}
		}
	}
}

// The seed of a guest with NICs has a network-config, which the guest
// agent's parser reads back as the NICs; one of a cluster member has
// vgrid-cluster.json. Neither is there otherwise.
func TestSeedNetworkAndCluster(t *testing.T) {
	spec := testSpec()
	files := SeedFiles(spec)
	for _, name := range []string{proto.SeedNetworkConfig, proto.SeedCluster} {
		if _, ok := files[name]; ok {
			t.Errorf("no NICs, no cluster: the seed has %s", name)
		}
	}
	spec.NICs = testNICs()
	cluster := &model.ClusterContext{
		Name: "c", Role: "a", Index: 0, Head: "c-a-0",
		Members: []model.RosterEntry{
			{Name: "c-a-0", Role: "a", Address: netip.MustParseAddr("10.77.0.2")},
			{Name: "c-b-0", Role: "b", Address: netip.MustParseAddr("10.77.0.3")},
		},
		PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n",
		PublicKey:  "ssh-ed25519 AAAA vgrid-cluster-c",
		Revision:   2,
	}
	spec.Context = &model.Context{Hostname: "c-a-0", Cluster: cluster}
	files = SeedFiles(spec)
	const wantNet = `version: 2
ethernets:
  id0:
    match:
      macaddress: "02:aa:bb:cc:dd:01"
    set-name: "eth0"
    addresses:
      - "10.77.0.2/24"
    gateway4: "10.77.0.1"
  id1:
    match:
      macaddress: "02:aa:bb:cc:dd:02"
    set-name: "eth1"
    addresses:
      - "10.78.0.2/16"
`
	if got := string(files[proto.SeedNetworkConfig]); got != wantNet {
		t.Errorf("network-config: got\n%s\nwant\n%s", got, wantNet)
	}
	cfg, err := agent.ParseNetworkConfig(files[proto.SeedNetworkConfig])
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Ethernets) != len(spec.NICs) {
		t.Fatalf("the agent reads %d ethernets, want %d", len(cfg.Ethernets), len(spec.NICs))
	}
	for i, e := range cfg.Ethernets {
		n := spec.NICs[i]
		if !strings.EqualFold(e.MAC.String(), n.MAC) || e.Name != fmt.Sprintf("eth%d", i) ||
			!slices.Equal(e.Addresses, []netip.Prefix{n.Address}) || e.Gateway4 != n.Gateway {
			t.Errorf("ethernet %d: the agent reads %+v, from %+v", i, e, n)
		}
	}
	got, err := agent.ParseCluster(files[proto.SeedCluster])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cluster) {
		t.Errorf("cluster: the agent reads %+v, want %+v", got, cluster)
	}
	// The same spec gives the same seed, byte for byte.
	again := SeedFiles(spec)
	if !reflect.DeepEqual(files, again) {
		t.Error("SeedFiles differs between two calls")
	}
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.iso"), filepath.Join(dir, "b.iso")
	if err := writeISOFile(a, proto.SeedLabel, files, at); err != nil {
		t.Fatal(err)
	}
	if err := writeISOFile(b, proto.SeedLabel, again, at); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("two seeds of one spec at one time differ")
	}
	if _, err := exec.LookPath("isoinfo"); err == nil {
		for _, name := range []string{proto.SeedNetworkConfig, proto.SeedCluster} {
			out, err := exec.Command("isoinfo", "-R", "-i", a, "-x", "/"+name).Output()
			if err != nil || !bytes.Equal(out, files[name]) {
				t.Errorf("isoinfo -R -x /%s: got %q, %v", name, out, err)
			}
		}
	}
}
