package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vgrid/internal/hypervisor"
)

// Saving an instance's disk as an image of its own (SaveImage).
//
// The disk is a qcow2 overlay on the image's base; the saved image is one
// qcow2 file with no backing file, the base flattened in, compressed
// (zlib clusters: the file travels to the image repository and to every
// host that uses it, and is written once; QEMU reads compressed clusters
// as any other and writes a guest's changes to its overlay).
//
//   - No process (stopped, suspended): qemu-img convert -c -O qcow2 of the
//     overlay, which reads through its backing chain. Its -p progress is
//     parsed for the caller's.
//   - Running: the guest is asked to sync (its agent runs sync through
//     Exec), then a point-in-time copy is taken while it goes on: an empty
//     qcow2 of the disk's virtual size is made with qemu-img create, added
//     to QEMU (blockdev-add) and filled by a backup job (blockdev-backup
//     sync=full compress of the root drive): QEMU copies a block before the
//     guest overwrites it, so the copy is the disk as it was when the job
//     began. drive-backup, which would do both steps, is deprecated in
//     QEMU 7.2. The job is awaited (query-jobs, woken by JOB_STATUS_CHANGE
//     events), then dismissed and the node removed, which closes the file.
//
// The instance's lock is held throughout, so no Start, Stop, Suspend,
// Resize or migration runs under a save: they wait until it ends. A
// driver that died mid-save leaves the job and node in QEMU (the job
// finishes by itself); the next SaveImage of the instance removes them.
// The file at dst is the caller's to remove in that case.

// Names of the backup job and its target node in QEMU.
const (
	saveJob  = "vgrid-save"
	saveNode = "vgrid-save"
)

// Times of a save.
const (
	// savePoll is how often a running save's job is asked for progress.
	savePoll = 500 * time.Millisecond
	// saveSyncTimeout bounds the guest's sync before the copy.
	saveSyncTimeout = time.Minute
	// saveUndoTimeout bounds removing a failed save's job and node.
	saveUndoTimeout = 10 * time.Second
)

// SaveImage implements hypervisor.Driver (see the top of save.go).
func (d *Driver) SaveImage(ctx context.Context, id string, dst string, progress func(done, total int64)) (hypervisor.SaveResult, error) {
	start := time.Now()
	if !hypervisor.ValidID(id) {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %q: %w", id, hypervisor.ErrNotFound)
	}
	if !filepath.IsAbs(dst) {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w: destination %q is not an absolute path", id, hypervisor.ErrInvalid, dst)
	}
	if _, err := os.Lstat(dst); err == nil {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w: destination %s exists", id, hypervisor.ErrInvalid, dst)
	}
	if d.closed() {
		return hypervisor.SaveResult{}, ErrClosed
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	defer d.locks.Lock(id)()
	p := d.paths(id)
	if _, err := os.Stat(p.Spec); err != nil {
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, hypervisor.ErrNotFound)
	}
	if hasIncoming(p) {
		// Waiting for a guest, or holding one that came but is not
		// finished: its disk is not (yet) the instance's.
		return hypervisor.SaveResult{}, errIncoming("save image of", id)
	}
	// A suspend, resume or migration a dead driver left half done is
	// settled first; one still under way is not (it holds the lock).
	d.recoverOp(ctx, id, p, true)
	if it, err := readIntent(p); err != nil || it != nil {
		what := "an unreadable intent"
		if it != nil {
			what = it.Op
		}
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w: %s is not settled", id, hypervisor.ErrBusy, what)
	}
	var (
		res hypervisor.SaveResult
		err error
	)
	if pid := readPID(p.PIDFile); alive(pid, marker(p)) {
		res, err = d.saveRunning(ctx, id, p, pid, dst, progress)
	} else {
		d.settle(id, p)
		res.Consistency = hypervisor.SavedStopped
		if _, ok := suspendedState(p); ok {
			res.Consistency = hypervisor.SavedSuspended
		}
		err = d.convertDisk(ctx, p.Disk, dst, progress)
	}
	if err != nil {
		_ = os.Remove(dst)
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, err)
	}
	if err := syncFile(dst); err != nil {
		_ = os.Remove(dst)
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		_ = os.Remove(dst)
		return hypervisor.SaveResult{}, fmt.Errorf("save image of %s: %w", id, err)
	}
	res.Bytes, res.Took = st.Size(), time.Since(start)
	d.log.Info("saved disk as image", "instance", id, "dst", dst, "bytes", res.Bytes,
		"took", res.Took.Round(time.Millisecond), "consistency", res.Consistency)
	return res, nil
}

// saveRunning copies the disk of the running instance (QEMU pid) at one
// point in time into a new qcow2 at dst, the guest going on.
func (d *Driver) saveRunning(ctx context.Context, id string, p Paths, pid int, dst string, progress func(done, total int64)) (hypervisor.SaveResult, error) {
	v := d.watchPID(id, p, pid)
	c, err := v.qmpClient(ctx)
	if err != nil {
		return hypervisor.SaveResult{}, err
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &status); err != nil {
		return hypervisor.SaveResult{}, err
	}
	switch status.Status {
	case "running", "paused":
	default:
		// inmigrate, postmigrate, finish-migrate, save-vm, ...: QEMU is
		// moving the guest's state, or no longer holds its disk.
		return hypervisor.SaveResult{}, fmt.Errorf("%w: qemu is %s", hypervisor.ErrBusy, status.Status)
	}
	var mi migrateInfo
	if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
		return hypervisor.SaveResult{}, err
	}
	if migrating(mi.Status) {
		return hypervisor.SaveResult{}, fmt.Errorf("%w: a migration is %s", hypervisor.ErrBusy, mi.Status)
	}
	// What a driver that died mid-save left.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveUndoTimeout)
	d.dropSave(uctx, v, c)
	cancel()

	size, err := rootVirtualSize(ctx, c)
	if err != nil {
		return hypervisor.SaveResult{}, err
	}
	res := hypervisor.SaveResult{Consistency: hypervisor.SavedCrash}
	if status.Status == "running" {
		if err := d.guestSync(ctx, id); err != nil {
			v.log.Warn("the guest did not sync before its disk was saved: the copy is only crash-consistent", "err", err)
		} else {
			res.Consistency = hypervisor.SavedCrashSynced
		}
	}
	if err := d.createTarget(ctx, dst, size); err != nil {
		return hypervisor.SaveResult{}, err
	}
	// Job events wake the wait (vm.qmpClient's onEvent); one left from
	// before is dropped.
	wake := v.migrationWake()
	select {
	case <-wake:
	default:
	}
	err = d.backup(ctx, c, dst, wake, progress)
	uctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), saveUndoTimeout)
	d.dropSave(uctx, v, c)
	cancel()
	if err != nil {
		return hypervisor.SaveResult{}, err
	}
	return res, nil
}

// guestSync has the guest write its page cache back to its disk.
func (d *Driver) guestSync(ctx context.Context, id string) error {
	sctx, cancel := context.WithTimeout(ctx, saveSyncTimeout)
	defer cancel()
	var out bytes.Buffer
	r, err := d.Exec(sctx, id, hypervisor.ExecRequest{Argv: []string{"sync"}, Timeout: saveSyncTimeout},
		func(_ string, b []byte) error {
			if out.Len() < 1024 {
				out.Write(b)
			}
			return nil
		})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return fmt.Errorf("sync exited %d: %s %s", r.ExitCode, r.Message, strings.TrimSpace(out.String()))
	}
	return nil
}

// rootVirtualSize is the root disk's virtual size as QEMU has it (a
// resize may have grown it since the overlay was made).
func rootVirtualSize(ctx context.Context, c *qmpClient) (int64, error) {
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			Image struct {
				VirtualSize int64 `json:"virtual-size"`
			} `json:"image"`
		} `json:"inserted"`
	}
	if err := c.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return 0, err
	}
	for _, b := range blocks {
		if b.Device == rootDrive && b.Inserted != nil && b.Inserted.Image.VirtualSize > 0 {
			return b.Inserted.Image.VirtualSize, nil
		}
	}
	return 0, fmt.Errorf("qemu has no %q drive to save", rootDrive)
}

// createTarget makes the empty standalone qcow2 a backup fills.
func (d *Driver) createTarget(ctx context.Context, dst string, size int64) error {
	img, err := d.qemuImg()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, img, "create", "-q", "-f", "qcow2", dst, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create the image file: qemu-img create: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// backup copies the root drive into the qcow2 at dst with a backup job
// and waits for it to end.
func (d *Driver) backup(ctx context.Context, c *qmpClient, dst string, wake <-chan struct{}, progress func(done, total int64)) error {
	node := map[string]any{"driver": "qcow2", "node-name": saveNode,
		"file": map[string]any{"driver": "file", "filename": dst}}
	if err := c.Execute(ctx, "blockdev-add", node, nil); err != nil {
		return fmt.Errorf("open the image file in qemu: %w", err)
	}
	job := map[string]any{"job-id": saveJob, "device": rootDrive, "target": saveNode, "sync": "full",
		"compress": true, "auto-dismiss": false}
	if err := c.Execute(ctx, "blockdev-backup", job, nil); err != nil {
		return fmt.Errorf("copy the disk: %w", err)
	}
	for {
		j, err := querySaveJob(ctx, c)
		if err != nil {
			return fmt.Errorf("copy the disk: %w", err)
		}
		switch j.Status {
		case "concluded":
			if j.Error != "" {
				return fmt.Errorf("copy the disk: %s", j.Error)
			}
			progress(j.Total, j.Total)
			return nil
		case "aborting", "null":
			return fmt.Errorf("copy the disk: the job ended %s: %s", j.Status, j.Error)
		}
		progress(j.Current, j.Total)
		if err := waitWake(ctx, wake, savePoll); err != nil {
			return fmt.Errorf("copy the disk: %w", err)
		}
	}
}

// errNoSaveJob: QEMU has no save job.
var errNoSaveJob = errors.New("the save job is gone")

func querySaveJob(ctx context.Context, c *qmpClient) (jobInfo, error) {
	var jobs []jobInfo
	if err := c.Execute(ctx, "query-jobs", nil, &jobs); err != nil {
		return jobInfo{}, err
	}
	for _, j := range jobs {
		if j.ID == saveJob {
			return j, nil
		}
	}
	return jobInfo{}, errNoSaveJob
}

// dropSave removes the save job and target node from QEMU, if there are
// any: the job cancelled, dismissed, the node deleted (which closes its
// file). Errors are logged.
func (d *Driver) dropSave(ctx context.Context, v *vm, c *qmpClient) {
	if j, err := querySaveJob(ctx, c); err == nil {
		if j.Status != "concluded" {
			if err := c.Execute(ctx, "block-job-cancel", map[string]any{"device": saveJob, "force": true}, nil); err != nil {
				v.log.Warn("cancel the save job", "err", err)
			}
			for {
				j, err := querySaveJob(ctx, c)
				if err != nil || j.Status == "concluded" || ctx.Err() != nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		if err := c.Execute(ctx, "job-dismiss", map[string]any{"id": saveJob}, nil); err != nil {
			v.log.Warn("dismiss the save job", "err", err)
		}
	}
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err := c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		v.log.Warn("list block nodes", "err", err)
		return
	}
	for _, n := range nodes {
		if n.NodeName == saveNode {
			if err := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": saveNode}, nil); err != nil {
				v.log.Warn("remove the save's node", "err", err)
			}
			return
		}
	}
}

// convertDisk writes the disk at src (no process has it open), read
// through its backing chain, as a standalone compressed qcow2 at dst.
func (d *Driver) convertDisk(ctx context.Context, src, dst string, progress func(done, total int64)) error {
	total, err := qcow2VirtualSize(src)
	if err != nil {
		return err
	}
	img, err := d.qemuImg()
	if err != nil {
		return err
	}
	progress(0, total)
	cmd := exec.CommandContext(ctx, img, "convert", "-p", "-c", "-f", "qcow2", "-O", "qcow2", src, dst)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu-img convert: %w", err)
	}
	readConvertProgress(stdout, func(pct float64) { progress(int64(pct/100*float64(total)), total) })
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("qemu-img convert: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	progress(total, total)
	return nil
}

// readConvertProgress reads qemu-img's -p output, "    (12.34/100%)"
// lines ended by carriage returns, until EOF, calling pct for each.
func readConvertProgress(r io.Reader, pct func(float64)) {
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		if v, ok := parseConvertProgress(sc.Text()); ok {
			pct(v)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// parseConvertProgress reads one "(12.34/100%)" of qemu-img -p.
func parseConvertProgress(line string) (float64, bool) {
	s := strings.TrimSpace(line)
	s, ok := strings.CutPrefix(s, "(")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "/100%)")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > 100 {
		return 0, false
	}
	return v, true
}

// qcow2VirtualSize reads the virtual size from a qcow2 file's header.
func qcow2VirtualSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, fmt.Errorf("read the disk's header: %w", err)
	}
	if !bytes.Equal(h[:4], []byte{'Q', 'F', 'I', 0xfb}) {
		return 0, fmt.Errorf("disk %s is not qcow2", path)
	}
	size := binary.BigEndian.Uint64(h[24:32])
	if size == 0 || size > 1<<62 {
		return 0, fmt.Errorf("disk %s: virtual size %d", path, size)
	}
	return int64(size), nil
}

// qemuImg finds qemu-img beside QEMU, else in PATH.
func (d *Driver) qemuImg() (string, error) {
	img := filepath.Join(filepath.Dir(d.opts.QEMUPath), "qemu-img")
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	img, err := exec.LookPath("qemu-img")
	if err != nil {
		return "", fmt.Errorf("qemu-img: %w", err)
	}
	return img, nil
}
