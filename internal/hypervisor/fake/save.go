package fake

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/hypervisor"
)

// Saving an instance's disk as an image (SaveImage). The fake writes a
// real qcow2 file with no backing file (version 3, 64 KiB clusters, no
// compression): its virtual size is the instance's disk (the quantum's,
// at least the image's MinDisk), and what the guest wrote (WriteDisk) is
// its content from offset 0, so that qemu-img check passes and a real
// QEMU would read it. The copy takes simulated time: the disk's data at
// saveRate, reported in saveSteps steps.

const (
	saveRate  = 1 << 30 // bytes/s
	saveSteps = 4
	// maxSaveData bounds what the fake saves of a guest's writes (one L2
	// table's reach).
	maxSaveData = l2Entries * clusterSize
)

// Layout of the fake's qcow2 files.
const (
	clusterBits = 16
	clusterSize = 1 << clusterBits
	l2Entries   = clusterSize / 8
	qcow2Copied = uint64(1) << 63 // the cluster's refcount is 1
)

// SaveImage implements hypervisor.Driver.
func (d *Driver) SaveImage(ctx context.Context, id string, dst string, progress func(done, total int64)) (hypervisor.SaveResult, error) {
	start := time.Now()
	f, closed := d.state()
	if closed {
		return hypervisor.SaveResult{}, ErrClosed
	}
	if !filepath.IsAbs(dst) {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w: destination %q is not an absolute path", id, hypervisor.ErrInvalid, dst)
	}
	if _, err := os.Lstat(dst); err == nil {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w: destination %s exists", id, hypervisor.ErrInvalid, dst)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	h := d.host
	h.mu.Lock()
	in := h.insts[id]
	switch {
	case in == nil:
		h.mu.Unlock()
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %q: %w", id, hypervisor.ErrNotFound)
	case markOf(in) != nil: // migrate.go
		h.mu.Unlock()
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, hypervisor.ErrIncoming)
	}
	res := hypervisor.SaveResult{}
	switch in.state {
	case hypervisor.InstanceStopped:
		res.Consistency = hypervisor.SavedStopped
	case hypervisor.InstanceSuspended:
		res.Consistency = hypervisor.SavedSuspended
	default:
		res.Consistency = hypervisor.SavedCrash
		if v := in.view(time.Now()); v.Guest != nil && in.state == hypervisor.InstanceRunning {
			res.Consistency = hypervisor.SavedCrashSynced
		}
	}
	data := append([]byte(nil), in.disk...)
	size := int64(max(in.spec.Quantum.Disk, in.spec.Image.MinDisk))
	h.mu.Unlock()
	if f.SaveErr != nil {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, f.SaveErr)
	}
	if len(data) > maxSaveData {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: the fake saves at most %d bytes of a guest's writes, it wrote %d", id, maxSaveData, len(data))
	}
	size = max(size, int64(len(data)), clusterSize)
	// Simulated time: the data the copy reads.
	step := time.Duration(len(data)) * time.Second / saveRate / saveSteps
	for i := range saveSteps {
		progress(size*int64(i)/saveSteps, size)
		select {
		case <-ctx.Done():
			return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, ctx.Err())
		case <-time.After(step):
		}
	}
	if err := writeQcow2(dst, size, data); err != nil {
		_ = os.Remove(dst)
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, err)
	}
	progress(size, size)
	st, err := os.Stat(dst)
	if err != nil {
		_ = os.Remove(dst)
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, err)
	}
	res.Bytes, res.Took = st.Size(), time.Since(start)
	return res, nil
}

// writeQcow2 writes a standalone qcow2 of virtual size size whose content
// is data from offset 0 (zeros after it). Clusters: 0 header, 1 refcount
// table, 2 refcount block, 3 L1 table, 4 the L2 table (when there is
// data), then the data clusters that are not all zeros.
func writeQcow2(path string, size int64, data []byte) error {
	if size <= 0 || int64(len(data)) > size || len(data) > maxSaveData {
		return errors.New("qcow2: bad size")
	}
	l1Size := (size + l2Entries*clusterSize - 1) / (l2Entries * clusterSize)
	if l1Size*8 > clusterSize {
		return fmt.Errorf("qcow2: a virtual size of %d needs more than one L1 cluster", size)
	}
	const (
		refTable = 1 * clusterSize
		refBlock = 2 * clusterSize
		l1Table  = 3 * clusterSize
		l2Table  = 4 * clusterSize
	)
	clusters := int64(4)
	l2 := make([]byte, clusterSize)
	var dataClusters [][]byte
	if len(data) > 0 {
		clusters++ // the L2 table
		for i := 0; i*clusterSize < len(data); i++ {
			c := make([]byte, clusterSize)
			copy(c, data[i*clusterSize:])
			if allZero(c) {
				continue // an unallocated cluster reads as zeros
			}
			off := uint64(clusters) * clusterSize
			binary.BigEndian.PutUint64(l2[i*8:], off|qcow2Copied)
			dataClusters = append(dataClusters, c)
			clusters++
		}
	}
	if clusters > clusterSize/2 {
		return errors.New("qcow2: more clusters than one refcount block counts")
	}
	out := make([]byte, 0, clusters*clusterSize)
	// Header (version 3, 104 bytes) and the end of its extensions.
	hdr := make([]byte, clusterSize)
	be := binary.BigEndian
	copy(hdr, "QFI\xfb")
	be.PutUint32(hdr[4:], 3)
	be.PutUint32(hdr[20:], clusterBits)
	be.PutUint64(hdr[24:], uint64(size))
	be.PutUint32(hdr[36:], uint32(l1Size))
	be.PutUint64(hdr[40:], l1Table)
	be.PutUint64(hdr[48:], refTable)
	be.PutUint32(hdr[56:], 1) // refcount table clusters
	be.PutUint32(hdr[96:], 4) // refcount order: 16-bit refcounts
	be.PutUint32(hdr[100:], 104)
	out = append(out, hdr...)
	rt := make([]byte, clusterSize)
	be.PutUint64(rt, refBlock)
	out = append(out, rt...)
	rb := make([]byte, clusterSize)
	for i := range clusters {
		be.PutUint16(rb[i*2:], 1)
	}
	out = append(out, rb...)
	l1 := make([]byte, clusterSize)
	if len(data) > 0 {
		be.PutUint64(l1, l2Table|qcow2Copied)
	}
	out = append(out, l1...)
	if len(data) > 0 {
		out = append(out, l2...)
		for _, c := range dataClusters {
			out = append(out, c...)
		}
	}
	tmp := path + ".part"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
