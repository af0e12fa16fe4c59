package hypervisor

import (
	"errors"
	"testing"

	"vgrid/internal/model"
)

func TestValidate(t *testing.T) {
	good := InstanceSpec{
		ID:      "ws-1",
		Quantum: model.Quantum{VCPUs: 1, CPU: 0.5, Memory: 256 * model.MiB},
		Image:   LocalImage{Name: "g", Boot: "direct", Disk: "/img/root", DiskFormat: "raw", Kernel: "/img/vmlinux"},
	}
	tests := []struct {
		name   string
		mutate func(*InstanceSpec)
		ok     bool
	}{
		{"good", func(*InstanceSpec) {}, true},
		{"firmware", func(s *InstanceSpec) { s.Image.Boot, s.Image.Kernel, s.Image.DiskFormat = "firmware", "", "qcow2" }, true},
		{"id upper", func(s *InstanceSpec) { s.ID = "WS" }, false},
		{"id slash", func(s *InstanceSpec) { s.ID = "a/b" }, false},
		{"id dash end", func(s *InstanceSpec) { s.ID = "a-" }, false},
		{"id empty", func(s *InstanceSpec) { s.ID = "" }, false},
		{"id 41", func(s *InstanceSpec) { s.ID = "a2345678901234567890123456789012345678901" }, false},
		{"vcpus 0", func(s *InstanceSpec) { s.Quantum.VCPUs = 0 }, false},
		{"cpu negative", func(s *InstanceSpec) { s.Quantum.CPU = -1 }, false},
		{"memory tiny", func(s *InstanceSpec) { s.Quantum.Memory = model.MiB }, false},
		{"accel", func(s *InstanceSpec) { s.Accel = "hvf" }, false},
		{"boot", func(s *InstanceSpec) { s.Image.Boot = "uefi" }, false},
		{"no kernel", func(s *InstanceSpec) { s.Image.Kernel = "" }, false},
		{"no disk", func(s *InstanceSpec) { s.Image.Disk = "" }, false},
		{"format", func(s *InstanceSpec) { s.Image.DiskFormat = "vmdk" }, false},
		{"env ok", func(s *InstanceSpec) { s.Context = &model.Context{Env: map[string]string{"A_1": "x y"}} }, true},
		{"env key", func(s *InstanceSpec) { s.Context = &model.Context{Env: map[string]string{"1A": "x"}} }, false},
		{"env newline", func(s *InstanceSpec) { s.Context = &model.Context{Env: map[string]string{"A": "x\ny"}} }, false},
		{"hostname newline", func(s *InstanceSpec) { s.Hostname = "a\nb" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.mutate(&s)
			err := s.Validate()
			if tt.ok && err != nil {
				t.Errorf("got %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}
