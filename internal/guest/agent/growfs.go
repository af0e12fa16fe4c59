package agent

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
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

// growRoot grows the root filesystem (ext4 on /dev/vda, mounted at root)
// online to fill its disk, so a workspace gets the disk size of its
// quantum rather than the size of the image's filesystem.
func growRoot(root string) (grew bool, err error) {
	dev := "/dev/vda"
	raw, err := os.ReadFile(root + "/sys/block/vda/size")
	if err != nil {
		return false, err
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return false, fmt.Errorf("vda size: %w", err)
	}
	f, err := os.Open(root + dev)
	if err != nil {
		return false, err
	}
	sb := make([]byte, 0x200)
	_, err = f.ReadAt(sb, 1024)
	f.Close()
	if err != nil {
		return false, fmt.Errorf("read superblock: %w", err)
	}
	blocks, bs, err := ext4Geometry(sb)
	if err != nil {
		return false, err
	}
	want := sectors * 512 / bs
	if want <= blocks {
		return false, nil
	}
	mnt, err := os.Open(root + "/")
	if err != nil {
		return false, err
	}
	defer mnt.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, mnt.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&want))); errno != 0 {
		return false, fmt.Errorf("grow root filesystem from %d to %d blocks: %w", blocks, want, errno)
	}
	return true, nil
}
