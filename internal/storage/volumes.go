package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// volumes.go: the volume operations. Each runs with d.mu held (lockUp),
// so operations and restarts never interleave.

func (d *Daemon) volPath(name string) string {
	return filepath.Join(d.volDir, name+".qcow2")
}

func exportID(name string) string { return "exp-" + name }

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// do runs op with the daemon up and d.mu held. If the daemon dies under
// op (its QMP connection closes), op runs again on the next incarnation:
// every operation checks the state it starts from, so a second run
// finishes what the first began.
func (d *Daemon) do(ctx context.Context, op func(q *qmpClient) error) error {
	for {
		q, err := d.lockUp(ctx)
		if err != nil {
			return err
		}
		p := d.p
		err = op(q)
		d.mu.Unlock()
		if !errors.Is(err, errQMPClosed) || ctx.Err() != nil {
			return err
		}
		d.log.Warn("storage daemon died during an operation; trying again once it is back", "err", err)
		select {
		case <-p.exited:
		case <-time.After(stopWait):
			// QMP is gone but the process runs on: wedged. Kill it;
			// the supervisor starts a new one.
			d.log.Error("storage daemon lost its QMP connection but runs on; killing it", "pid", p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
		case <-ctx.Done():
			return err
		}
		for {
			select {
			case <-p.exited:
			case <-ctx.Done():
				return err
			}
			d.mu.Lock()
			same := d.p == p
			d.mu.Unlock()
			if !same {
				break
			}
			time.Sleep(10 * time.Millisecond) // the supervisor has yet to see the exit
		}
	}
}

// nextID is a fresh node or job id of this incarnation (qemu limits node
// names to 31 characters, so volume names cannot be used).
func (d *Daemon) nextID(prefix string) string {
	d.seq++
	return prefix + strconv.Itoa(d.seq)
}

// volumeSize is the virtual size of an existing volume (ErrNotFound if
// there is none).
func (d *Daemon) volumeSize(field, name string) (int64, error) {
	size, err := qcow2Size(d.volPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%s: %q: %w", field, name, ErrNotFound)
	}
	return size, err
}

// cacheOpts makes a flush reach the disk: writeback through the host's
// page cache, but flushes are not ignored.
var cacheOpts = map[string]any{"direct": false, "no-flush": false}

// openNodeLocked opens the qcow2 file path as a block node and checks
// that flushes are honoured.
func (d *Daemon) openNodeLocked(ctx context.Context, q *qmpClient, path string) (string, error) {
	node := d.nextID("n")
	if err := q.Execute(ctx, "blockdev-add", map[string]any{
		"driver": "qcow2", "node-name": node, "discard": "unmap", "cache": cacheOpts,
		"file": map[string]any{
			"driver": "file", "node-name": node + "f", "filename": path,
			"discard": "unmap", "cache": cacheOpts,
		},
	}, nil); err != nil {
		return "", fmt.Errorf("open %s: %w", filepath.Base(path), err)
	}
	var nodes []struct {
		Name  string `json:"node-name"`
		Cache struct {
			NoFlush bool `json:"no-flush"`
		} `json:"cache"`
	}
	if err := q.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		d.closeNode(ctx, q, node)
		return "", err
	}
	seen := 0
	for _, n := range nodes {
		if n.Name == node || n.Name == node+"f" {
			seen++
			if n.Cache.NoFlush {
				d.closeNode(ctx, q, node)
				return "", fmt.Errorf("open %s: node %s ignores flushes (cache.no-flush on)", filepath.Base(path), n.Name)
			}
		}
	}
	if seen != 2 {
		d.closeNode(ctx, q, node)
		return "", fmt.Errorf("open %s: nodes %s and %sf not listed by the daemon", filepath.Base(path), node, node)
	}
	return node, nil
}

// closeNode closes a block node (flushing it), logging a failure.
func (d *Daemon) closeNode(ctx context.Context, q *qmpClient, node string) error {
	err := q.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil)
	if err != nil {
		d.log.Error("closing block node", "node", node, "err", err)
	}
	return err
}

// nodeLocked returns the volume's node, opening it if it is not open.
func (d *Daemon) nodeLocked(ctx context.Context, q *qmpClient, name string) (string, error) {
	if n, ok := d.nodes[name]; ok {
		return n, nil
	}
	n, err := d.openNodeLocked(ctx, q, d.volPath(name))
	if err != nil {
		return "", err
	}
	d.nodes[name] = n
	return n, nil
}

// releaseLocked closes the volume's node unless it is exported.
func (d *Daemon) releaseLocked(ctx context.Context, q *qmpClient, name string) {
	n, ok := d.nodes[name]
	if !ok {
		return
	}
	if _, exported := d.exports[name]; exported {
		return
	}
	if d.closeNode(ctx, q, n) == nil {
		delete(d.nodes, name)
	}
}

// runJob waits for job id to conclude, dismisses it and returns its error.
func runJob(ctx context.Context, q *qmpClient, id string) error {
	for {
		var jobs []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := q.Execute(ctx, "query-jobs", nil, &jobs); err != nil {
			return err
		}
		found := false
		for _, j := range jobs {
			if j.ID != id {
				continue
			}
			found = true
			if j.Status == "concluded" {
				if err := q.Execute(ctx, "job-dismiss", map[string]any{"id": id}, nil); err != nil {
					return err
				}
				if j.Error != "" {
					return fmt.Errorf("job %s: %s", id, j.Error)
				}
				return nil
			}
		}
		if !found {
			return fmt.Errorf("job %s: gone before it concluded", id)
		}
		select {
		case <-ctx.Done():
			_ = q.Execute(context.Background(), "job-cancel", map[string]any{"id": id}, nil)
			return fmt.Errorf("job %s: %w", id, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// createQcow2Locked makes an empty qcow2 file of size bytes at path (with
// the daemon: no other tool needed), synced to disk.
func (d *Daemon) createQcow2Locked(ctx context.Context, q *qmpClient, path string, size int64) error {
	job := d.nextID("create")
	if err := q.Execute(ctx, "blockdev-create", map[string]any{
		"job-id":  job,
		"options": map[string]any{"driver": "file", "filename": path, "size": 0},
	}, nil); err != nil {
		return err
	}
	if err := runJob(ctx, q, job); err != nil {
		return err
	}
	file := d.nextID("c")
	if err := q.Execute(ctx, "blockdev-add", map[string]any{
		"driver": "file", "node-name": file, "filename": path, "cache": cacheOpts,
	}, nil); err != nil {
		return err
	}
	job = d.nextID("create")
	err := q.Execute(ctx, "blockdev-create", map[string]any{
		"job-id":  job,
		"options": map[string]any{"driver": "qcow2", "file": file, "size": size},
	}, nil)
	if err == nil {
		err = runJob(ctx, q, job)
	}
	if cerr := d.closeNode(ctx, q, file); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncFile(path)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// publish renames a finished temporary volume to its name, durably.
func (d *Daemon) publish(tmp, name string) error {
	if err := os.Rename(tmp, d.volPath(name)); err != nil {
		return err
	}
	return syncDir(d.volDir)
}

// Create makes volume name, an empty qcow2 of size bytes (a positive
// multiple of 512). A volume of that name and size already there is not
// an error; one of another size is.
func (d *Daemon) Create(ctx context.Context, name string, size int64) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	if err := validateSize("size", size); err != nil {
		return err
	}
	return d.do(ctx, func(q *qmpClient) error {
		if cur, err := d.volumeSize("name", name); err == nil {
			if cur != size {
				return fmt.Errorf("name: volume %q exists with size %d, not %d: %w", name, cur, size, ErrExists)
			}
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		tmp := filepath.Join(d.volDir, ".create-"+name+".qcow2")
		os.Remove(tmp)
		if err := d.createQcow2Locked(ctx, q, tmp, size); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("create volume %q: %w", name, err)
		}
		if err := d.publish(tmp, name); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("create volume %q: %w", name, err)
		}
		d.log.Info("volume created", "volume", name, "size", size)
		return nil
	})
}

// addExportLocked serves the volume over NBD.
func (d *Daemon) addExportLocked(ctx context.Context, name string, readOnly bool) error {
	q := d.p.q
	if _, err := d.volumeSize("name", name); err != nil {
		return err
	}
	node, err := d.nodeLocked(ctx, q, name)
	if err != nil {
		return err
	}
	if err := q.Execute(ctx, "block-export-add", map[string]any{
		"type": "nbd", "id": exportID(name), "node-name": node,
		"name": name, "writable": !readOnly,
	}, nil); err != nil {
		d.releaseLocked(ctx, q, name)
		return err
	}
	return nil
}

// delExportLocked removes the volume's export, disconnecting its clients,
// and waits until the daemon has let go of it.
func (d *Daemon) delExportLocked(ctx context.Context, q *qmpClient, name string) error {
	id := exportID(name)
	err := q.Execute(ctx, "block-export-del", map[string]any{"id": id, "mode": "hard"}, nil)
	var qe *QMPError
	if errors.As(err, &qe) && strings.Contains(qe.Desc, "not found") {
		return nil // not served (e.g. its volume went missing)
	}
	if err != nil {
		return err
	}
	for {
		var exps []struct {
			ID string `json:"id"`
		}
		if err := q.Execute(ctx, "query-block-exports", nil, &exps); err != nil {
			return err
		}
		gone := true
		for _, e := range exps {
			if e.ID == id {
				gone = false
			}
		}
		if gone {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("export %q: removal: %w", name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (d *Daemon) persistLocked() error {
	if err := writeFileAtomic(d.expFile, encodeExports(d.exports), 0o600); err != nil {
		return fmt.Errorf("exports file: %w", err)
	}
	return nil
}

// Export serves volume name over NBD (TLS, clients need a certificate of
// the CA) under the export name name, and records it in exports.json so
// that it is served again after a restart. A writable export takes any
// number of clients at a time (a live migration's destination connects
// while the source is still attached); so does a read-only one. A volume
// has one export: exporting it again the same way returns it, the other
// way is an error (Unexport first).
func (d *Daemon) Export(ctx context.Context, name string, readOnly bool) (Export, error) {
	if err := ValidateName("name", name); err != nil {
		return Export{}, err
	}
	exp := Export{Name: name, Addr: d.cfg.Listen, ReadOnly: readOnly}
	err := d.do(ctx, func(q *qmpClient) error {
		if ro, ok := d.exports[name]; ok {
			if ro != readOnly {
				return fmt.Errorf("readOnly: volume %q is exported with read_only=%t: %w", name, ro, ErrExported)
			}
			return nil
		}
		if err := d.addExportLocked(ctx, name, readOnly); err != nil {
			return fmt.Errorf("export %q: %w", name, err)
		}
		d.exports[name] = readOnly
		if err := d.persistLocked(); err != nil {
			delete(d.exports, name)
			if derr := d.delExportLocked(ctx, q, name); derr == nil {
				d.releaseLocked(ctx, q, name)
			}
			return err
		}
		d.log.Info("volume exported", "volume", name, "read_only", readOnly, "addr", d.cfg.Listen)
		return nil
	})
	if err != nil {
		return Export{}, err
	}
	return exp, nil
}

// Unexport stops serving the volume (its clients are disconnected) and
// forgets the export. Unexporting a volume that is not exported is not an
// error.
func (d *Daemon) Unexport(ctx context.Context, name string) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	return d.do(ctx, func(q *qmpClient) error {
		ro, ok := d.exports[name]
		if !ok {
			return nil
		}
		if err := d.delExportLocked(ctx, q, name); err != nil {
			return fmt.Errorf("unexport %q: %w", name, err)
		}
		delete(d.exports, name)
		if err := d.persistLocked(); err != nil {
			d.exports[name] = ro // served again after a restart; the caller retries
			return err
		}
		d.releaseLocked(ctx, q, name)
		d.log.Info("volume unexported", "volume", name)
		return nil
	})
}

// Delete removes the volume's file; it is refused while the volume is
// exported (ErrExported). Deleting a volume that does not exist is not an
// error.
func (d *Daemon) Delete(ctx context.Context, name string) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	return d.do(ctx, func(q *qmpClient) error {
		if _, ok := d.exports[name]; ok {
			return fmt.Errorf("name: volume %q: %w; unexport it first", name, ErrExported)
		}
		d.releaseLocked(ctx, q, name)
		if _, open := d.nodes[name]; open {
			return fmt.Errorf("delete %q: its block node could not be closed", name)
		}
		if err := os.Remove(d.volPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete %q: %w", name, err)
		}
		if err := syncDir(d.volDir); err != nil {
			return fmt.Errorf("delete %q: %w", name, err)
		}
		d.log.Info("volume deleted", "volume", name)
		return nil
	})
}

// Resize grows the volume to size bytes (a multiple of 512; the same size
// is a no-op, a smaller one an error). It works while the volume is
// exported, but disconnects the export's clients (see below): clients
// that connect afterwards see the new size.
func (d *Daemon) Resize(ctx context.Context, name string, size int64) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	if err := validateSize("size", size); err != nil {
		return err
	}
	return d.do(ctx, func(q *qmpClient) error {
		cur, err := d.volumeSize("name", name)
		if err != nil {
			return err
		}
		if size == cur {
			return nil
		}
		if size < cur {
			return fmt.Errorf("size: %d is smaller than the volume's %d; volumes only grow", size, cur)
		}
		node, err := d.nodeLocked(ctx, q, name)
		if err != nil {
			return fmt.Errorf("resize %q: %w", name, err)
		}
		defer d.releaseLocked(ctx, q, name)
		// qemu's NBD export holds its node's size fixed (it does not share
		// the resize permission) and tells clients the size it had when it
		// was added: an exported volume is taken off the server for the
		// resize and added again, which disconnects its clients (they
		// reconnect, and new ones see the new size).
		ro, exported := d.exports[name]
		if exported {
			if err := d.delExportLocked(ctx, q, name); err != nil {
				return fmt.Errorf("resize %q: %w", name, err)
			}
		}
		err = q.Execute(ctx, "block_resize", map[string]any{"node-name": node, "size": size}, nil)
		if exported {
			if aerr := d.addExportLocked(ctx, name, ro); aerr != nil {
				d.log.Error("export not served again after a resize", "volume", name, "err", aerr)
				if err == nil {
					err = aerr
				}
			}
		}
		if err != nil {
			return fmt.Errorf("resize %q: %w", name, err)
		}
		d.log.Info("volume resized", "volume", name, "from", cur, "to", size, "clients_disconnected", exported)
		return nil
	})
}

// Snapshot makes volume snap, a standalone copy of volume name as it is
// at this moment. It works while name is exported and written: a backup
// job (copy-before-write) copies the content of the instant it starts.
func (d *Daemon) Snapshot(ctx context.Context, name, snap string) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	if err := ValidateName("snap", snap); err != nil {
		return err
	}
	if name == snap {
		return errors.New("snap: must differ from name")
	}
	return d.do(ctx, func(q *qmpClient) error {
		size, err := d.volumeSize("name", name)
		if err != nil {
			return err
		}
		if _, err := os.Stat(d.volPath(snap)); err == nil {
			return fmt.Errorf("snap: volume %q: %w", snap, ErrExists)
		}
		src, err := d.nodeLocked(ctx, q, name)
		if err != nil {
			return fmt.Errorf("snapshot %q: %w", name, err)
		}
		defer d.releaseLocked(ctx, q, name)
		tmp := filepath.Join(d.volDir, ".snap-"+snap+".qcow2")
		os.Remove(tmp)
		fail := func(err error) error {
			os.Remove(tmp)
			return fmt.Errorf("snapshot %q to %q: %w", name, snap, err)
		}
		if err := d.createQcow2Locked(ctx, q, tmp, size); err != nil {
			return fail(err)
		}
		dst, err := d.openNodeLocked(ctx, q, tmp)
		if err != nil {
			return fail(err)
		}
		job := d.nextID("snap")
		err = q.Execute(ctx, "blockdev-backup", map[string]any{
			"job-id": job, "device": src, "target": dst, "sync": "full",
			"auto-finalize": true, "auto-dismiss": false,
		}, nil)
		if err == nil {
			err = runJob(ctx, q, job)
		}
		if cerr := d.closeNode(ctx, q, dst); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncFile(tmp)
		}
		if err == nil {
			err = d.publish(tmp, snap)
		}
		if err != nil {
			return fail(err)
		}
		d.log.Info("volume snapshot made", "volume", name, "snapshot", snap, "size", size)
		return nil
	})
}

// Volumes lists the volumes on disk, sorted by name.
func (d *Daemon) Volumes() ([]Volume, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	ents, err := os.ReadDir(d.volDir)
	if err != nil {
		return nil, err
	}
	out := []Volume{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".qcow2")
		if !ok || ValidateName("name", name) != nil || !e.Type().IsRegular() {
			continue
		}
		path := d.volPath(name)
		size, err := qcow2Size(path)
		if err != nil {
			return nil, err
		}
		v := Volume{Name: name, Size: size}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err == nil {
			v.Allocated = st.Blocks * 512
		}
		v.ReadOnly, v.Exported = d.exports[name]
		out = append(out, v)
	}
	return out, nil
}
