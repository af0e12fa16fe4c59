package hypervisor

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"vgrid/internal/model"
)

func volumeSpec() InstanceSpec {
	return InstanceSpec{
		ID:      "ws-1",
		Quantum: model.Quantum{VCPUs: 1, Memory: 128 * model.MiB},
		Image:   LocalImage{Name: "g", Boot: "direct", Kernel: "/k", Disk: "/d", DiskFormat: "raw"},
		Volumes: []VolumeAttachment{
			{Name: "data", Serial: "vgv-0a1b2c", Host: "10.0.0.5", Port: 10809, Export: "vol-0a1b2c",
				Mount: "/data", TLSDir: "/etc/vgrid/nbd"},
			{Name: "ref", Serial: "vgv-ffff", Host: "fd00::5", Port: 10809, Export: "vol-ffff", ReadOnly: true,
				Mount: "/data/ref", IOPS: 100, BPS: 1 << 20, TLSDir: "/etc/vgrid/nbd"},
			{Name: "raw", Serial: "vgv-raw", Host: "10.0.0.6", Port: 1, Export: "x", TLSDir: "/t"},
		},
	}
}

func TestValidateVolumes(t *testing.T) {
	if err := volumeSpec().Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(v []VolumeAttachment) []VolumeAttachment
		msg    string
	}{
		{"no name", func(v []VolumeAttachment) []VolumeAttachment { v[0].Name = ""; return v }, `volume 0 (""): name`},
		{"upper-case name", func(v []VolumeAttachment) []VolumeAttachment { v[0].Name = "Data"; return v }, "name"},
		{"long name", func(v []VolumeAttachment) []VolumeAttachment { v[1].Name = strings.Repeat("a", 64); return v }, "volume 1"},
		{"same name", func(v []VolumeAttachment) []VolumeAttachment { v[2].Name = "data"; return v }, "name: volume 0 has it too"},
		{"no serial", func(v []VolumeAttachment) []VolumeAttachment { v[0].Serial = ""; return v }, `serial ""`},
		{"long serial", func(v []VolumeAttachment) []VolumeAttachment { v[0].Serial = strings.Repeat("s", 21); return v }, "serial"},
		{"serial option", func(v []VolumeAttachment) []VolumeAttachment { v[0].Serial = "a,drive=root"; return v }, "serial"},
		{"same serial", func(v []VolumeAttachment) []VolumeAttachment { v[1].Serial = "vgv-0a1b2c"; return v }, "volume 0 has it too"},
		{"host name", func(v []VolumeAttachment) []VolumeAttachment { v[0].Host = "storage.example"; return v }, "host"},
		{"no host", func(v []VolumeAttachment) []VolumeAttachment { v[0].Host = ""; return v }, "host"},
		{"any host", func(v []VolumeAttachment) []VolumeAttachment { v[0].Host = "0.0.0.0"; return v }, "host"},
		{"zoned host", func(v []VolumeAttachment) []VolumeAttachment { v[0].Host = "fe80::1%eth0"; return v }, "host"},
		{"port 0", func(v []VolumeAttachment) []VolumeAttachment { v[0].Port = 0; return v }, "port 0"},
		{"port 65536", func(v []VolumeAttachment) []VolumeAttachment { v[0].Port = 65536; return v }, "port 65536"},
		{"no export", func(v []VolumeAttachment) []VolumeAttachment { v[0].Export = ""; return v }, "export"},
		{"export newline", func(v []VolumeAttachment) []VolumeAttachment { v[0].Export = "a\nb"; return v }, "control"},
		{"relative mount", func(v []VolumeAttachment) []VolumeAttachment { v[0].Mount = "data"; return v }, "absolute"},
		{"unclean mount", func(v []VolumeAttachment) []VolumeAttachment { v[0].Mount = "/data/"; return v }, "clean"},
		{"dotdot mount", func(v []VolumeAttachment) []VolumeAttachment { v[0].Mount = "/a/../b"; return v }, "clean"},
		{"root mount", func(v []VolumeAttachment) []VolumeAttachment { v[0].Mount = "/"; return v }, "root"},
		{"sys mount", func(v []VolumeAttachment) []VolumeAttachment { v[0].Mount = "/sys/x"; return v }, "/sys"},
		{"same mount", func(v []VolumeAttachment) []VolumeAttachment { v[1].Mount = "/data"; return v }, "volume 0 is mounted there too"},
		{"negative iops", func(v []VolumeAttachment) []VolumeAttachment { v[1].IOPS = -1; return v }, "iops -1"},
		{"negative bps", func(v []VolumeAttachment) []VolumeAttachment { v[1].BPS = -1; return v }, "bps -1"},
		{"no tls", func(v []VolumeAttachment) []VolumeAttachment { v[2].TLSDir = ""; return v }, "tls dir: required"},
		{"bad tls hostname", func(v []VolumeAttachment) []VolumeAttachment { v[0].TLSHostname = "host,x=y"; return v }, "tls hostname"},
		{"relative tls", func(v []VolumeAttachment) []VolumeAttachment { v[2].TLSDir = "certs"; return v }, "absolute"},
		{"too many", func(v []VolumeAttachment) []VolumeAttachment {
			for i := len(v); i <= MaxVolumes; i++ {
				v = append(v, VolumeAttachment{Name: fmt.Sprintf("v%d", i), Serial: fmt.Sprintf("s%d", i), Host: "10.0.0.1", Port: 1, Export: "e", TLSDir: "/t"})
			}
			return v
		}, "at most 8"},
	}
	for _, tt := range tests {
		spec := volumeSpec()
		spec.Volumes = tt.mutate(spec.Volumes)
		err := spec.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: got %v, want ErrInvalid saying %q", tt.name, err, tt.msg)
		}
	}
	// Attached without a mount point twice: fine.
	spec := volumeSpec()
	spec.Volumes[0].Mount, spec.Volumes[1].Mount = "", ""
	if err := spec.Validate(); err != nil {
		t.Errorf("two volumes without mount points: %v", err)
	}
}

func TestSameGuestVolumes(t *testing.T) {
	old := volumeSpec().Volumes
	moved := volumeSpec().Volumes
	moved[0].Host, moved[0].Port, moved[0].Export, moved[0].TLSDir, moved[0].IOPS = "10.0.0.9", 1, "other", "/x", 5
	if err := SameGuestVolumes(old, moved); err != nil {
		t.Errorf("served elsewhere: %v", err)
	}
	tests := []struct {
		name   string
		mutate func([]VolumeAttachment) []VolumeAttachment
	}{
		{"one fewer", func(v []VolumeAttachment) []VolumeAttachment { return v[:2] }},
		{"other serial", func(v []VolumeAttachment) []VolumeAttachment { v[1].Serial = "x"; return v }},
		{"now writable", func(v []VolumeAttachment) []VolumeAttachment { v[1].ReadOnly = false; return v }},
		{"swapped", func(v []VolumeAttachment) []VolumeAttachment { v[0], v[1] = v[1], v[0]; return v }},
	}
	for _, tt := range tests {
		if err := SameGuestVolumes(old, tt.mutate(volumeSpec().Volumes)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
}
