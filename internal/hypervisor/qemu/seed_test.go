package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

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
