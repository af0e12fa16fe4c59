package image

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// File type bits of a cpio (and stat) mode.
const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeRegular  = 0o100000
	modeSymlink  = 0o120000
	modeCharDev  = 0o020000
)

// cpioEntry is one member of a newc archive. Name has no leading slash.
type cpioEntry struct {
	Name string
	Mode uint32 // type bits | permissions
	Data []byte // file contents, or the target of a symlink
	// RdevMajor and RdevMinor are the device numbers of a device node.
	RdevMajor, RdevMinor uint32
}

func dirEntry(name string, perm uint32) cpioEntry {
	return cpioEntry{Name: name, Mode: modeDir | perm}
}

func fileEntry(name string, perm uint32, data []byte) cpioEntry {
	return cpioEntry{Name: name, Mode: modeRegular | perm, Data: data}
}

func symlinkEntry(name, target string) cpioEntry {
	return cpioEntry{Name: name, Mode: modeSymlink | 0o777, Data: []byte(target)}
}

// writeNewc writes entries as a reproducible "newc" (SVR4, no CRC) cpio
// archive: sorted by name (so directories precede their contents), inode
// numbers assigned in that order, uid, gid and mtime 0. Duplicate names
// are an error.
func writeNewc(w io.Writer, entries []cpioEntry) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	bw := bufio.NewWriter(w)
	for i, e := range sorted {
		if e.Name == "" || strings.HasPrefix(e.Name, "/") || e.Name == "TRAILER!!!" {
			return fmt.Errorf("write cpio: bad name %q", e.Name)
		}
		if i > 0 && sorted[i-1].Name == e.Name {
			return fmt.Errorf("write cpio: duplicate %q", e.Name)
		}
		if e.Mode&modeTypeMask == modeDir && len(e.Data) > 0 {
			return fmt.Errorf("write cpio: directory %q has data", e.Name)
		}
		nlink := uint32(1)
		if e.Mode&modeTypeMask == modeDir {
			nlink = 2
		}
		if err := writeNewcHeader(bw, uint32(i+1), e.Mode, nlink, uint32(len(e.Data)), e.RdevMajor, e.RdevMinor, e.Name); err != nil {
			return err
		}
		if _, err := bw.Write(e.Data); err != nil {
			return fmt.Errorf("write cpio: %w", err)
		}
		if err := pad4(bw, len(e.Data)); err != nil {
			return err
		}
	}
	if err := writeNewcHeader(bw, 0, 0, 1, 0, 0, 0, "TRAILER!!!"); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write cpio: %w", err)
	}
	return nil
}

// writeNewcHeader writes the 110-byte header, the NUL-terminated name and
// the padding to a multiple of 4.
func writeNewcHeader(w io.Writer, ino, mode, nlink, size, rdevMajor, rdevMinor uint32, name string) error {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	_, err := fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0, name)
	if err != nil {
		return fmt.Errorf("write cpio: %w", err)
	}
	return pad4(w, 110+len(name)+1)
}

func pad4(w io.Writer, n int) error {
	if p := (4 - n%4) % 4; p > 0 {
		if _, err := w.Write(make([]byte, p)); err != nil {
			return fmt.Errorf("write cpio: %w", err)
		}
	}
	return nil
}
