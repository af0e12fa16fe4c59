package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vgrid/internal/guest/proto"
)

// Network volumes.
//
// The seed's vgrid-volumes.json lists the network volumes the host
// attached as virtio-blk disks: serial, mount point, read-only. At boot,
// after the network and before user-data (which may use them), the agent
// finds each disk by its serial (/sys/block/vd*/serial; the kernel names
// disks in probe order, so a name says nothing), waiting for all of them
// at most VolumeWait in all; gives a writable volume that is empty an
// ext2 filesystem (busybox mke2fs); and mounts it (ext4 driver, which
// reads ext2/3/4; nosuid, nodev; ro for a read-only volume, so that a
// write fails with EROFS). What became of each volume goes to the host
// with the ready and facts messages (proto.Message.Volumes).
//
// A volume is formatted only when it is writable, has no ext2/3/4
// superblock, and its first 128 KiB are zeros, as a new volume's are: a
// volume holding anything else (another filesystem, a partition table)
// is reported, never wiped; so is one that cannot be read.

const (
	// defaultVolumeWait bounds the wait for the volumes' disks to appear.
	defaultVolumeWait = 30 * time.Second
	// volumePoll is how often the disks are looked for while waiting.
	volumePoll = 100 * time.Millisecond
	// volumeProbe is how much of a volume must be zeros for it to be
	// taken as new and formatted: covers the signatures of the usual
	// filesystems, partition tables and LUKS (btrfs's is at 64 KiB).
	volumeProbe = 128 << 10
	// formatTimeout bounds mke2fs.
	formatTimeout = 10 * time.Minute
	// maxSeedVolumes bounds the entries of vgrid-volumes.json.
	maxSeedVolumes = 64
)

// ParseVolumes decodes vgrid-volumes.json and checks every entry: a
// serial of 1 to 20 of [A-Za-z0-9._-], a mount point that is "" or an
// absolute, clean path other than "/" and not in /proc, /sys or /dev, no
// serial or mount point twice. Unknown fields are ignored (a newer host).
func ParseVolumes(b []byte) ([]proto.SeedVolume, error) {
	var vols []proto.SeedVolume
	if err := json.Unmarshal(b, &vols); err != nil {
		return nil, fmt.Errorf("%s: %w", proto.SeedVolumes, err)
	}
	if len(vols) > maxSeedVolumes {
		return nil, fmt.Errorf("%s: %d volumes: at most %d", proto.SeedVolumes, len(vols), maxSeedVolumes)
	}
	serials := map[string]int{}
	mounts := map[string]int{}
	for i, v := range vols {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s: volume %d: %s", proto.SeedVolumes, i, fmt.Sprintf(format, args...))
		}
		if !validSerial(v.Serial) {
			return nil, bad("serial %q: want 1-20 of [A-Za-z0-9._-]", v.Serial)
		}
		if j, dup := serials[v.Serial]; dup {
			return nil, bad("serial %q: volume %d has it too", v.Serial, j)
		}
		serials[v.Serial] = i
		if err := checkMount(v.Mount); err != nil {
			return nil, bad("mount %q: %v", v.Mount, err)
		}
		if v.Mount != "" {
			if j, dup := mounts[v.Mount]; dup {
				return nil, bad("mount %q: volume %d is mounted there too", v.Mount, j)
			}
			mounts[v.Mount] = i
		}
		if len(v.Name) > 63 || strings.ContainsFunc(v.Name, isControl) {
			return nil, bad("name %q: want at most 63 printable bytes", v.Name)
		}
	}
	return vols, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// validSerial reports whether s may be a volume's virtio-blk serial.
func validSerial(s string) bool {
	if s == "" || len(s) > 20 {
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

// checkMount checks a volume's mount point (see ParseVolumes).
func checkMount(m string) error {
	switch {
	case m == "":
		return nil
	case !strings.HasPrefix(m, "/"):
		return errors.New("want an absolute path")
	case path.Clean(m) != m:
		return errors.New("want a clean path")
	case m == "/":
		return errors.New("not the root")
	case len(m) > 1024:
		return errors.New("longer than 1024 bytes")
	case strings.ContainsFunc(m, isControl):
		return errors.New("control characters are not allowed")
	}
	for _, sys := range []string{"/proc", "/sys", "/dev"} {
		if m == sys || strings.HasPrefix(m, sys+"/") {
			return fmt.Errorf("%s is the kernel's", sys)
		}
	}
	return nil
}

// findVolumeDevice returns the guest's name (/dev/vdX) of the virtio-blk
// disk whose serial is serial, or "" when there is none (yet); /sys and
// /dev are looked up under root.
func findVolumeDevice(root, serial string) string {
	files, _ := filepath.Glob(filepath.Join(root, "sys/block/vd*/serial"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimRight(string(b), "\n\x00 ") != serial {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(f))
		if _, err := os.Stat(filepath.Join(root, dev)); err == nil {
			return dev
		}
	}
	return ""
}

// diskContent is what probeDisk found on a disk.
type diskContent int

const (
	diskExt   diskContent = iota // an ext2/3/4 filesystem
	diskEmpty                    // zeros: a new volume
	diskOther                    // something else
)

// probeDisk reads the start of a disk and says what is there. An error
// (the disk cannot be read) is never taken as an empty disk.
func probeDisk(dev string) (diskContent, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, volumeProbe)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s: %w", dev, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("read %s: the disk is empty (0 bytes)", dev)
	}
	buf = buf[:n]
	if len(buf) >= 1024+0x200 {
		if _, _, err := ext4Geometry(buf[1024 : 1024+0x200]); err == nil {
			return diskExt, nil
		}
	}
	for _, c := range buf {
		if c != 0 {
			return diskOther, nil
		}
	}
	return diskEmpty, nil
}

// formatVolume makes an ext2 filesystem on dev with mke2fs (busybox's in
// the guest image), no blocks reserved for root.
func formatVolume(dev string) error {
	bin, err := exec.LookPath("mke2fs")
	if err != nil {
		bin = "/sbin/mke2fs"
	}
	ctx, cancel := context.WithTimeout(context.Background(), formatTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-F", "-q", "-m", "0", dev).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mke2fs %s: %w: %s", dev, err, lastLine(out))
	}
	return nil
}

// lastLine is the last non-empty line of a command's output.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// mountVolume mounts an ext2/3/4 filesystem (the ext4 driver reads all
// three; the ext2 driver is tried when there is no ext4 one), nosuid and
// nodev, read-only when readOnly.
func mountVolume(dev, dir string, readOnly bool) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	err := unix.Mount(dev, dir, "ext4", flags, "")
	if errors.Is(err, unix.ENODEV) {
		err = unix.Mount(dev, dir, "ext2", flags, "")
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, dir, err)
	}
	return nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Point  string // mount point
	FSType string
	Source string
}

// parseMountInfo parses /proc/self/mountinfo: the mount point (field 5,
// octal escapes undone) and, after the " - " separator, the type and
// source. Malformed lines are skipped.
func parseMountInfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 5 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{Point: unescapeMount(f[4]), FSType: f[sep+1], Source: unescapeMount(f[sep+2])})
	}
	return out
}

// unescapeMount undoes the kernel's \ooo escapes of mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountedAt returns what is mounted at point (a guest path), the last
// mount there winning; ok is false when nothing is.
func mountedAt(root, point string) (mountEntry, bool) {
	b, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return mountEntry{}, false
	}
	var found mountEntry
	ok := false
	for _, m := range parseMountInfo(b) {
		if m.Point == point {
			found, ok = m, true
		}
	}
	return found, ok
}

// applyVolumes attaches the seed's volumes (vgrid-volumes.json): finds,
// formats when new, and mounts each, and keeps what became of them for
// the facts. It returns the volumes' errors joined.
func (a *Agent) applyVolumes(b []byte) error {
	vols, err := ParseVolumes(b)
	if err != nil {
		return err
	}
	status := make([]proto.VolumeStatus, len(vols))
	// Parents before children: a mount point under another volume's is
	// made on that volume once it is mounted. (A path sorts before every
	// path it is a prefix of.)
	order := make([]int, len(vols))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(vols[i].Mount, vols[j].Mount) })
	deadline := time.Now().Add(a.volumeWait)
	var errs []error
	for _, i := range order {
		status[i] = a.attachVolume(vols[i], deadline)
		if status[i].State == proto.VolumeError {
			errs = append(errs, fmt.Errorf("volume %s (serial %s): %s", vols[i].Name, vols[i].Serial, status[i].Error))
		} else {
			a.log.Printf("volume %s (serial %s) on %s: %s %s", vols[i].Name, vols[i].Serial, status[i].Device, status[i].State, vols[i].Mount)
		}
	}
	a.volMu.Lock()
	a.volumes = status
	a.volMu.Unlock()
	return errors.Join(errs...)
}

// attachVolume finds one volume's disk (waiting until deadline), formats
// it if it is writable and new, and mounts it.
func (a *Agent) attachVolume(v proto.SeedVolume, deadline time.Time) proto.VolumeStatus {
	st := proto.VolumeStatus{Name: v.Name, Serial: v.Serial, Mount: v.Mount, ReadOnly: v.ReadOnly}
	fail := func(format string, args ...any) proto.VolumeStatus {
		st.State, st.Error = proto.VolumeError, fmt.Sprintf(format, args...)
		return st
	}
	for {
		if st.Device = findVolumeDevice(a.root, v.Serial); st.Device != "" {
			break
		}
		if time.Now().After(deadline) {
			return fail("no disk with serial %q after %s", v.Serial, a.volumeWait)
		}
		time.Sleep(volumePoll)
	}
	if v.Mount == "" {
		st.State = proto.VolumeAttached
		return st
	}
	dev := filepath.Join(a.root, st.Device)
	// Mounted already (the agent restarted): nothing to do.
	if m, ok := mountedAt(a.root, v.Mount); ok {
		if m.Source != st.Device {
			return fail("%s is mounted at %s already", m.Source, v.Mount)
		}
		st.State = proto.VolumeMounted
		return st
	}
	content, err := probeDisk(dev)
	if err != nil {
		return fail("%v", err)
	}
	switch {
	case content == diskExt:
	case v.ReadOnly:
		return fail("no ext2/3/4 filesystem on %s, and the volume is read-only: not formatted", st.Device)
	case content == diskOther:
		return fail("%s holds data that is not an ext2/3/4 filesystem: not formatted, so as not to lose it", st.Device)
	default:
		if err := a.formatVolume(dev); err != nil {
			return fail("format: %v", err)
		}
		if content, err = probeDisk(dev); err != nil || content != diskExt {
			return fail("format: no ext2/3/4 filesystem on %s after mke2fs (%v)", st.Device, err)
		}
		st.Formatted = true
	}
	dir := filepath.Join(a.root, v.Mount)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("mount point: %v", err)
	}
	if a.mountVolume == nil {
		return fail("mounting is done only in the guest (root /)")
	}
	if err := a.mountVolume(dev, dir, v.ReadOnly); err != nil {
		return fail("%v", err)
	}
	st.State = proto.VolumeMounted
	return st
}

// volumeStatus returns what became of the seed's volumes (nil: none).
func (a *Agent) volumeStatus() []proto.VolumeStatus {
	a.volMu.Lock()
	defer a.volMu.Unlock()
	return slices.Clone(a.volumes)
}
