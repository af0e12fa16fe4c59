package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"vgrid/internal/store/bolt"
)

// The store's files in a data directory.
const (
	storeFileName = "store.db"
	// storeIDFile records the ID of the data directory's store (which the
	// store keeps too), written when the store is first opened: a store
	// file with another ID is not this directory's store.
	storeIDFile = "store.id"
	// backupSocketFile is the Unix socket on which a running control plane
	// takes consistent backups for `vgrid store backup` and `check`.
	backupSocketFile = "backup.sock"

	// KeepBackups is how many backups Start keeps in <data dir>/backups:
	// the newest; each start adds one, as does each online backup.
	KeepBackups = 5

	backupTime = "20060102T150405.000Z" // UTC, sorts by time
)

var backupNameRE = regexp.MustCompile(`^store-\d{8}T\d{6}\.\d{3}Z\.db$`)

// StorePath is the store file of a data directory.
func StorePath(dataDir string) string { return filepath.Join(dataDir, storeFileName) }

// BackupDir is where a data directory's backups are kept.
func BackupDir(dataDir string) string { return bolt.BackupDir(StorePath(dataDir)) }

// MissingStoreError says that the store file is missing from a data
// directory where vgrid ran before: starting with a new, empty store would
// forget every project, token and workspace.
type MissingStoreError struct {
	Path     string
	Evidence []string // the files that show an earlier install
	Hint     string   // the newest backup, or that there is none
}

func (e *MissingStoreError) Error() string {
	dir := filepath.Dir(e.Path)
	return fmt.Sprintf("store %s is missing, but %s held a vgrid before (%s): vgrid will not start there "+
		"with a new, empty store, which would forget every project, token and workspace and orphan running "+
		"guests. %s. To start anew on purpose, run `vgrid store reset --data-dir %s`",
		e.Path, dir, strings.Join(e.Evidence, ", "), e.Hint, dir)
}

// ForeignStoreError says that the store file is not the one the data
// directory had: its ID differs from the one recorded in store.id.
type ForeignStoreError struct {
	Path           string
	ID, RecordedID string
	Hint           string
}

func (e *ForeignStoreError) Error() string {
	dir := filepath.Dir(e.Path)
	return fmt.Sprintf("store %s (ID %s) is not the store this data directory had (ID %s, recorded in %s): "+
		"it is a new store or another install's, and starting with it would forget this one's projects, "+
		"tokens and workspaces. If it is the store you mean to use, move it elsewhere and put it in place "+
		"with `vgrid store restore FILE --data-dir %s`, which records its ID; otherwise %s",
		e.Path, e.ID, e.RecordedID, filepath.Join(dir, storeIDFile), dir, lowerFirst(e.Hint))
}

// openStore opens the data directory's store for Start: it refuses a
// damaged store, a missing one where vgrid ran before and a store other
// than the one recorded in store.id (unless allowFresh: then it starts a
// new store, setting a damaged file aside), records the store's ID, and
// backs the store up before anything writes to it.
func openStore(ctx context.Context, log *slog.Logger, dataDir string, allowFresh bool) (*bolt.Store, error) {
	path := StorePath(dataDir)
	recorded, err := readStoreID(dataDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if ev := previousInstall(dataDir); len(ev) > 0 {
			if !allowFresh {
				return nil, &MissingStoreError{Path: path, Evidence: ev, Hint: backupHint(dataDir)}
			}
			log.Warn("store missing: starting with a new, empty store as asked", "store", path, "earlier install", ev)
		}
	}
	st, err := bolt.Open(path)
	if errors.Is(err, bolt.ErrDamaged) && allowFresh {
		aside, _, rerr := bolt.Reset(path)
		if rerr != nil {
			return nil, fmt.Errorf("%w; setting it aside failed: %v", err, rerr)
		}
		log.Warn("store damaged: set aside, starting with a new, empty store as asked", "store", path, "aside", aside, "damage", err)
		st, err = bolt.Open(path)
	}
	if errors.Is(err, bolt.ErrDamaged) {
		return nil, fmt.Errorf("%w; %s", err, lowerFirst(backupHint(dataDir)))
	}
	if err != nil {
		return nil, err
	}
	rep := st.Report()
	for _, w := range rep.Warnings {
		log.Warn("store check", "store", path, "warning", w)
	}
	switch id := st.ID(); {
	case recorded == id:
	case recorded != "" && !allowFresh:
		st.Close()
		return nil, &ForeignStoreError{Path: path, ID: id, RecordedID: recorded, Hint: backupHint(dataDir)}
	default:
		if recorded != "" {
			log.Warn("store is not the one recorded: adopting it as asked", "store", path, "id", id, "recorded", recorded)
		}
		if err := writeStoreID(dataDir, id); err != nil {
			st.Close()
			return nil, err
		}
	}
	log.Info("store opened", "store", path, "revision", rep.Revision, "keys", rep.Keys, "id", st.ID())
	backupStore(ctx, log, st, dataDir, "start")
	return st, nil
}

// backupStore takes a backup into the backups directory and keeps the
// newest KeepBackups. A failure is logged, not fatal: the store itself is
// sound, and the earlier backups remain.
func backupStore(ctx context.Context, log *slog.Logger, st *bolt.Store, dataDir, why string) (string, error) {
	path, err := newBackupPath(BackupDir(dataDir))
	if err == nil {
		var rep bolt.Report
		if rep, err = st.BackupTo(ctx, path); err == nil {
			log.Info("store backed up", "why", why, "file", path, "revision", rep.Revision)
		}
	}
	if err != nil {
		log.Error("store backup failed", "why", why, "store", st.Path(), "err", err)
		return "", err
	}
	if err := pruneBackups(BackupDir(dataDir), KeepBackups); err != nil {
		log.Warn("prune backups", "err", err)
	}
	return path, nil
}

// newBackupPath names a new backup file in dir after the time now.
func newBackupPath(dir string) (string, error) {
	t := time.Now().UTC()
	for range 1000 {
		p := filepath.Join(dir, "store-"+t.Format(backupTime)+".db")
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
		t = t.Add(time.Millisecond)
	}
	return "", fmt.Errorf("no free backup name in %s", dir)
}

// backups lists the backup files of dir, oldest first.
func backups(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && backupNameRE.MatchString(e.Name()) {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(names)
	return names
}

// pruneBackups deletes all but the newest keep backups of dir, and the
// temporary files of backups cut short over an hour ago.
func pruneBackups(dir string, keep int) error {
	var errs []error
	list := backups(dir)
	for _, p := range list[:max(len(list)-keep, 0)] {
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".store-") || !strings.Contains(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// backupHint says which backup to restore, or that there is none.
func backupHint(dataDir string) string {
	dir := BackupDir(dataDir)
	list := backups(dir)
	if len(list) == 0 {
		return fmt.Sprintf("There are no backups in %s: if you have a copy of %s elsewhere, restore it with "+
			"`vgrid store restore FILE --data-dir %s`", dir, storeFileName, dataDir)
	}
	newest := list[len(list)-1]
	when := ""
	if fi, err := os.Stat(newest); err == nil {
		when = fmt.Sprintf(", from %s", fi.ModTime().UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("The newest backup is %s%s: restore it with `vgrid store restore %s --data-dir %s`",
		newest, when, newest, dataDir)
}

// previousInstall lists what in dataDir shows that vgrid ran there:
// files that a start writes (and that nothing writes before one).
func previousInstall(dataDir string) []string {
	var ev []string
	for _, name := range []string{storeIDFile, "client.json", "join.token", "vgrid.pid",
		filepath.Join("tls", "ca.crt"), filepath.Join("agent", "node.json")} {
		if _, err := os.Lstat(filepath.Join(dataDir, name)); err == nil {
			ev = append(ev, name)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dataDir, "instances")); err == nil && len(ents) > 0 {
		ev = append(ev, "instances/")
	}
	if len(backups(BackupDir(dataDir))) > 0 {
		ev = append(ev, "backups/")
	}
	return ev
}

func readStoreID(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, storeIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store ID: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeStoreID records id ("" removes the record), durably.
func writeStoreID(dataDir, id string) error {
	p := filepath.Join(dataDir, storeIDFile)
	if id == "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store ID: %w", err)
		}
		return nil
	}
	f, err := os.CreateTemp(dataDir, "."+storeIDFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("store ID: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("store ID: %w", err)
	}
	return nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// Online backups. A running control plane holds the store's lock, so no
// other process can read the store file consistently. It listens on the
// Unix socket <data dir>/backup.sock (mode 0600, in the data directory,
// which only its owner can enter): a client sends "backup\n"; the control
// plane takes a consistent backup into the backups directory (as at start,
// keeping the newest KeepBackups) and answers "ok <file>\n", or
// "error <message>\n"; then it waits (up to backupCopyTime) for the client
// to copy the file and hang up (or send "done\n") before it serves the
// next request, so that no later backup prunes the file meanwhile.

const backupCopyTime = 10 * time.Minute

// serveBackups serves online backups until ctx ends.
func (cp *ControlPlane) serveBackups(ctx context.Context, dataDir string) {
	path := filepath.Join(dataDir, backupSocketFile)
	// A socket left by a vgrid that died: this one holds the store's lock,
	// so no other vgrid serves this data directory.
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		cp.log.Warn("online backups unavailable", "socket", path, "err", err)
		return
	}
	if err := os.Chmod(path, 0o600); err != nil {
		cp.log.Warn("online backups unavailable", "socket", path, "err", err)
		ln.Close()
		return
	}
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			cp.serveBackup(ctx, c, dataDir)
		}
	}()
}

func (cp *ControlPlane) serveBackup(ctx context.Context, c *net.UnixConn, dataDir string) {
	defer c.Close()
	// Shutting down does not wait for a client.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil {
		return
	}
	if strings.TrimSpace(req) != "backup" {
		fmt.Fprintf(c, "error unknown request %q\n", strings.TrimSpace(req))
		return
	}
	path, err := backupStore(ctx, cp.log, cp.st, dataDir, "online")
	if err != nil {
		fmt.Fprintf(c, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	_ = c.SetDeadline(time.Now().Add(backupCopyTime))
	if _, err := fmt.Fprintf(c, "ok %s\n", path); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64)) // until "done" and the hang-up
}

// requestBackup asks the control plane running in dataDir for a backup,
// and returns its file and the function that says the client is done.
func requestBackup(ctx context.Context, dataDir string) (string, func(), error) {
	sock := filepath.Join(dataDir, backupSocketFile)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return "", nil, fmt.Errorf("store %s is in use by a running vgrid, which does not answer on %s (%v): "+
			"stop it (`vgrid down`, or stop its service) and retry, or copy one of the automatic backups in %s",
			StorePath(dataDir), sock, err, BackupDir(dataDir))
	}
	done := func() {
		_, _ = io.WriteString(conn, "done\n")
		conn.Close()
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.WriteString(conn, "backup\n"); err != nil {
		conn.Close()
		return "", nil, fmt.Errorf("online backup: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 64<<10)).ReadString('\n')
	if err != nil {
		conn.Close()
		return "", nil, fmt.Errorf("online backup: no answer from the running vgrid: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		conn.Close()
		return "", nil, fmt.Errorf("online backup: the running vgrid failed: %s", msg)
	}
	path, ok := strings.CutPrefix(line, "ok ")
	if !ok || filepath.Dir(path) != filepath.Clean(BackupDir(dataDir)) || !backupNameRE.MatchString(filepath.Base(path)) {
		conn.Close()
		return "", nil, fmt.Errorf("online backup: unexpected answer %q", line)
	}
	return path, done, nil
}

// CheckStore checks the store of a data directory (see bolt.Check). If a
// running vgrid has the store open, it checks a consistent backup the
// running vgrid takes for it, and returns that backup's file as online.
// Besides damage (an error wrapping bolt.ErrDamaged) it reports a missing
// store where vgrid ran before (*MissingStoreError) and a store other than
// the one recorded (*ForeignStoreError): what would keep vgrid from
// starting.
func CheckStore(ctx context.Context, dataDir string) (rep bolt.Report, online string, err error) {
	dataDir, _ = filepath.Abs(dataDir)
	path := StorePath(dataDir)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if ev := previousInstall(dataDir); len(ev) > 0 {
			return bolt.Report{Path: path}, "", &MissingStoreError{Path: path, Evidence: ev, Hint: backupHint(dataDir)}
		}
		return bolt.Report{Path: path}, "", fmt.Errorf("no store in %s: vgrid has not run there", dataDir)
	}
	rep, err = bolt.Check(path)
	if errors.Is(err, bolt.ErrLocked) {
		var done func()
		if online, done, err = requestBackup(ctx, dataDir); err != nil {
			return bolt.Report{Path: path}, "", err
		}
		defer done()
		rep, err = bolt.Check(online)
		rep.Path = path // of the store, as of now; online names the copy
	}
	if err != nil {
		if errors.Is(err, bolt.ErrDamaged) {
			err = fmt.Errorf("%w; %s", err, lowerFirst(backupHint(dataDir)))
		}
		return rep, online, err
	}
	recorded, err := readStoreID(dataDir)
	if err != nil {
		return rep, online, err
	}
	if recorded != "" && rep.ID != "" && recorded != rep.ID {
		return rep, online, &ForeignStoreError{Path: path, ID: rep.ID, RecordedID: recorded, Hint: backupHint(dataDir)}
	}
	return rep, online, nil
}

// BackupStore writes a consistent copy of a data directory's store to the
// file dst: directly if no process has the store open, else through the
// running vgrid (online is then true). It returns the check of the copy.
func BackupStore(ctx context.Context, dataDir, dst string) (rep bolt.Report, online bool, err error) {
	dataDir, _ = filepath.Abs(dataDir)
	rep, err = bolt.BackupFile(ctx, StorePath(dataDir), dst)
	if !errors.Is(err, bolt.ErrLocked) {
		return rep, false, err
	}
	path, done, err := requestBackup(ctx, dataDir)
	if err != nil {
		return bolt.Report{Path: dst}, true, err
	}
	defer done()
	rep, err = bolt.CopyFile(path, dst)
	return rep, true, err
}

// RestoreStore puts a copy of the backup file in place of the data
// directory's store (see bolt.Restore: the file there is kept aside) and
// records the restored store's ID. It refuses while vgrid runs there.
func RestoreStore(dataDir, backup string) (bolt.Restored, error) {
	dataDir, _ = filepath.Abs(dataDir)
	res, err := bolt.Restore(backup, StorePath(dataDir))
	if errors.Is(err, bolt.ErrLocked) {
		return res, fmt.Errorf("%w: stop it first (`vgrid down`, or stop its service), then restore", err)
	}
	if err != nil {
		return res, err
	}
	return res, writeStoreID(dataDir, res.Report.ID)
}

// ResetStore sets the data directory's store aside (damaged or not) and
// starts a new, empty one, recording its ID: the next start then begins
// afresh (a new default project, admin token and join token), forgetting
// every project, token and workspace. It refuses while vgrid runs there.
func ResetStore(dataDir string) (aside string, rep bolt.Report, err error) {
	dataDir, _ = filepath.Abs(dataDir)
	aside, rep, err = bolt.Reset(StorePath(dataDir))
	if errors.Is(err, bolt.ErrLocked) {
		return aside, rep, fmt.Errorf("%w: stop it first (`vgrid down`, or stop its service)", err)
	}
	if err != nil {
		return aside, rep, err
	}
	return aside, rep, writeStoreID(dataDir, rep.ID)
}
