package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"strings"
)

// The checker reads the store file itself, page by page, with every offset
// and length bounds-checked, so that damage of any kind is a finding and
// never a panic. bbolt follows pointers into its memory map without such
// checks (a damaged page can make it panic, or fault outside the map), so
// Open and Check run the checker first and hand the file to bbolt only if
// it is sound.
//
// What it reads of bbolt's file format (version 2; fields in the machine's
// byte order, as bbolt writes its structs as they are in memory):
//
//	page header (16 bytes): id u64, flags u16, count u16, overflow u32;
//	  a page with overflow n spans n+1 pages of the page size
//	meta (pages 0 and 1, after the header): magic u32, version u32,
//	  page size u32, flags u32, root bucket (root page u64, sequence u64),
//	  freelist page u64, high-water mark u64, transaction u64 (56 bytes), then an
//	  FNV-64a checksum of those 56 bytes
//	branch element (16 bytes): key offset u32 (from the element), key
//	  size u32, child page u64
//	leaf element (16 bytes): flags u32 (1: a nested bucket), key offset
//	  u32 (from the element), key size u32, value size u32; the value
//	  follows the key
//	bucket value: root page u64, sequence u64; root 0 means an inline
//	  bucket whose leaf page follows in the value
//	freelist page: count u16 in the header, or 0xFFFF and the count as the
//	  first u64; then the free page ids, u64 each
const (
	pageHeaderSize   = 16
	metaOffset       = pageHeaderSize
	metaSumLen       = 56 // the meta fields the checksum covers
	elemSize         = 16 // branch and leaf elements alike
	bucketHeaderSize = 16

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	leafBucket   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	minPageSize = 1024
	maxPageSize = 16 << 20
	maxDepth    = 64 // far deeper than any bbolt tree of a real store

	// maxFindings caps the problems (and warnings) a report lists.
	maxFindings = 50
)

var ne = binary.NativeEndian

// Report is what a check of a store file found: counts, and problems.
type Report struct {
	Path       string
	Size       int64  // bytes in the file
	PageSize   int    // bytes per page
	Pages      uint64 // pages up to the high-water mark (the rest of the file is unused)
	FreePages  int    // pages on the freelist
	TxID       uint64 // the bbolt transaction of the meta page in use
	ID         string // the store's identity ("" for stores made before there were IDs)
	Revision   int64  // the store-wide revision
	Keys       int    // keys in the store
	LogEntries int    // revisions kept for Watch replay
	// Problems are damage: the store must not be used as it is.
	Problems []string
	// Warnings are oddities that the store survives, such as one meta
	// page left invalid by an interrupted write.
	Warnings []string

	moreProblems, moreWarnings int
}

// OK says whether the check found no damage.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) >= maxFindings {
		r.moreProblems++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *Report) warn(format string, args ...any) {
	if len(r.Warnings) >= maxFindings {
		r.moreWarnings++
		return
	}
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// finish notes the findings left off.
func (r *Report) finish() {
	if r.moreProblems > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("and %d more problems", r.moreProblems))
		r.moreProblems = 0
	}
	if r.moreWarnings > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("and %d more warnings", r.moreWarnings))
		r.moreWarnings = 0
	}
}

// ErrDamaged is what the error of Open or Check matches (errors.Is) when
// the store file is damaged.
var ErrDamaged = errors.New("store file is damaged")

// DamagedError says that a store file is damaged and what to do about it.
type DamagedError struct {
	Op     string // "open" or "check"
	Path   string
	Reason string // the first problem found
	More   int    // how many more problems the check found
}

func (e *DamagedError) Error() string {
	reason := e.Reason
	if e.More > 0 {
		reason += fmt.Sprintf(" (and %d more problems)", e.More)
	}
	dir := filepath.Dir(e.Path)
	restore := fmt.Sprintf("restore a backup with `vgrid store restore FILE --data-dir %s` (backups are in %s)", dir, BackupDir(e.Path))
	if e.Op == "check" {
		restore = strings.ToUpper(restore[:1]) + restore[1:]
	} else {
		restore = fmt.Sprintf("Run `vgrid store check --data-dir %s` for a full report, then %s", dir, restore)
	}
	return fmt.Sprintf("%s store %s: the file is damaged: %s. vgrid has not changed it. %s", e.Op, e.Path, reason, restore)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

func damaged(op, path string, rep *Report) *DamagedError {
	e := &DamagedError{Op: op, Path: path, Reason: "unknown damage"}
	if len(rep.Problems) > 0 {
		e.Reason = rep.Problems[0]
		e.More = len(rep.Problems) - 1
		if last := rep.Problems[len(rep.Problems)-1]; strings.HasPrefix(last, "and ") {
			var n int
			if _, err := fmt.Sscanf(last, "and %d more problems", &n); err == nil {
				e.More += n - 1
			}
		}
	}
	return e
}

// BackupDir is where the backups of the store at path are kept: the
// directory "backups" beside it.
func BackupDir(path string) string { return filepath.Join(filepath.Dir(path), "backups") }

// meta is one decoded meta page.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // pages in use: the file must hold at least hwm pages
	txid     uint64
}

// readMeta decodes the meta at the start of b (a page) and says why it is
// invalid if it is.
func readMeta(b []byte) (meta, error) {
	if len(b) < metaOffset+metaSumLen+8 {
		return meta{}, errors.New("cut short")
	}
	m := b[metaOffset:]
	if ne.Uint32(m[0:]) != boltMagic {
		return meta{}, errors.New("no bbolt magic number")
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return meta{}, fmt.Errorf("format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != ne.Uint64(m[metaSumLen:]) {
		return meta{}, errors.New("checksum mismatch")
	}
	return meta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		hwm:      ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, nil
}

// page states in checker.state
const (
	pageUsed = 1 << iota // reachable from the root
	pageFree             // on the freelist
)

// checker walks one file.
type checker struct {
	r     io.ReaderAt
	size  int64
	ps    int
	hwm   uint64
	state []uint8 // per page id below hwm
	rep   *Report

	buckets    map[string]bool // top-level buckets seen
	metaRev    int64
	haveRev    bool
	maxRev     int64 // highest revision of a key or log entry
	maxRevWhat string
}

// scanFile checks the store file read through r, of size bytes, and adds
// what it finds to rep. It never panics on any content.
func scanFile(r io.ReaderAt, size int64, rep *Report) {
	defer rep.finish()
	defer func() {
		// The checker is written not to panic; should it all the same, the
		// file is not one it can vouch for.
		if p := recover(); p != nil {
			rep.problem("the checker failed on this file: %v", p)
		}
	}()
	rep.Size = size
	if size == 0 {
		rep.problem("the file is empty (0 bytes): a store file is never empty, so this is damage (a failed copy or disk), not a new store")
		return
	}
	c := &checker{r: r, size: size, rep: rep, buckets: map[string]bool{}}
	m, ok := c.metas()
	if !ok {
		return
	}
	rep.PageSize, rep.Pages, rep.TxID = c.ps, m.hwm, m.txid
	c.hwm = m.hwm
	if need := int64(m.hwm) * int64(c.ps); m.hwm < 2 || m.hwm > uint64(size/int64(c.ps)) {
		rep.problem("the file is truncated: transaction %d uses %d pages of %d bytes (%d bytes), the file has %d bytes", m.txid, m.hwm, c.ps, need, size)
		return
	}
	c.state = make([]uint8, m.hwm)
	c.state[0], c.state[1] = pageUsed, pageUsed
	if m.root < 2 || m.root >= m.hwm {
		rep.problem("the root bucket is at page %d, outside pages 2..%d", m.root, m.hwm-1)
		return
	}
	freeOK := c.freelist(m)
	if pg, ok := c.page(m.root, "the meta page (as the root)"); ok {
		c.node(pg, fmt.Sprintf("page %d", m.root), "", 0, nil, nil)
	}
	c.storeChecks()
	// Pages cut off by damage found already are no news: count leaks only
	// in a tree that is whole.
	if freeOK && rep.OK() {
		c.leaks()
	}
}

// metas finds the page size and the meta page in use, as bbolt does: the
// valid meta of the higher transaction.
func (c *checker) metas() (meta, bool) {
	rep := c.rep
	first := make([]byte, min(c.size, 4096))
	if _, err := c.r.ReadAt(first, 0); err != nil && !errors.Is(err, io.EOF) {
		rep.problem("read the first page: %v", err)
		return meta{}, false
	}
	m0, err0 := readMeta(first)
	if err0 == nil && (m0.pageSize < minPageSize || m0.pageSize > maxPageSize) {
		err0 = fmt.Errorf("page size %d", m0.pageSize)
	}
	var m1 meta
	err1 := errors.New("none found at any page size")
	if err0 == nil {
		c.ps = int(m0.pageSize)
		m1, err1 = c.metaAt(int64(c.ps))
	} else {
		// Without meta 0 the page size is unknown: look for meta 1 where
		// each page size would put it.
		for ps := int64(minPageSize); ps <= maxPageSize && ps < c.size; ps *= 2 {
			if m, err := c.metaAt(ps); err == nil && int64(m.pageSize) == ps {
				m1, err1, c.ps = m, nil, int(ps)
				break
			}
		}
	}
	switch {
	case err0 != nil && err1 != nil:
		rep.problem("neither meta page is valid (meta page 0: %v; meta page 1: %v): this is not a bbolt file, or its first pages are damaged", err0, err1)
		return meta{}, false
	case err0 != nil:
		rep.warn("meta page 0 is invalid (%v): the store is read as of transaction %d of meta page 1; after an interrupted write this is normal, otherwise the last write may be lost", err0, m1.txid)
		c.metaHeader(1)
		return m1, true
	case err1 != nil:
		rep.warn("meta page 1 is invalid (%v): the store is read as of transaction %d of meta page 0; after an interrupted write this is normal, otherwise the last write may be lost", err1, m0.txid)
		c.metaHeader(0)
		return m0, true
	}
	if m0.pageSize != m1.pageSize {
		rep.problem("the meta pages disagree on the page size (%d and %d)", m0.pageSize, m1.pageSize)
		return meta{}, false
	}
	c.metaHeader(0)
	c.metaHeader(1)
	if m1.txid > m0.txid {
		return m1, true
	}
	return m0, true
}

func (c *checker) metaAt(off int64) (meta, error) {
	b := make([]byte, metaOffset+metaSumLen+8)
	if _, err := c.r.ReadAt(b, off); err != nil {
		return meta{}, errors.New("cut short")
	}
	return readMeta(b)
}

// metaHeader warns if the header of valid meta page id is odd.
func (c *checker) metaHeader(id uint64) {
	var h [pageHeaderSize]byte
	if _, err := c.r.ReadAt(h[:], int64(id)*int64(c.ps)); err != nil {
		return
	}
	if got, flags := ne.Uint64(h[0:]), ne.Uint16(h[8:]); got != id || flags != flagMeta {
		c.rep.warn("meta page %d has a damaged header (id %d, flags %#x)", id, got, flags)
	}
}

// page reads page id (with its overflow pages) for the node that refers to
// it, marking it used; false if it cannot be read or is used already.
func (c *checker) page(id uint64, from string) ([]byte, bool) {
	if id < 2 || id >= c.hwm {
		c.rep.problem("%s points to page %d, outside pages 2..%d", from, id, c.hwm-1)
		return nil, false
	}
	if c.state[id]&pageUsed != 0 {
		c.rep.problem("page %d is referred to twice (again by %s)", id, from)
		return nil, false
	}
	off := int64(id) * int64(c.ps)
	var h [pageHeaderSize]byte
	if _, err := c.r.ReadAt(h[:], off); err != nil {
		c.rep.problem("page %d, referred to by %s: %v", id, from, err)
		return nil, false
	}
	if got := ne.Uint64(h[0:]); got != id {
		c.rep.problem("page %d, referred to by %s, says it is page %d", id, from, got)
		return nil, false
	}
	overflow := uint64(ne.Uint32(h[12:]))
	if id+overflow >= c.hwm {
		c.rep.problem("page %d, referred to by %s, claims %d overflow pages, past the last page %d", id, from, overflow, c.hwm-1)
		return nil, false
	}
	for i := id; i <= id+overflow; i++ {
		if c.state[i]&pageUsed != 0 {
			c.rep.problem("page %d is referred to twice (as overflow of page %d)", i, id)
			return nil, false
		}
		c.state[i] |= pageUsed
	}
	b := make([]byte, (overflow+1)*uint64(c.ps))
	if _, err := c.r.ReadAt(b, off); err != nil {
		c.rep.problem("page %d, referred to by %s: %v", id, from, err)
		return nil, false
	}
	return b, true
}

// node checks one branch or leaf page pg (a page read from the file, or an
// inline bucket's page) of the bucket named bucket ("" for the root
// bucket), whose keys must lie in [lo, hi) (nil: unbounded), and descends.
func (c *checker) node(pg []byte, where, bucket string, depth int, lo, hi []byte) {
	if depth > maxDepth {
		c.rep.problem("%s: the tree is deeper than %d levels", where, maxDepth)
		return
	}
	if len(pg) < pageHeaderSize {
		c.rep.problem("%s: cut short", where)
		return
	}
	flags, count := ne.Uint16(pg[8:]), int(ne.Uint16(pg[10:]))
	if flags != flagBranch && flags != flagLeaf {
		c.rep.problem("%s (bucket %q): page type %#x, want a branch or leaf page", where, bucket, flags)
		return
	}
	if pageHeaderSize+count*elemSize > len(pg) {
		c.rep.problem("%s: %d elements do not fit in its %d bytes", where, count, len(pg))
		return
	}
	var prev []byte
	for i := range count {
		e := pageHeaderSize + i*elemSize
		var kpos, ksize, vsize uint64
		var eflags uint32
		if flags == flagBranch {
			kpos, ksize = uint64(ne.Uint32(pg[e:])), uint64(ne.Uint32(pg[e+4:]))
		} else {
			eflags = ne.Uint32(pg[e:])
			kpos, ksize, vsize = uint64(ne.Uint32(pg[e+4:])), uint64(ne.Uint32(pg[e+8:])), uint64(ne.Uint32(pg[e+12:]))
		}
		ks := uint64(e) + kpos
		if ks+ksize+vsize > uint64(len(pg)) {
			c.rep.problem("%s: element %d: its key and value run past the end of the page", where, i)
			return
		}
		key := pg[ks : ks+ksize]
		switch {
		case len(key) == 0:
			c.rep.problem("%s: element %d has an empty key", where, i)
			return
		case prev != nil && bytes.Compare(prev, key) >= 0:
			c.rep.problem("%s: element %d: key %q is not after the one before it (%q)", where, i, clip(key), clip(prev))
			return
		case lo != nil && bytes.Compare(key, lo) < 0, hi != nil && bytes.Compare(key, hi) >= 0:
			c.rep.problem("%s: element %d: key %q is outside the range its parent gives", where, i, clip(key))
			return
		}
		prev = key
		if flags == flagBranch {
			child := ne.Uint64(pg[e+8:])
			next := hi
			if i+1 < count {
				// The next element's key bounds this child; it is checked
				// when its turn comes, but must be readable now.
				n := pageHeaderSize + (i+1)*elemSize
				np, nsize := uint64(n)+uint64(ne.Uint32(pg[n:])), uint64(ne.Uint32(pg[n+4:]))
				if np+nsize > uint64(len(pg)) {
					c.rep.problem("%s: element %d: its key runs past the end of the page", where, i+1)
					return
				}
				next = pg[np : np+nsize]
			}
			if cp, ok := c.page(child, where); ok {
				c.node(cp, fmt.Sprintf("page %d", child), bucket, depth+1, key, next)
			}
			continue
		}
		val := pg[ks+ksize : ks+ksize+vsize]
		if eflags&^leafBucket != 0 {
			c.rep.problem("%s: element %d: unknown flags %#x", where, i, eflags)
			return
		}
		if eflags&leafBucket != 0 {
			c.bucket(bucket, key, val, where, depth)
			continue
		}
		if bucket == "" {
			c.rep.problem("%s: key %q outside any bucket", where, clip(key))
			continue
		}
		c.value(bucket, key, val)
	}
}

// bucket checks the bucket named key inside bucket parent, whose bucket
// value val is on the page at where.
func (c *checker) bucket(parent string, key, val []byte, where string, depth int) {
	name := string(key)
	if parent != "" {
		name = parent + "/" + name
		c.rep.problem("%s: nested bucket %q: the store makes none", where, clip([]byte(name)))
		return
	}
	c.buckets[name] = true
	switch name {
	case string(dataBucket), string(metaBucket), string(logBucket):
	default:
		c.rep.warn("bucket %q is not one of the store's", clip(key))
	}
	if len(val) < bucketHeaderSize {
		c.rep.problem("%s: bucket %q: its header is cut short", where, clip(key))
		return
	}
	root := ne.Uint64(val)
	if root == 0 { // inline: its leaf page follows the header
		pg := val[bucketHeaderSize:]
		if len(pg) >= pageHeaderSize && ne.Uint16(pg[8:]) != flagLeaf {
			c.rep.problem("%s: inline bucket %q: page type %#x, want a leaf page", where, clip(key), ne.Uint16(pg[8:]))
			return
		}
		c.node(pg, fmt.Sprintf("inline bucket %q", clip(key)), name, depth+1, nil, nil)
		return
	}
	if pg, ok := c.page(root, fmt.Sprintf("bucket %q", clip(key))); ok {
		c.node(pg, fmt.Sprintf("page %d", root), name, depth+1, nil, nil)
	}
}

// value decodes one key of the store's buckets the way the store does.
func (c *checker) value(bucket string, key, val []byte) {
	switch bucket {
	case string(dataBucket):
		c.rep.Keys++
		rev, _, err := decodeValue(val)
		if err != nil {
			c.rep.problem("key %q: %v", clip(key), err)
			return
		}
		if rev <= 0 {
			c.rep.problem("key %q: revision %d", clip(key), rev)
			return
		}
		c.seen(rev, fmt.Sprintf("key %q", clip(key)))
	case string(logBucket):
		c.rep.LogEntries++
		if len(key) != 8 {
			c.rep.problem("log entry with a %d-byte key, want 8", len(key))
			return
		}
		rev := int64(binary.BigEndian.Uint64(key))
		if rev <= 0 {
			c.rep.problem("log entry at revision %d", rev)
			return
		}
		if _, err := decodeLog(rev, val); err != nil {
			c.rep.problem("%v", err)
			return
		}
		c.seen(rev, fmt.Sprintf("log entry %d", rev))
	case string(metaBucket):
		switch string(key) {
		case string(revKey):
			if len(val) != 8 {
				c.rep.problem("corrupt revision counter (%d bytes)", len(val))
				return
			}
			c.metaRev, c.haveRev = int64(binary.BigEndian.Uint64(val)), true
			c.rep.Revision = c.metaRev
		case string(idKey):
			if !validID(val) {
				c.rep.problem("corrupt store ID %q", clip(val))
				return
			}
			c.rep.ID = string(val)
		default:
			c.rep.warn("unknown meta key %q", clip(key))
		}
	}
}

func (c *checker) seen(rev int64, what string) {
	if rev > c.maxRev {
		c.maxRev, c.maxRevWhat = rev, what
	}
}

// storeChecks checks what spans the buckets: revisions and buckets present.
func (c *checker) storeChecks() {
	_, data := c.buckets[string(dataBucket)]
	_, meta := c.buckets[string(metaBucket)]
	_, log := c.buckets[string(logBucket)]
	switch {
	case !data && !meta && !log && len(c.buckets) == 0:
		c.rep.warn("the file holds no store yet (none of its buckets): Open makes them")
		return
	case !data && !meta && !log:
		c.rep.problem("the file holds no store but buckets of another program: it is not a vgrid store")
		return
	case !data || !meta:
		c.rep.problem("the store's buckets are incomplete (data %v, meta %v, log %v)", data, meta, log)
		return
	}
	if !c.haveRev && (c.rep.Keys > 0 || c.rep.LogEntries > 0) {
		c.rep.problem("the revision counter is missing, yet the store holds %d keys", c.rep.Keys)
		return
	}
	if c.maxRev > c.metaRev {
		c.rep.problem("%s has revision %d, above the store's revision %d", c.maxRevWhat, c.maxRev, c.metaRev)
	}
}

// freelist reads the free pages of meta m into c.state; false if the
// freelist cannot be trusted (leaks then cannot be told).
func (c *checker) freelist(m meta) bool {
	if m.freelist == noFreelist {
		c.rep.warn("the freelist is not stored in the file (bbolt rebuilds it): free pages are not checked")
		return false
	}
	pg, ok := c.page(m.freelist, "the meta page (as the freelist)")
	if !ok {
		return false
	}
	if f := ne.Uint16(pg[8:]); f != flagFreelist {
		c.rep.problem("freelist page %d: page type %#x, want a freelist page", m.freelist, f)
		return false
	}
	at, n := pageHeaderSize, uint64(ne.Uint16(pg[10:]))
	if n == 0xFFFF {
		if len(pg) < pageHeaderSize+8 {
			c.rep.problem("freelist page %d: cut short", m.freelist)
			return false
		}
		n, at = ne.Uint64(pg[at:]), at+8
	}
	if n > uint64(len(pg)-at)/8 {
		c.rep.problem("freelist page %d: %d free pages do not fit in it", m.freelist, n)
		return false
	}
	for i := range n {
		id := ne.Uint64(pg[at+int(i)*8:])
		switch {
		case id < 2 || id >= c.hwm:
			c.rep.problem("the freelist holds page %d, outside pages 2..%d", id, c.hwm-1)
			return false
		case c.state[id]&pageFree != 0:
			c.rep.problem("the freelist holds page %d twice", id)
			return false
		}
		c.state[id] |= pageFree
	}
	c.rep.FreePages = int(n)
	return true
}

// leaks reports pages both used and free, and pages neither.
func (c *checker) leaks() {
	var both, neither []uint64
	for id := uint64(2); id < c.hwm; id++ {
		switch c.state[id] {
		case pageUsed | pageFree:
			both = append(both, id)
		case 0:
			neither = append(neither, id)
		}
	}
	if len(both) > 0 {
		c.rep.problem("%d pages are in use and on the freelist too: %s", len(both), pageList(both))
	}
	if len(neither) > 0 {
		c.rep.problem("%d pages are neither in use nor free (lost from the tree): %s", len(neither), pageList(neither))
	}
}

func pageList(ids []uint64) string {
	const n = 10
	var b strings.Builder
	for i, id := range ids[:min(len(ids), n)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, id)
	}
	if len(ids) > n {
		b.WriteString(", ...")
	}
	return b.String()
}

// clip shortens a key or value for a message.
func clip(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
