package spec

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
)

func validSpec() model.WorkspaceSpec {
	return model.WorkspaceSpec{
		Name:     "demo",
		Image:    "vgrid-guest",
		Quantum:  model.Quantum{VCPUs: 2, CPU: 0.5, Memory: 512 * model.MiB},
		Duration: model.Duration(time.Hour),
	}
}

func images(names ...string) ImageLookup {
	return func(name string) (bool, []string) {
		for _, n := range names {
			if n == name {
				return true, nil
			}
		}
		return false, names
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*model.WorkspaceSpec)
		lookup ImageLookup
		want   string // the whole error; "" for valid
	}{
		{"valid", func(*model.WorkspaceSpec) {}, images("vgrid-guest"), ""},
		{"valid without lookup", func(s *model.WorkspaceSpec) { s.Image = "anything" }, nil, ""},
		{"cpu zero defaults to vcpus", func(s *model.WorkspaceSpec) { s.Quantum.CPU = 0 }, nil, ""},
		{"cpu equal to vcpus", func(s *model.WorkspaceSpec) { s.Quantum.CPU = 2 }, nil, ""},
		{"bounds", func(s *model.WorkspaceSpec) {
			s.Quantum = model.Quantum{VCPUs: 64, CPU: 0.01, Memory: MaxMemory, Disk: MaxDisk, DiskIOPS: MaxDiskIOPS, DiskBPS: MaxDiskBPS}
			s.Duration = model.Duration(MaxDuration)
		}, nil, ""},
		{"unknown image", func(s *model.WorkspaceSpec) { s.Image = "foo" }, images("vgrid-guest"), `image: unknown image "foo" (known: vgrid-guest)`},
		{"unknown image, names sorted", func(s *model.WorkspaceSpec) { s.Image = "foo" }, images("z", "a"), `image: unknown image "foo" (known: a, z)`},
		{"unknown image, no images", func(s *model.WorkspaceSpec) { s.Image = "foo" }, images(), `image: unknown image "foo" (known: none)`},
		{"several problems in field order", func(s *model.WorkspaceSpec) {
			s.Name = "Bad"
			s.Quantum.CPU = 3
		}, nil, "name: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter; quantum.cpu: 3 cores exceeds vcpus (2)"},
		{"NaN cpu", func(s *model.WorkspaceSpec) { s.Quantum.CPU = math.NaN() }, nil, "quantum.cpu: must be a finite number, got NaN"},
		{"infinite cpu", func(s *model.WorkspaceSpec) { s.Quantum.CPU = math.Inf(1) }, nil, "quantum.cpu: must be a finite number, got +Inf"},
		{"cpu not checked against a bad vcpus", func(s *model.WorkspaceSpec) { s.Quantum.VCPUs = -1 }, nil, "quantum.vcpus: must be between 1 and 64, got -1"},
		{"huge vcpus", func(s *model.WorkspaceSpec) { s.Quantum.VCPUs = math.MaxInt }, nil, "quantum.vcpus: must be between 1 and 64, got 9223372036854775807"},
		{"min memory", func(s *model.WorkspaceSpec) { s.Quantum.Memory = MinMemory - 1 }, nil, "quantum.memory: must be at least 64Mi, got 67108863"},
		{"disk below minimum", func(s *model.WorkspaceSpec) { s.Quantum.Disk = 1 }, nil, "quantum.disk: must be at least 64Mi (or 0 for the image's size), got 1"},
		{"iops too high", func(s *model.WorkspaceSpec) { s.Quantum.DiskIOPS = math.MaxInt64 }, nil, "quantum.disk_iops: must be at most 1000000, got 9223372036854775807"},
		{"bps too high", func(s *model.WorkspaceSpec) { s.Quantum.DiskBPS = 101 * model.GiB }, nil, "quantum.disk_bps: must be at most 100Gi per second, got 101Gi"},
		{"duration too long", func(s *model.WorkspaceSpec) { s.Duration = model.Duration(math.MaxInt64) }, nil, "duration: must be at most 366 days (8784h0m0s), got 2562047h47m16.854775807s"},
		{"too many ssh keys", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: make([]string, 33)}
		}, nil, "context.ssh_keys: at most 32 keys allowed, got 33"},
		{"ssh key types", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: []string{
				sshKey("ssh-ed25519", ""), sshKey("ssh-rsa", "a b c"), sshKey("ecdsa-sha2-nistp256", "x"),
				sshKey("sk-ssh-ed25519@openssh.com", ""), "  " + sshKey("ssh-ed25519", "") + "  ",
			}}
		}, nil, ""},
		{"ssh key type unknown", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: []string{sshKey("ssh-foo", "")}}
		}, nil, `context.ssh_keys[0]: does not look like an SSH public key (want e.g. "ssh-ed25519 AAAA... user@host")`},
		{"ssh key truncated", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"}}
		}, nil, "context.ssh_keys[0]: key data is truncated"},
		{"ssh key bad base64", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: []string{"ssh-ed25519 AAAA!!!!"}}
		}, nil, `context.ssh_keys[0]: does not look like an SSH public key (want e.g. "ssh-ed25519 AAAA... user@host")`},
		{"ssh key with options", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: []string{`command="sh" ` + sshKey("ssh-ed25519", "")}}
		}, nil, `context.ssh_keys[0]: does not look like an SSH public key (want e.g. "ssh-ed25519 AAAA... user@host")`},
		{"ssh key length header lies", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{SSHKeys: []string{"ssh-ed25519 /////w=="}}
		}, nil, `context.ssh_keys[0]: key data does not match its type "ssh-ed25519"`},
		{"env limits", func(s *model.WorkspaceSpec) {
			s.Context = &model.Context{Env: map[string]string{"B": strings.Repeat("x", 5000), "A-1": "", "C": "\xff"}}
		}, nil, `context.env["A-1"]: name must be letters, digits and '_', not starting with a digit; context.env.B: value is 5000 bytes, at most 4096 allowed; context.env.C: value must be UTF-8 text without NUL bytes`},
		{"hostname", func(s *model.WorkspaceSpec) { s.Context = &model.Context{Hostname: "a.b"} }, nil,
			"context.hostname: must be 1-63 characters of letters, digits and '-', not starting or ending with '-'"},
		{"roster set by the user", func(s *model.WorkspaceSpec) { s.Context = &model.Context{Cluster: &model.ClusterContext{Name: "x"}} }, nil,
			"context.cluster: is set by vgrid for the members of a cluster (their roster); a spec may not set it"},
		{"hostname uppercase allowed", func(s *model.WorkspaceSpec) { s.Context = &model.Context{Hostname: "Web-1"} }, nil, ""},
		{"everything empty", func(s *model.WorkspaceSpec) { *s = model.WorkspaceSpec{} }, nil,
			"name: required; image: required; quantum.vcpus: required (1 to 64); quantum.memory: required (64Mi to 1Ti); duration: required (e.g. 30m, 2h, 1h30m)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.edit(&s)
			err := Validate(s, tt.lookup)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got nil, want %q", tt.want)
			}
			var fe *FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: got %T, want *FieldErrors", err)
			}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Validate: got %q, want %q", got, tt.want)
			}
		})
	}
}
