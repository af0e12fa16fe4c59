package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// probeLockTimeout is how long the functions that work on a store no
// process may have open (BackupFile, CopyFile, Restore) wait for its lock.
const probeLockTimeout = 200 * time.Millisecond

// Check checks the store file at path and changes nothing: it reads every
// page of it and every bucket, key, value and log entry the way the store
// does, then has bbolt open it. It reports counts and what it found. A
// damaged file gives the report and an error wrapping ErrDamaged (a
// *DamagedError); a file that cannot be read (missing, permissions) an
// error of its own. Check takes a shared lock on the file, so while a
// process has the store open (a running vgrid) it fails with an error
// wrapping ErrLocked: check a backup taken online instead.
func Check(path string) (Report, error) {
	db, _, rep, err := openChecked("check", path, true, DefaultLockTimeout)
	if err != nil {
		return rep, err
	}
	if err := db.Close(); err != nil {
		return rep, fmt.Errorf("check store %s: %w", path, err)
	}
	return rep, nil
}

// Backup writes a consistent copy of the store to w, as of one revision,
// while writers carry on: a bbolt file that Open, Check and Restore take.
// It returns the number of bytes written.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(&ctxWriter{ctx: ctx, w: w})
		return err
	})
	return n, dbErr(err)
}

// BackupTo writes a consistent copy of the store to the file path (making
// its directory): to a temporary file beside it, which is synced, checked
// and then renamed to path, so that path is either the whole checked copy
// or untouched. It returns the check of the copy.
func (s *Store) BackupTo(ctx context.Context, path string) (Report, error) {
	return writeChecked(path, func(w io.Writer) error {
		_, err := s.Backup(ctx, w)
		return err
	})
}

// BackupFile writes a consistent copy of the store file storePath, which
// no process may have open, to the file dst (see BackupTo). It checks the
// store first: a damaged store is an error wrapping ErrDamaged, a store in
// use one wrapping ErrLocked.
func BackupFile(ctx context.Context, storePath, dst string) (Report, error) {
	db, _, _, err := openChecked("back up", storePath, true, probeLockTimeout)
	if err != nil {
		return Report{Path: dst}, err
	}
	s := &Store{db: db, path: storePath, watchers: map[*watcher]struct{}{}}
	defer s.Close()
	return s.BackupTo(ctx, dst)
}

// CopyFile copies the store file src (a backup, or a store that no
// process has open) to the file dst, checking the original first and the
// copy before it is renamed into place (see BackupTo). It returns the
// check of the copy. A damaged src is an error wrapping ErrDamaged.
func CopyFile(src, dst string) (Report, error) {
	f, err := os.Open(src)
	if err != nil {
		return Report{Path: dst}, fmt.Errorf("copy store %s: %w", src, err)
	}
	defer f.Close()
	rep := Report{Path: src}
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("copy store %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		rep.problem("%s", notRegular(src, fi))
		return rep, damaged("copy", src, &rep)
	}
	if err := lockFile(f, false, probeLockTimeout); err != nil {
		if errors.Is(err, errLockTimeout) {
			return rep, &lockedError{path: src}
		}
		return rep, fmt.Errorf("copy store %s: lock: %w", src, err)
	}
	if fi, err = f.Stat(); err != nil {
		return rep, fmt.Errorf("copy store %s: %w", src, err)
	}
	scanFile(f, fi.Size(), &rep)
	if !rep.OK() {
		return rep, damaged("copy", src, &rep)
	}
	return writeChecked(dst, func(w io.Writer) error {
		_, err := io.Copy(w, io.NewSectionReader(f, 0, fi.Size()))
		return err
	})
}

// Restored says what Restore did.
type Restored struct {
	Report Report // the check of the store put in place
	// Aside is where the store file that was there before is kept ("" if
	// there was none).
	Aside string
}

// Restore puts a copy of the backup file in place of the store file at
// storePath, keeping the file that was there (damaged or not) beside it as
// storePath.before-restore-<UTC time>. It checks the backup first and
// refuses a damaged one, and refuses (ErrLocked) while a process has the
// store open. The backup file itself is left as it is.
func Restore(backupPath, storePath string) (Restored, error) {
	var res Restored
	bi, err := os.Stat(backupPath)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if si, err := os.Stat(storePath); err == nil && os.SameFile(bi, si) {
		return res, fmt.Errorf("restore: %s is the store file itself", backupPath)
	}
	exists, unlock, err := lockForSwap(storePath)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer unlock()
	staging := storePath + ".restoring"
	_ = os.Remove(staging)
	rep, err := CopyFile(backupPath, staging)
	if err != nil {
		var de *DamagedError
		if errors.As(err, &de) {
			return res, fmt.Errorf("restore: the backup %s is damaged (%s), so it was not restored: "+
				"choose another backup (`vgrid store check FILE` checks one)", backupPath, de.Reason)
		}
		return res, fmt.Errorf("restore: %w", err)
	}
	rep.Path = storePath
	res.Report = rep
	if exists {
		res.Aside = storePath + ".before-restore-" + time.Now().UTC().Format(asideTime)
		if err := os.Rename(storePath, res.Aside); err != nil {
			_ = os.Remove(staging)
			return Restored{}, fmt.Errorf("restore: set %s aside: %w", storePath, err)
		}
	}
	if err := os.Rename(staging, storePath); err != nil {
		if res.Aside != "" {
			_ = os.Rename(res.Aside, storePath)
		}
		_ = os.Remove(staging)
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(storePath)); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// asideTime is the layout of the UTC time in the names of set-aside files.
const asideTime = "20060102T150405.000Z"

// lockForSwap takes the exclusive lock of the store file at path, if there
// is one, so that no vgrid opens it while it is swapped; a vgrid that has
// it open makes this fail with an error wrapping ErrLocked. It says
// whether the file exists, and returns the release of the lock.
func lockForSwap(path string) (bool, func(), error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, func() {}, nil
	case err != nil:
		return false, nil, err
	}
	if err := lockFile(f, true, probeLockTimeout); err != nil {
		_ = f.Close()
		if errors.Is(err, errLockTimeout) {
			return false, nil, &lockedError{path: path}
		}
		return false, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return true, func() { _ = f.Close() }, nil
}

// Reset sets the store file at path aside (as path.reset-<UTC time>), if
// there is one, damaged or not, and makes a new, empty store in its place:
// what an operator asks for who means to start anew. It refuses (ErrLocked)
// while a process has the store open. It returns where the old file went
// ("" if there was none) and the check of the new store.
func Reset(path string) (aside string, rep Report, err error) {
	exists, unlock, err := lockForSwap(path)
	if err != nil {
		return "", rep, fmt.Errorf("reset: %w", err)
	}
	defer unlock()
	if exists {
		aside = path + ".reset-" + time.Now().UTC().Format(asideTime)
		if err := os.Rename(path, aside); err != nil {
			return "", rep, fmt.Errorf("reset: set %s aside: %w", path, err)
		}
	}
	if err := create(path); err != nil {
		return aside, rep, fmt.Errorf("reset: create %s: %w", path, err)
	}
	rep, err = Check(path)
	return aside, rep, err
}

// writeChecked writes a store file to path through write: into a
// temporary file beside it (mode 0600), which it syncs, checks and renames
// to path. It returns the check.
func writeChecked(path string, write func(io.Writer) error) (Report, error) {
	rep := Report{Path: path}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	scanFile(f, fi.Size(), &rep)
	if !rep.OK() {
		return rep, fmt.Errorf("write %s: the copy does not check: %s", path, rep.Problems[0])
	}
	if err := f.Close(); err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return rep, fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	return rep, syncDir(dir)
}

// ctxWriter stops a copy when its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
