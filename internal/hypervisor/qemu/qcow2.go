package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// A qcow2 overlay written in Go, so that starting a workspace does not
// spawn qemu-img (about 30 ms a start). It is what
//
//	qemu-img create -f qcow2 -b BACKING -F FORMAT FILE SIZE
//
// makes: an empty qcow2 version 3 image whose every cluster is read from
// the backing file until the guest writes it. The layout follows the qcow2
// specification, docs/interop/qcow2.txt in QEMU's source ("QCOW2 Image
// Format"); all numbers there are big-endian.
//
//	cluster 0            the header (104 bytes), the header extensions
//	                     (backing file format, end), the backing file name
//	cluster 1            the refcount table: one entry, refcount block at cluster 2
//	cluster 2            the refcount block: refcount 1 for clusters 0..3+L1-1
//	clusters 3..3+L1-1   the L1 table, all zero (nothing allocated)
//
// Clusters are 64 KiB (cluster_bits 16) and refcounts 16 bits
// (refcount_order 4), qemu-img's defaults. The file is written sparse:
// only the non-zero bytes are written, the rest is a hole.

const (
	qcow2Magic         = 0x514649fb // "QFI\xfb"
	qcow2Version       = 3
	qcow2ClusterBits   = 16
	qcow2ClusterSize   = 1 << qcow2ClusterBits
	qcow2RefcountOrder = 4 // 16-bit refcounts
	qcow2HeaderLen     = 104
	// Header extension types.
	qcow2ExtEnd           = 0x00000000
	qcow2ExtBackingFormat = 0xe2792aca
	// qcow2MaxBackingName is the longest backing file name QEMU accepts.
	qcow2MaxBackingName = 1023
	// qcow2MaxL1Bytes is QEMU's limit on the size of the L1 table (32 MiB,
	// which at 64 KiB clusters is a virtual size of 2 PiB).
	qcow2MaxL1Bytes = 32 << 20
)

// qcow2Layout is the metadata of an empty overlay: the bytes to write at
// their offsets, and the file's length (the rest is zero).
type qcow2Layout struct {
	header   []byte // at 0
	refTable []byte // at 1 cluster
	refBlock []byte // at 2 clusters
	fileSize int64
}

// qcow2Overlay lays out an empty qcow2 image of size bytes (rounded up to
// a 512-byte sector, as qemu-img does) on backing, whose format is
// backingFormat ("raw" or "qcow2"). backing is written as given; QEMU
// resolves a relative name against the overlay's directory.
func qcow2Overlay(backing, backingFormat string, size int64) (qcow2Layout, error) {
	switch {
	case backing == "":
		return qcow2Layout{}, errors.New("qcow2: no backing file")
	case len(backing) > qcow2MaxBackingName:
		return qcow2Layout{}, fmt.Errorf("qcow2: backing file name of %d bytes (at most %d)", len(backing), qcow2MaxBackingName)
	case backingFormat != "raw" && backingFormat != "qcow2":
		return qcow2Layout{}, fmt.Errorf("qcow2: backing format %q: want raw or qcow2", backingFormat)
	case size <= 0:
		return qcow2Layout{}, fmt.Errorf("qcow2: virtual size %d", size)
	}
	size = (size + 511) &^ 511
	// Each L2 table is one cluster of 8-byte entries, each mapping a cluster.
	const l2Entries = qcow2ClusterSize / 8
	const l2Span = l2Entries * qcow2ClusterSize // 512 MiB
	l1Entries := (size + l2Span - 1) / l2Span
	if l1Entries*8 > qcow2MaxL1Bytes {
		return qcow2Layout{}, fmt.Errorf("qcow2: virtual size %d is too large", size)
	}
	l1Clusters := (l1Entries*8 + qcow2ClusterSize - 1) / qcow2ClusterSize
	const (
		refTableCluster = 1
		refBlockCluster = 2
		l1Cluster       = 3
	)
	clusters := l1Cluster + l1Clusters
	// One refcount block holds cluster_size*8/2^refcount_order entries:
	// 32768 clusters, far more than the 3 + (at most 512) clusters here.
	if clusters > qcow2ClusterSize*8>>qcow2RefcountOrder {
		return qcow2Layout{}, fmt.Errorf("qcow2: virtual size %d is too large", size)
	}

	be := binary.BigEndian
	h := make([]byte, qcow2HeaderLen, 256+len(backing))
	be.PutUint32(h[0:], qcow2Magic)
	be.PutUint32(h[4:], qcow2Version)
	// 8: backing_file_offset and 16: backing_file_size, filled in below.
	be.PutUint32(h[20:], qcow2ClusterBits)
	be.PutUint64(h[24:], uint64(size))
	// 32: crypt_method 0.
	be.PutUint32(h[36:], uint32(l1Entries))
	be.PutUint64(h[40:], l1Cluster*qcow2ClusterSize)       // l1_table_offset
	be.PutUint64(h[48:], refTableCluster*qcow2ClusterSize) // refcount_table_offset
	be.PutUint32(h[56:], 1)                                // refcount_table_clusters
	// 60: nb_snapshots 0, 64: snapshots_offset 0, 72: incompatible, 80:
	// compatible and 88: autoclear features, all 0.
	be.PutUint32(h[96:], qcow2RefcountOrder)
	be.PutUint32(h[100:], qcow2HeaderLen)
	// Header extensions: type, length, data padded to 8 bytes.
	h = qcow2Ext(h, qcow2ExtBackingFormat, []byte(backingFormat))
	h = qcow2Ext(h, qcow2ExtEnd, nil)
	be.PutUint64(h[8:], uint64(len(h)))
	be.PutUint32(h[16:], uint32(len(backing)))
	h = append(h, backing...)

	refTable := make([]byte, 8)
	be.PutUint64(refTable, refBlockCluster*qcow2ClusterSize)
	refBlock := make([]byte, 2*clusters)
	for i := range clusters {
		be.PutUint16(refBlock[2*i:], 1)
	}
	return qcow2Layout{header: h, refTable: refTable, refBlock: refBlock, fileSize: clusters * qcow2ClusterSize}, nil
}

// qcow2Ext appends a header extension.
func qcow2Ext(h []byte, typ uint32, data []byte) []byte {
	h = binary.BigEndian.AppendUint32(h, typ)
	h = binary.BigEndian.AppendUint32(h, uint32(len(data)))
	h = append(h, data...)
	for len(h)%8 != 0 {
		h = append(h, 0)
	}
	return h
}

// writeFile writes the image to f, which must be empty.
func (l qcow2Layout) writeFile(f *os.File) error {
	for _, w := range []struct {
		b   []byte
		off int64
	}{{l.header, 0}, {l.refTable, 1 * qcow2ClusterSize}, {l.refBlock, 2 * qcow2ClusterSize}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	return f.Truncate(l.fileSize)
}

// writeQcow2Overlay creates path (which must not exist) as an empty qcow2
// overlay of size bytes on backing. A size of 0 takes the backing file's
// virtual size, as qemu-img create does without a size.
func writeQcow2Overlay(path, backing, backingFormat string, size int64) error {
	if size == 0 {
		var err error
		if size, err = imageVirtualSize(backing, backingFormat); err != nil {
			return err
		}
	}
	l, err := qcow2Overlay(backing, backingFormat, size)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := l.writeFile(f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// imageVirtualSize returns the size a guest sees of a raw or qcow2 image:
// a raw file's length rounded up to a 512-byte sector (as QEMU's block
// layer counts it), or the size field of a qcow2 header.
func imageVirtualSize(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	switch format {
	case "raw":
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return (st.Size() + 511) &^ 511, nil
	case "qcow2":
		var h [32]byte
		if _, err := io.ReadFull(f, h[:]); err != nil {
			return 0, fmt.Errorf("%s: qcow2 header: %w", path, err)
		}
		be := binary.BigEndian
		if be.Uint32(h[0:]) != qcow2Magic {
			return 0, fmt.Errorf("%s: not a qcow2 image", path)
		}
		if v := be.Uint32(h[4:]); v != 2 && v != 3 {
			return 0, fmt.Errorf("%s: qcow2 version %d", path, v)
		}
		size := be.Uint64(h[24:])
		if size == 0 || size > 1<<62 {
			return 0, fmt.Errorf("%s: qcow2 virtual size %d", path, size)
		}
		return int64(size), nil
	}
	return 0, fmt.Errorf("%s: format %q: want raw or qcow2", path, format)
}

// qcow2 feature bits (header offset 72, incompatible features) that
// setQcow2Backing refuses: an image marked corrupt, or one whose data is
// in an external file (its backing rules differ).
const (
	qcow2IncompatCorrupt      = 1 << 1
	qcow2IncompatExternalData = 1 << 2
)

// setQcow2Backing points the qcow2 image at path to another backing file,
// backing (written as given), of backingFormat, and changes nothing else:
// what
//
//	qemu-img rebase -u -b BACKING -F FORMAT FILE
//
// does ("unsafe" rebase: the new backing file must have the same contents
// as the old, e.g. the same image in another host's cache). The header
// extensions other than the backing format are kept; they, the new backing
// format extension and the name are written after the header, within the
// first cluster, where QEMU wants them. The rewrite is one write of the
// start of the file, then fsync.
func setQcow2Backing(path, backing, backingFormat string) error {
	switch {
	case backing == "":
		return errors.New("qcow2: no backing file")
	case len(backing) > qcow2MaxBackingName:
		return fmt.Errorf("qcow2: backing file name of %d bytes (at most %d)", len(backing), qcow2MaxBackingName)
	case backingFormat != "raw" && backingFormat != "qcow2":
		return fmt.Errorf("qcow2: backing format %q: want raw or qcow2", backingFormat)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	be := binary.BigEndian
	var h [qcow2HeaderLen]byte
	if _, err := io.ReadFull(f, h[:72]); err != nil {
		return fmt.Errorf("%s: qcow2 header: %w", path, err)
	}
	if be.Uint32(h[0:]) != qcow2Magic {
		return fmt.Errorf("%s: not a qcow2 image", path)
	}
	version := be.Uint32(h[4:])
	hdrLen := uint32(72)
	switch version {
	case 2:
	case 3:
		if _, err := io.ReadFull(f, h[72:]); err != nil {
			return fmt.Errorf("%s: qcow2 header: %w", path, err)
		}
		hdrLen = be.Uint32(h[100:])
		if incompat := be.Uint64(h[72:]); incompat&(qcow2IncompatCorrupt|qcow2IncompatExternalData) != 0 {
			return fmt.Errorf("%s: qcow2 incompatible features %#x (corrupt or external data): not rebased", path, incompat)
		}
	default:
		return fmt.Errorf("%s: qcow2 version %d", path, version)
	}
	clusterBits := be.Uint32(h[20:])
	if clusterBits < 9 || clusterBits > 21 {
		return fmt.Errorf("%s: qcow2 cluster bits %d", path, clusterBits)
	}
	cluster := 1 << clusterBits
	if hdrLen < 72 || int(hdrLen) > cluster {
		return fmt.Errorf("%s: qcow2 header length %d", path, hdrLen)
	}
	first := make([]byte, cluster)
	n, err := f.ReadAt(first, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	first = first[:n]
	if n < int(hdrLen) {
		return fmt.Errorf("%s: qcow2 header: short file", path)
	}
	// The extensions, as they are; the end of what is in use.
	out := append([]byte(nil), first[:hdrLen]...)
	used := int(hdrLen)
	for off := int(hdrLen); ; {
		if off+8 > len(first) {
			return fmt.Errorf("%s: qcow2 header extensions run past the first cluster", path)
		}
		typ, l := be.Uint32(first[off:]), int(be.Uint32(first[off+4:]))
		end := off + 8 + (l+7)&^7
		if end > len(first) {
			return fmt.Errorf("%s: qcow2 header extension %#x runs past the first cluster", path, typ)
		}
		if typ == qcow2ExtEnd {
			used = max(used, off+8)
			break
		}
		if typ != qcow2ExtBackingFormat {
			out = append(out, first[off:end]...)
		}
		off, used = end, end
	}
	if oldOff, oldLen := be.Uint64(first[8:]), be.Uint32(first[16:]); oldOff != 0 {
		if oldOff+uint64(oldLen) > uint64(len(first)) {
			return fmt.Errorf("%s: qcow2 backing file name past the first cluster", path)
		}
		used = max(used, int(oldOff)+int(oldLen))
	}
	out = qcow2Ext(out, qcow2ExtBackingFormat, []byte(backingFormat))
	out = qcow2Ext(out, qcow2ExtEnd, nil)
	be.PutUint64(out[8:], uint64(len(out)))
	be.PutUint32(out[16:], uint32(len(backing)))
	out = append(out, backing...)
	if len(out) > cluster {
		return fmt.Errorf("%s: qcow2 header, extensions and a backing file name of %d bytes do not fit in a cluster", path, len(backing))
	}
	// Zero what the old extensions and name used beyond the new end.
	for len(out) < used {
		out = append(out, 0)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return err
	}
	return f.Sync()
}
