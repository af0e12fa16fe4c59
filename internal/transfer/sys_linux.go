package transfer

import (
	"os"

	"golang.org/x/sys/unix"
)

// getXattr returns the extended attribute name of f, or "" if it has none
// or the file system has no extended attributes.
func getXattr(f *os.File, name string) string {
	rc, err := f.SyscallConn()
	if err != nil {
		return ""
	}
	var buf [256]byte
	n := -1
	rc.Control(func(fd uintptr) {
		n, err = unix.Fgetxattr(int(fd), name, buf[:])
	})
	if err != nil || n < 0 {
		return ""
	}
	return string(buf[:n])
}

// setXattr sets the extended attribute name of f, if it can.
func setXattr(f *os.File, name, value string) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.Fsetxattr(int(fd), name, []byte(value), 0)
	})
}

// startWriteback starts writing the range of f back to disk, without
// waiting, so that the final fsync has less to do.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
