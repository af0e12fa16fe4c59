package hypervisor

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// VolumeAttachment is a network volume given to a guest: an export of an
// NBD server (a storage host's qemu-storage-daemon, TLS with client
// certificates) that the guest sees as a virtio-blk disk with Serial, and
// that its agent formats on first use and mounts at Mount.
type VolumeAttachment struct {
	// Name is the volume's name: 1 to 63 of [a-z0-9-], not starting or
	// ending with '-'.
	Name string
	// Serial is the virtio-blk serial (1 to 20 of [A-Za-z0-9._-]), by
	// which the guest finds the disk (/sys/block/vd*/serial).
	Serial string
	// Host (an IP address) and Port are the NBD server's.
	Host string
	Port int
	// Export is the NBD export's name.
	Export string
	// ReadOnly attaches the volume read-only: the guest's disk is
	// read-only and is mounted with -o ro.
	ReadOnly bool
	// Mount is an absolute, clean path in the guest, not "/" nor under
	// /proc, /sys or /dev; "" attaches the disk without mounting it.
	Mount string
	// IOPS and BPS (bytes/s) cap the guest's I/O on the volume; 0: no cap.
	IOPS int64
	BPS  int64
	// TLSDir is an absolute directory holding ca-cert.pem,
	// client-cert.pem and client-key.pem: QEMU's tls-creds-x509 with
	// endpoint=client.
	TLSDir string
	// TLSHostname is the name the server's certificate must carry (a
	// storage host's node name); "": Host.
	TLSHostname string
}

// Limits of volume attachments.
const (
	// MaxVolumes is the most volumes one guest attaches (microvm has a
	// fixed number of virtio-mmio slots, shared with the other devices).
	MaxVolumes = 8
	// MaxVolumeName is the longest volume name.
	MaxVolumeName = 63
	// MaxVolumeSerial is virtio-blk's serial length.
	MaxVolumeSerial = 20
	// maxExport is NBD's longest export name.
	maxExport = 4096
)

// ValidVolumeName reports whether name may name a volume: 1 to 63 bytes
// of [a-z0-9-], starting and ending with a letter or digit.
func ValidVolumeName(name string) bool {
	if name == "" || len(name) > MaxVolumeName || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidVolumeSerial reports whether s may be a virtio-blk serial of a
// volume: 1 to 20 bytes of [A-Za-z0-9._-]. It goes into QEMU's option
// list and is compared byte for byte in the guest.
func ValidVolumeSerial(s string) bool {
	if s == "" || len(s) > MaxVolumeSerial {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckVolumeMount checks a volume's mount point in the guest: "" (not
// mounted) or an absolute, clean path other than "/" that is not /proc,
// /sys, /dev or under them, of printable characters.
func CheckVolumeMount(m string) error {
	if m == "" {
		return nil
	}
	switch {
	case !strings.HasPrefix(m, "/"):
		return fmt.Errorf("want an absolute path")
	case path.Clean(m) != m:
		return fmt.Errorf("want a clean path (%q)", path.Clean(m))
	case m == "/":
		return fmt.Errorf("the root file system cannot be a volume")
	case len(m) > 1024:
		return fmt.Errorf("longer than 1024 bytes")
	}
	for _, r := range m {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("control characters are not allowed")
		}
	}
	for _, sys := range []string{"/proc", "/sys", "/dev"} {
		if m == sys || strings.HasPrefix(m, sys+"/") {
			return fmt.Errorf("%s belongs to the guest's kernel", sys)
		}
	}
	return nil
}

// validateVolumes checks the volume attachments of a spec; errors name
// the volume (index and name) and the field.
func validateVolumes(vols []VolumeAttachment) error {
	if len(vols) > MaxVolumes {
		return fmt.Errorf("%w: %d volumes: at most %d", ErrInvalid, len(vols), MaxVolumes)
	}
	names := map[string]int{}
	serials := map[string]int{}
	mounts := map[string]int{}
	for i, v := range vols {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: volume %d (%q): %s", ErrInvalid, i, v.Name, fmt.Sprintf(format, args...))
		}
		if !ValidVolumeName(v.Name) {
			return bad("name: want 1-%d of [a-z0-9-], not starting or ending with '-'", MaxVolumeName)
		}
		if j, dup := names[v.Name]; dup {
			return bad("name: volume %d has it too", j)
		}
		names[v.Name] = i
		if !ValidVolumeSerial(v.Serial) {
			return bad("serial %q: want 1-%d of [A-Za-z0-9._-]", v.Serial, MaxVolumeSerial)
		}
		if j, dup := serials[v.Serial]; dup {
			return bad("serial %q: volume %d has it too", v.Serial, j)
		}
		serials[v.Serial] = i
		if ip, err := netip.ParseAddr(v.Host); err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
			return bad("host %q: want the NBD server's IP address", v.Host)
		}
		if v.Port < 1 || v.Port > 65535 {
			return bad("port %d: want 1-65535", v.Port)
		}
		if v.Export == "" || len(v.Export) > maxExport {
			return bad("export: want 1-%d bytes", maxExport)
		}
		for _, r := range v.Export {
			if r < 0x20 || r == 0x7f {
				return bad("export %q: control characters are not allowed", v.Export)
			}
		}
		if err := CheckVolumeMount(v.Mount); err != nil {
			return bad("mount %q: %v", v.Mount, err)
		}
		if v.Mount != "" {
			if j, dup := mounts[v.Mount]; dup {
				return bad("mount %q: volume %d is mounted there too", v.Mount, j)
			}
			mounts[v.Mount] = i
		}
		if v.IOPS < 0 {
			return bad("iops %d: want 0 (no cap) or more", v.IOPS)
		}
		if v.BPS < 0 {
			return bad("bps %d: want 0 (no cap) or more", v.BPS)
		}
		switch {
		case v.TLSDir == "":
			return bad("tls dir: required (the NBD connection is TLS with a client certificate)")
		case !path.IsAbs(v.TLSDir):
			return bad("tls dir %q: want an absolute path", v.TLSDir)
		case strings.ContainsAny(v.TLSDir, "\n\x00"):
			return bad("tls dir %q: must be one line", v.TLSDir)
		}
		if !validTLSHostname(v.TLSHostname) {
			return bad("tls hostname %q: want a host name (letters, digits, '.', '-'; at most 253)", v.TLSHostname)
		}
	}
	return nil
}

// SameGuestVolumes says whether a guest saved (suspended, or moving live)
// with the volumes old can go on with the volumes now: the same disks in
// the same order, as the guest sees them (serial, read-only). Where they
// are served from (host, port, export, TLS) and their I/O caps may
// differ. Errors wrap ErrInvalid.
func SameGuestVolumes(old, now []VolumeAttachment) error {
	if len(old) != len(now) {
		return fmt.Errorf("%w: saved with %d volumes, cannot go on with %d", ErrInvalid, len(old), len(now))
	}
	for i := range old {
		if old[i].Serial != now[i].Serial || old[i].ReadOnly != now[i].ReadOnly {
			return fmt.Errorf("%w: volume %d: saved as serial %q (read-only %t), cannot go on as %q (read-only %t)",
				ErrInvalid, i, old[i].Serial, old[i].ReadOnly, now[i].Serial, now[i].ReadOnly)
		}
	}
	return nil
}

// validTLSHostname reports whether h may be given to QEMU as the name to
// check the server's certificate against ("" : none given).
func validTLSHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
