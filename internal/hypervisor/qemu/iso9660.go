package qemu

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// A writer of small ISO 9660 images: one root directory of regular files,
// with Rock Ridge and Joliet names, so that the NoCloud seed is made
// without spawning genisoimage (about 15 ms a start). The image has what
//
//	genisoimage -V LABEL -J -r -o FILE DIR
//
// gives a guest: the volume label in the primary volume descriptor, where
// the guest agent and blkid read it; the exact (lowercase, hyphenated)
// file names through Rock Ridge, which Linux's isofs prefers, and through
// Joliet, which it uses when mounted with norock and which other systems
// read; files mode 0444 and the root 0555, owned by root (-r).
//
// The formats are ECMA-119 (ISO 9660; sectors of 2048 bytes, numbers in
// both byte orders), the Joliet specification (a supplementary volume
// descriptor with the UCS-2 escape sequence "%/E" and a second directory
// tree whose names are UCS-2 big-endian), IEEE P1281 (SUSP 1.10: the SP,
// CE and ER entries) and P1282 (RRIP 1.09: RR, PX, NM, TF).
//
// Layout, in sectors:
//
//	0-15   system area (zero)
//	16     primary volume descriptor
//	17     Joliet supplementary volume descriptor
//	18     volume descriptor set terminator
//	19-22  path tables (L and M) of the primary and of the Joliet tree
//	23-    the primary root directory (with Rock Ridge entries), one
//	       sector holding the Rock Ridge ER entry (continuation area),
//	       the Joliet root directory, then each file's data from a sector
//	       boundary; both trees point at the same data
//	end    150 sectors of zero padding, as genisoimage adds
const (
	isoSector      = 2048
	isoPadSectors  = 150
	isoMaxNameLen  = 64 // Joliet allows 64 UCS-2 characters
	isoMaxLabelLen = 32 // the primary volume identifier; Joliet keeps 16
	isoFirstDir    = 23
	isoMaxData     = 256 << 20
)

// Rock Ridge file modes (POSIX st_mode) and the RR entry's flags.
const (
	rrModeDir  = 0o040555
	rrModeFile = 0o100444
	rrFlagPX   = 0x01
	rrFlagNM   = 0x08
	rrFlagTF   = 0x80
)

// The ER entry that names RRIP 1.09 (its identifier, description and
// source are the ones the RRIP specification gives).
const (
	rrExtID  = "RRIP_1991A"
	rrExtDes = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	rrExtSrc = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."
)

// isoEntry is a file of the image with its names in the three namespaces.
type isoEntry struct {
	name    string   // the Rock Ridge (POSIX) name
	primary string   // the ISO 9660 level 1 identifier, "NAME.EXT;1"
	joliet  []uint16 // UCS-2
	data    []byte
	extent  uint32
}

// isoImage is a laid-out image: the bytes up to the end of the last
// file, and the length with the padding.
type isoImage struct {
	head []byte
	size int64
}

// buildISO lays out an image of files (name -> contents) in its root
// directory, with volume label label; t is every timestamp.
func buildISO(label string, files map[string][]byte, t time.Time) (isoImage, error) {
	if label == "" || len(label) > isoMaxLabelLen || !isPrintableASCII(label) {
		return isoImage{}, fmt.Errorf("iso9660: volume label %q: want 1 to %d printable ASCII characters", label, isoMaxLabelLen)
	}
	ents := make([]*isoEntry, 0, len(files))
	total := 0
	for name, data := range files {
		if err := checkISOName(name); err != nil {
			return isoImage{}, err
		}
		// The image is built in memory; a seed is a few KiB.
		if total += len(data); total > isoMaxData {
			return isoImage{}, fmt.Errorf("iso9660: more than %d bytes of files", isoMaxData)
		}
		ents = append(ents, &isoEntry{name: name, joliet: utf16.Encode([]rune(name)), data: data})
	}
	assignPrimaryNames(ents)
	t = t.UTC()
	if y := t.Year(); y < 1900 || y > 1900+255 {
		return isoImage{}, fmt.Errorf("iso9660: time %s out of range", t)
	}

	// Directory sizes do not depend on where things are; lay them out once
	// with zero extents to learn them.
	primSorted := slices.Clone(ents)
	slices.SortFunc(primSorted, func(a, b *isoEntry) int { return comparePrimary(a.primary, b.primary) })
	jolSorted := slices.Clone(ents)
	slices.SortFunc(jolSorted, func(a, b *isoEntry) int { return slices.Compare(a.joliet, b.joliet) })
	var lay isoLayout
	prim, err := lay.primaryDir(primSorted, t)
	if err != nil {
		return isoImage{}, err
	}
	jol, err := lay.jolietDir(jolSorted, t)
	if err != nil {
		return isoImage{}, err
	}
	lay.primRoot = isoFirstDir
	lay.ceSector = lay.primRoot + uint32(len(prim)/isoSector)
	lay.jolRoot = lay.ceSector + 1
	next := lay.jolRoot + uint32(len(jol)/isoSector)
	for _, e := range primSorted {
		if len(e.data) > 0 {
			e.extent = next
			next += uint32((len(e.data) + isoSector - 1) / isoSector)
		}
	}
	for _, e := range ents {
		if len(e.data) == 0 {
			e.extent = next // as genisoimage does: the sector after the data
		}
	}
	img := make([]byte, int(next)*isoSector)

	// Again, now with the extents (the sizes stay the same).
	prim, _ = lay.primaryDir(primSorted, t)
	jol, _ = lay.jolietDir(jolSorted, t)
	copy(img[int(lay.primRoot)*isoSector:], prim)
	copy(img[int(lay.jolRoot)*isoSector:], jol)
	copy(img[int(lay.ceSector)*isoSector:], rrER())
	for _, e := range ents {
		copy(img[int(e.extent)*isoSector:], e.data)
	}

	// Path tables: one record, the root, in each.
	const pathTableLen = 10
	pathTable(img[19*isoSector:], lay.primRoot, binary.LittleEndian)
	pathTable(img[20*isoSector:], lay.primRoot, binary.BigEndian)
	pathTable(img[21*isoSector:], lay.jolRoot, binary.LittleEndian)
	pathTable(img[22*isoSector:], lay.jolRoot, binary.BigEndian)

	pvd := img[16*isoSector : 17*isoSector]
	sectors := next + isoPadSectors
	volumeDescriptor(pvd, 1, label, sectors, pathTableLen, 19, 20,
		dirRecord(nil, []byte{0}, lay.primRoot, uint32(len(prim)), true, t, nil), t, false)
	svd := img[17*isoSector : 18*isoSector]
	volumeDescriptor(svd, 2, label, sectors, pathTableLen, 21, 22,
		dirRecord(nil, []byte{0}, lay.jolRoot, uint32(len(jol)), true, t, nil), t, true)
	term := img[18*isoSector : 19*isoSector]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	return isoImage{head: img, size: int64(sectors) * isoSector}, nil
}

// writeFile writes the image to path (created or truncated).
func (im isoImage) writeFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(im.head)
	if err == nil {
		err = f.Truncate(im.size) // the padding, as a hole
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// checkISOName accepts a file name that all three namespaces can hold.
func checkISOName(name string) error {
	if name == "" || name == "." || name == ".." || !utf8.ValidString(name) {
		return fmt.Errorf("iso9660: bad file name %q", name)
	}
	if len(name) > isoMaxNameLen || len(utf16.Encode([]rune(name))) > isoMaxNameLen {
		return fmt.Errorf("iso9660: file name %q is longer than %d bytes", name, isoMaxNameLen)
	}
	for _, r := range name {
		// Joliet forbids * / : ; ? \ and control characters.
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`*/:;?\`, r) {
			return fmt.Errorf("iso9660: file name %q: character %q not allowed", name, r)
		}
	}
	return nil
}

// assignPrimaryNames gives each entry a unique ISO 9660 level 1 name:
// upper case, d-characters (A-Z 0-9 _) only, at most 8 + 3 characters,
// ";1" version, as genisoimage maps "meta-data" to "META_DAT.;1".
func assignPrimaryNames(ents []*isoEntry) {
	slices.SortFunc(ents, func(a, b *isoEntry) int { return strings.Compare(a.name, b.name) })
	used := map[string]bool{}
	for _, e := range ents {
		base, ext := e.name, ""
		if i := strings.LastIndexByte(e.name, '.'); i > 0 {
			base, ext = e.name[:i], e.name[i+1:]
		}
		base, ext = dChars(base, 8), dChars(ext, 3)
		if base == "" {
			base = "_"
		}
		id := base + "." + ext + ";1"
		for n := 1; used[id]; n++ {
			suffix := fmt.Sprint(n)
			id = base[:min(len(base), 8-len(suffix))] + suffix + "." + ext + ";1"
		}
		used[id] = true
		e.primary = id
	}
}

// dChars maps s to at most n d-characters.
func dChars(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if b.Len() == n {
			break
		}
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// comparePrimary orders level 1 identifiers as ECMA-119 9.3 says: by name,
// then extension, each padded with spaces (version numbers are all 1).
func comparePrimary(a, b string) int {
	an, ae := splitPrimary(a)
	bn, be := splitPrimary(b)
	if c := comparePadded(an, bn); c != 0 {
		return c
	}
	return comparePadded(ae, be)
}

func splitPrimary(id string) (name, ext string) {
	id, _, _ = strings.Cut(id, ";")
	name, ext, _ = strings.Cut(id, ".")
	return name, ext
}

func comparePadded(a, b string) int {
	n := max(len(a), len(b))
	return strings.Compare(a+strings.Repeat(" ", n-len(a)), b+strings.Repeat(" ", n-len(b)))
}

// isoLayout holds the sectors of the two root directories and the
// continuation area.
type isoLayout struct {
	primRoot, ceSector, jolRoot uint32
}

// primaryDir returns the primary root directory: ".", ".." and ents, with
// Rock Ridge entries; "." also carries SP and a CE pointing at the ER.
func (l isoLayout) primaryDir(ents []*isoEntry, t time.Time) ([]byte, error) {
	var d isoDir
	// The directory's own size is needed in "." and ".."; it is the same
	// both times around, so measure first.
	size := uint32(0)
	for pass := 0; pass < 2; pass++ {
		d = isoDir{}
		dot := rrSP(nil)
		dot = rrRR(dot, rrFlagPX|rrFlagTF)
		dot = rrPX(dot, rrModeDir, 2)
		dot = rrTF(dot, t)
		dot = rrCE(dot, l.ceSector, uint32(len(rrER())))
		if err := d.add(dirRecord(nil, []byte{0}, l.primRoot, size, true, t, dot)); err != nil {
			return nil, err
		}
		dotdot := rrRR(nil, rrFlagPX|rrFlagTF)
		dotdot = rrPX(dotdot, rrModeDir, 2)
		dotdot = rrTF(dotdot, t)
		if err := d.add(dirRecord(nil, []byte{1}, l.primRoot, size, true, t, dotdot)); err != nil {
			return nil, err
		}
		for _, e := range ents {
			su := rrRR(nil, rrFlagPX|rrFlagNM|rrFlagTF)
			su = rrNM(su, e.name)
			su = rrPX(su, rrModeFile, 1)
			su = rrTF(su, t)
			if err := d.add(dirRecord(nil, []byte(e.primary), e.extent, uint32(len(e.data)), false, t, su)); err != nil {
				return nil, err
			}
		}
		size = uint32(d.size())
	}
	return d.bytes(), nil
}

// jolietDir returns the Joliet root directory.
func (l isoLayout) jolietDir(ents []*isoEntry, t time.Time) ([]byte, error) {
	var d isoDir
	size := uint32(0)
	for pass := 0; pass < 2; pass++ {
		d = isoDir{}
		if err := d.add(dirRecord(nil, []byte{0}, l.jolRoot, size, true, t, nil)); err != nil {
			return nil, err
		}
		if err := d.add(dirRecord(nil, []byte{1}, l.jolRoot, size, true, t, nil)); err != nil {
			return nil, err
		}
		for _, e := range ents {
			id := make([]byte, 0, 2*len(e.joliet))
			for _, u := range e.joliet {
				id = binary.BigEndian.AppendUint16(id, u)
			}
			if err := d.add(dirRecord(nil, id, e.extent, uint32(len(e.data)), false, t, nil)); err != nil {
				return nil, err
			}
		}
		size = uint32(d.size())
	}
	return d.bytes(), nil
}

// isoDir collects directory records into sectors: a record never crosses
// a sector boundary (ECMA-119 6.8.1.1); the rest of a sector is zero.
type isoDir struct {
	sectors [][]byte
}

func (d *isoDir) add(rec []byte) error {
	if len(rec) > 255 {
		return fmt.Errorf("iso9660: directory record of %d bytes", len(rec))
	}
	if n := len(d.sectors); n == 0 || len(d.sectors[n-1])+len(rec) > isoSector {
		d.sectors = append(d.sectors, make([]byte, 0, isoSector))
	}
	n := len(d.sectors) - 1
	d.sectors[n] = append(d.sectors[n], rec...)
	return nil
}

func (d *isoDir) size() int { return len(d.sectors) * isoSector }

func (d *isoDir) bytes() []byte {
	b := make([]byte, d.size())
	for i, s := range d.sectors {
		copy(b[i*isoSector:], s)
	}
	return b
}

// dirRecord appends a directory record (ECMA-119 9.1) to b.
func dirRecord(b, id []byte, extent, size uint32, dir bool, t time.Time, su []byte) []byte {
	n := 33 + len(id)
	pad := n % 2 // the system use area starts at an even offset
	rec := make([]byte, n+pad, n+pad+len(su))
	rec[0] = byte(n + pad + len(su))
	// rec[1]: extended attribute record length 0.
	both32(rec[2:], extent)
	both32(rec[10:], size)
	recDate(rec[18:], t)
	if dir {
		rec[25] = 2
	}
	// rec[26], rec[27]: not interleaved.
	both16(rec[28:], 1) // volume sequence number
	rec[32] = byte(len(id))
	copy(rec[33:], id)
	rec = append(rec, su...)
	return append(b, rec...)
}

// both16 and both32 write a number in both byte orders (ECMA-119 7.2.3,
// 7.3.3): little-endian, then big-endian.
func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// recDate writes the 7-byte date of a directory record (ECMA-119 9.1.5),
// in UTC.
func recDate(b []byte, t time.Time) {
	b[0] = byte(t.Year() - 1900)
	b[1] = byte(t.Month())
	b[2] = byte(t.Day())
	b[3] = byte(t.Hour())
	b[4] = byte(t.Minute())
	b[5] = byte(t.Second())
	b[6] = 0 // offset from GMT in 15-minute intervals
}

// vdDate writes the 17-byte date of a volume descriptor (ECMA-119 8.4.26.1).
func vdDate(b []byte, t time.Time) {
	copy(b, fmt.Sprintf("%04d%02d%02d%02d%02d%02d%02d", t.Year(), t.Month(), t.Day(),
		t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e7))
	b[16] = 0
}

// volumeDescriptor fills a primary (typ 1) or Joliet supplementary (typ 2)
// volume descriptor (ECMA-119 8.4 and 8.5).
func volumeDescriptor(b []byte, typ byte, label string, sectors, pathTableLen, lPath, mPath uint32, root []byte, t time.Time, joliet bool) {
	b[0] = typ
	copy(b[1:], "CD001")
	b[6] = 1
	text := func(off, n int, s string) {
		if joliet {
			ucs2Field(b[off:off+n], s)
		} else {
			copy(b[off:off+n], s+strings.Repeat(" ", n-len(s)))
		}
	}
	text(8, 32, "LINUX") // system identifier
	text(40, 32, label)  // volume identifier
	both32(b[80:], sectors)
	if joliet {
		copy(b[88:], "%/E") // UCS-2 level 3
	}
	both16(b[120:], 1) // volume set size
	both16(b[124:], 1) // volume sequence number
	both16(b[128:], isoSector)
	both32(b[132:], pathTableLen)
	binary.LittleEndian.PutUint32(b[140:], lPath)
	binary.BigEndian.PutUint32(b[148:], mPath)
	copy(b[156:190], root)
	text(190, 128, "") // volume set
	text(318, 128, "") // publisher
	text(446, 128, "") // data preparer
	text(574, 128, "") // application
	text(702, 37, "")  // copyright file
	text(739, 37, "")  // abstract file
	text(776, 37, "")  // bibliographic file
	vdDate(b[813:], t) // creation
	vdDate(b[830:], t) // modification
	copy(b[847:], "0000000000000000")
	copy(b[864:], "0000000000000000")
	b[881] = 1 // file structure version
}

// ucs2Field writes s as UCS-2 big-endian, padded with UCS-2 spaces; a
// field of odd length ends in a zero byte.
func ucs2Field(b []byte, s string) {
	u := utf16.Encode([]rune(s))
	for i := 0; i+1 < len(b); i += 2 {
		c := uint16(' ')
		if i/2 < len(u) {
			c = u[i/2]
		}
		binary.BigEndian.PutUint16(b[i:], c)
	}
	if len(b)%2 == 1 {
		b[len(b)-1] = 0
	}
}

// pathTable writes a path table holding only the root directory
// (ECMA-119 9.4) in the given byte order.
func pathTable(b []byte, root uint32, order binary.ByteOrder) {
	b[0] = 1 // length of the directory identifier
	order.PutUint32(b[2:], root)
	order.PutUint16(b[6:], 1) // parent: itself
	b[8] = 0                  // identifier of the root; b[9] pads
}

// SUSP and Rock Ridge entries: two signature bytes, length, version 1.

func rrSP(b []byte) []byte { return append(b, 'S', 'P', 7, 1, 0xbe, 0xef, 0) }

func rrRR(b []byte, flags byte) []byte { return append(b, 'R', 'R', 5, 1, flags) }

func rrNM(b []byte, name string) []byte {
	b = append(b, 'N', 'M', byte(5+len(name)), 1, 0)
	return append(b, name...)
}

func rrPX(b []byte, mode, nlink uint32) []byte {
	e := make([]byte, 36)
	copy(e, []byte{'P', 'X', 36, 1})
	both32(e[4:], mode)
	both32(e[12:], nlink)
	// uid (20) and gid (28) 0: root.
	return append(b, e...)
}

// rrTF records the modify, access and attribute-change times.
func rrTF(b []byte, t time.Time) []byte {
	e := make([]byte, 5+3*7)
	copy(e, []byte{'T', 'F', byte(len(e)), 1, 0x0e})
	for i := range 3 {
		recDate(e[5+7*i:], t)
	}
	return append(b, e...)
}

// rrCE points at the continuation area: the whole of sector.
func rrCE(b []byte, sector, length uint32) []byte {
	e := make([]byte, 28)
	copy(e, []byte{'C', 'E', 28, 1})
	both32(e[4:], sector)
	both32(e[12:], 0) // offset
	both32(e[20:], length)
	return append(b, e...)
}

// rrER is the extensions reference entry that announces Rock Ridge; Linux
// uses the Rock Ridge names only after seeing it.
func rrER() []byte {
	b := []byte{'E', 'R', byte(8 + len(rrExtID) + len(rrExtDes) + len(rrExtSrc)), 1,
		byte(len(rrExtID)), byte(len(rrExtDes)), byte(len(rrExtSrc)), 1}
	b = append(b, rrExtID...)
	b = append(b, rrExtDes...)
	return append(b, rrExtSrc...)
}

// writeISOFile builds and writes an image to path.
func writeISOFile(path, label string, files map[string][]byte, t time.Time) error {
	im, err := buildISO(label, files, t)
	if err != nil {
		return err
	}
	return im.writeFile(path)
}
