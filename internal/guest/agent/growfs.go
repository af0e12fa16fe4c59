package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vgrid/internal/guest/proto"
)

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
const ext4IocResizeFS = 0x40086610

// ext4Geometry reads the block count and block size from an ext2/3/4
// superblock (1024 bytes into the device).
func ext4Geometry(sb []byte) (blocks uint64, blockSize uint64, err error) {
	if len(sb) < 0x160 {
		return 0, 0, fmt.Errorf("superblock: %d bytes, want at least %d", len(sb), 0x160)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return 0, 0, fmt.Errorf("superblock: not ext2/3/4")
	}
	logBS := binary.LittleEndian.Uint32(sb[0x18:])
	if logBS > 6 {
		return 0, 0, fmt.Errorf("superblock: block size 2^%d KiB", logBS)
	}
	blockSize = 1024 << logBS
	blocks = uint64(binary.LittleEndian.Uint32(sb[0x4:]))
	const incompat64bit = 0x80
	if binary.LittleEndian.Uint32(sb[0x60:])&incompat64bit != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return blocks, blockSize, nil
}

// rootGeometry is the root disk and the ext4 filesystem on it.
type rootGeometry struct {
	diskBytes int64  // the disk's size as the kernel sees it
	blocks    uint64 // the filesystem's blocks
	blockSize uint64
	perGroup  uint64 // blocks per block group
}

// fsBytes is the filesystem's size.
func (g rootGeometry) fsBytes() int64 { return int64(g.blocks * g.blockSize) }

// readRootGeometry reads the size of /dev/vda (from sysfs) and the
// geometry of the ext4 filesystem on it (from its superblock), with
// /sys and /dev looked up under root ("" in the guest).
func readRootGeometry(root string) (rootGeometry, error) {
	raw, err := os.ReadFile(root + "/sys/block/vda/size")
	if err != nil {
		return rootGeometry{}, err
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return rootGeometry{}, fmt.Errorf("vda size: %w", err)
	}
	f, err := os.Open(root + "/dev/vda")
	if err != nil {
		return rootGeometry{}, err
	}
	sb := make([]byte, 0x200)
	_, err = f.ReadAt(sb, 1024)
	f.Close()
	if err != nil {
		return rootGeometry{}, fmt.Errorf("read superblock: %w", err)
	}
	blocks, bs, err := ext4Geometry(sb)
	if err != nil {
		return rootGeometry{}, err
	}
	return rootGeometry{diskBytes: int64(sectors * 512), blocks: blocks, blockSize: bs,
		perGroup: uint64(binary.LittleEndian.Uint32(sb[0x20:]))}, nil
}

// growRoot grows the root filesystem (ext4 on /dev/vda, mounted at root)
// online to fill its disk, so a workspace gets the disk size of its
// quantum rather than the size of the image's filesystem.
func growRoot(root string) (grew bool, err error) {
	g, err := readRootGeometry(root)
	if err != nil {
		return false, err
	}
	want := uint64(g.diskBytes) / g.blockSize
	if want <= g.blocks {
		return false, nil
	}
	mnt, err := os.Open(root + "/")
	if err != nil {
		return false, err
	}
	defer mnt.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, mnt.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&want))); errno != 0 {
		return false, fmt.Errorf("grow root filesystem from %d to %d blocks: %w", g.blocks, want, errno)
	}
	return true, nil
}

// growPoll is how often GrowFS looks again at the disk's size, or tries
// again while another resize of the filesystem is under way.
const growPoll = 50 * time.Millisecond

// GrowFS grows the root filesystem online after the host grew its disk to
// size bytes (proto.GrowFSFlag): it waits up to wait for the kernel to see
// the disk at size or more (virtio-blk learns of a new capacity from a
// configuration change interrupt, a moment after the host's resize), then
// grows the filesystem to fill the disk, and reports the sizes. A
// filesystem that already fills the disk (the agent's watcher, watch.go,
// may have grown it first) is left as it is. /sys, /dev and the mount
// point are looked up under root ("" in the guest).
func GrowFS(root string, size int64, wait time.Duration) (proto.GrowFSResult, error) {
	deadline := time.Now().Add(wait)
	g, err := readRootGeometry(root)
	for ; err == nil && g.diskBytes < size; g, err = readRootGeometry(root) {
		if time.Now().After(deadline) {
			return proto.GrowFSResult{}, fmt.Errorf("growfs: the kernel sees the root disk at %d bytes, not %d, after %s: the disk's new size has not reached the guest",
				g.diskBytes, size, wait)
		}
		time.Sleep(growPoll)
	}
	if err != nil {
		return proto.GrowFSResult{}, fmt.Errorf("growfs: %w", err)
	}
	var grew bool
	for {
		grew, err = growRoot(root)
		// EBUSY: another resize (the watcher's) is under way.
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(growPoll)
	}
	if err != nil {
		return proto.GrowFSResult{}, fmt.Errorf("growfs: %w", err)
	}
	if g, err = readRootGeometry(root); err != nil {
		return proto.GrowFSResult{}, fmt.Errorf("growfs: %w", err)
	}
	res := proto.GrowFSResult{DiskBytes: g.diskBytes, FSBytes: g.fsBytes(), Grown: grew}
	// ext4 leaves a last block group out when it would be too small to
	// hold its own metadata: up to a group short of the disk is full.
	if short := g.diskBytes - res.FSBytes; short > int64((g.perGroup+1)*g.blockSize) {
		return res, fmt.Errorf("growfs: the root filesystem is %d bytes on a disk of %d", res.FSBytes, g.diskBytes)
	}
	return res, nil
}
