package storage

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// qcow2HeaderLen is how much of a qcow2 header virtualSize reads.
const qcow2HeaderLen = 32

// parseQcow2Size returns the virtual size recorded in a qcow2 header (the
// first bytes of the file): magic "QFI\xfb", version 2 or 3, size at byte
// 24, big endian.
func parseQcow2Size(hdr []byte) (int64, error) {
	if len(hdr) < qcow2HeaderLen {
		return 0, fmt.Errorf("qcow2 header: %d bytes, want at least %d", len(hdr), qcow2HeaderLen)
	}
	if string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("qcow2 header: magic %q is not qcow2's", hdr[:4])
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
		return 0, fmt.Errorf("qcow2 header: version %d, want 2 or 3", v)
	}
	size := binary.BigEndian.Uint64(hdr[24:32])
	if size > math.MaxInt64 {
		return 0, fmt.Errorf("qcow2 header: size %d is out of range", size)
	}
	return int64(size), nil
}

// qcow2Size reads the virtual size of the qcow2 file at path.
func qcow2Size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	hdr := make([]byte, qcow2HeaderLen)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return 0, fmt.Errorf("%s: qcow2 header: %w", path, err)
	}
	size, err := parseQcow2Size(hdr)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return size, nil
}
