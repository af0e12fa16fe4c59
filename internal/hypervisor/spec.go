package hypervisor

import (
	"fmt"
	"math"
	"strings"
)

// MaxIDLen is the longest instance ID.
const MaxIDLen = 40

// ValidID reports whether id may name an instance: 1 to 40 bytes of
// [a-z0-9-], starting and ending with a letter or digit. It is used in
// file names, cgroup names and QEMU arguments, so nothing else is allowed.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks what every driver needs of a spec. Errors wrap
// ErrInvalid and name the field.
func (s InstanceSpec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	q := s.Quantum
	switch {
	case !ValidID(s.ID):
		return bad("id %q: want 1-%d of [a-z0-9-], not starting or ending with '-'", s.ID, MaxIDLen)
	case q.VCPUs < 1:
		return bad("vcpus %d: want at least 1", q.VCPUs)
	case q.VCPUs > 255:
		return bad("vcpus %d: want at most 255", q.VCPUs)
	case q.CPU < 0 || math.IsNaN(q.CPU) || math.IsInf(q.CPU, 0):
		return bad("cpu %v: want a non-negative number of cores", q.CPU)
	case q.Memory < 16<<20:
		return bad("memory %s: want at least 16Mi", q.Memory)
	case q.Disk < 0 || q.DiskIOPS < 0 || q.DiskBPS < 0:
		return bad("disk, disk_iops and disk_bps must not be negative")
	case s.Accel != "" && s.Accel != "kvm" && s.Accel != "tcg":
		return bad("accel %q: want kvm, tcg or empty", s.Accel)
	}
	img := s.Image
	switch img.Boot {
	case "direct":
		if img.Kernel == "" {
			return bad("image %s: direct boot needs a kernel", img.Name)
		}
	case "firmware":
		if img.Kernel != "" || img.Initrd != "" {
			return bad("image %s: firmware boot takes no kernel or initrd", img.Name)
		}
	default:
		return bad("image %s: boot %q: want direct or firmware", img.Name, img.Boot)
	}
	if img.Disk == "" {
		return bad("image %s: no disk", img.Name)
	}
	if img.DiskFormat != "raw" && img.DiskFormat != "qcow2" {
		return bad("image %s: disk format %q: want raw or qcow2", img.Name, img.DiskFormat)
	}
	if c := s.Context; c != nil {
		for k, v := range c.Env {
			if !validEnvKey(k) {
				return bad("context env %q: want a name of [A-Za-z_][A-Za-z0-9_]*", k)
			}
			if strings.ContainsAny(v, "\n\x00") {
				return bad("context env %s: the value must be one line", k)
			}
		}
		for _, key := range c.SSHKeys {
			if strings.ContainsAny(key, "\n\x00") {
				return bad("context ssh key %.20q...: must be one line", key)
			}
		}
	}
	if strings.ContainsAny(s.Hostname, "\n\x00") {
		return bad("hostname %q: must be one line", s.Hostname)
	}
	return validateVolumes(s.Volumes)
}

func validEnvKey(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
