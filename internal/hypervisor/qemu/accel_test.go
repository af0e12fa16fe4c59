package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetectAccel(t *testing.T) {
	const amd = "processor\t: 0\nflags\t\t: fpu vme svm sse\n"
	const plain = "processor\t: 0\nflags\t\t: fpu vme sse hypervisor\n"
	tests := []struct {
		name      string
		files     []string
		cpuinfo   string
		want      string
		reasonHas string
	}{
		{"no dev", nil, amd, AccelTCG, "no /dev/kvm"},
		{"pvm", []string{"dev/kvm", "sys/module/kvm/x", "sys/module/kvm_pvm/x"}, plain, AccelTCG, "kvm_pvm host module, no hardware virtualization"},
		{"no module", []string{"dev/kvm"}, amd, AccelTCG, "no kvm_intel or kvm_amd module"},
		{"no flag", []string{"dev/kvm", "sys/module/kvm_amd/x"}, plain, AccelTCG, "no vmx/svm"},
		{"amd", []string{"dev/kvm", "sys/module/kvm_amd/x"}, amd, AccelKVM, ""},
		{"intel", []string{"dev/kvm", "sys/module/kvm_intel/x"}, strings.Replace(amd, "svm", "vmx", 1), AccelKVM, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range append(tt.files, "proc/cpuinfo") {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				body := ""
				if f == "proc/cpuinfo" {
					body = tt.cpuinfo
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, reason := detectAccel(root)
			if got != tt.want {
				t.Errorf("got %s (%s), want %s", got, reason, tt.want)
			}
			if !strings.Contains(reason, tt.reasonHas) || (tt.reasonHas == "") != (reason == "") {
				t.Errorf("reason %q, want it to contain %q", reason, tt.reasonHas)
			}
		})
	}
}

func TestParseTSCkHz(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"processor\t: 0\ncpu MHz\t\t: 2596.134\ncpu MHz\t\t: 1.0\n", 2596134, false},
		{"cpu MHz : 3000\n", 3000000, false},
		{"processor : 0\n", 0, true},
		{"cpu MHz : fast\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseTSCkHz(strings.NewReader(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parse %q: got %d, %v, want %d (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
