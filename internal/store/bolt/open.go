package bolt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// openChecked opens the file at path for op ("open", "check"), locks it
// (exclusively, or shared when readOnly) waiting at most timeout (0: for
// ever), checks it, and only if it is sound hands it to bbolt. It returns
// the database, the file under it (closing which releases the lock) and
// the check's report. It never creates the file.
func openChecked(op, path string, readOnly bool, timeout time.Duration) (*bbolt.DB, *os.File, Report, error) {
	rep := Report{Path: path}
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		if errors.Is(err, syscall.EISDIR) {
			rep.problem("%s is a directory, not a store file", path)
			return nil, nil, rep, damaged(op, path, &rep)
		}
		return nil, nil, rep, fmt.Errorf("%s store %s: %w", op, path, err)
	}
	fail := func(err error) (*bbolt.DB, *os.File, Report, error) {
		_ = f.Close()
		return nil, nil, rep, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("%s store %s: %w", op, path, err))
	}
	if !fi.Mode().IsRegular() {
		rep.problem("%s", notRegular(path, fi))
		return fail(damaged(op, path, &rep))
	}
	if err := lockFile(f, !readOnly, timeout); err != nil {
		if errors.Is(err, errLockTimeout) {
			return fail(&lockedError{path: path})
		}
		return fail(fmt.Errorf("%s store %s: lock: %w", op, path, err))
	}
	// Size again under the lock: the holder before us may have grown it.
	if fi, err = f.Stat(); err != nil {
		return fail(fmt.Errorf("%s store %s: %w", op, path, err))
	}
	scanFile(f, fi.Size(), &rep)
	if !rep.OK() {
		return fail(damaged(op, path, &rep))
	}
	var db *bbolt.DB
	handed := false
	err = guard(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{
			Timeout:         timeout,
			ReadOnly:        readOnly,
			PreLoadFreelist: true, // read the freelist now, under guard
			// bbolt takes the file opened, locked and checked above; its
			// lock on the same open file succeeds at once.
			OpenFile: func(string, int, os.FileMode) (*os.File, error) {
				if handed {
					return nil, errors.New("store file opened twice")
				}
				handed = true
				return f, nil
			},
		})
		return err
	})
	if err != nil {
		var pe *panicError
		switch {
		case errors.As(err, &pe):
			rep.problem("bbolt failed reading the file: %v", pe.v)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
			rep.problem("bbolt refuses the file: %v", err)
		default:
			return fail(fmt.Errorf("%s store %s: %w", op, path, err))
		}
		return fail(damaged(op, path, &rep))
	}
	return db, f, rep, nil
}

func notRegular(path string, fi os.FileInfo) string {
	if fi.IsDir() {
		return path + " is a directory, not a store file"
	}
	return fmt.Sprintf("%s is not a regular file (%v)", path, fi.Mode().Type())
}

// panicError is a panic that guard turned into an error.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.v) }

// guard runs fn, turning a panic, or a memory fault (bbolt reads the file
// through a memory map), into a *panicError.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{v: p}
		}
	}()
	return fn()
}

// create makes a new store file at path: complete under a temporary name,
// then linked into place, so that path never names a half-made file. If a
// file appeared at path meanwhile, that one stays.
func create(path string) error {
	dir := filepath.Dir(path)
	// Temporary files of creates that a crash cut short.
	if old, _ := filepath.Glob(filepath.Join(dir, "."+filepath.Base(path)+".new-*")); len(old) > 0 {
		for _, p := range old {
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.Remove(p)
			}
		}
	}
	tf, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmp := tf.Name()
	_ = tf.Close()
	defer os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, _, err := initBuckets(tx)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		// A file system without hard links: rename, which may replace a
		// file made in the instant since Open looked.
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

var errLockTimeout = errors.New("lock timeout")

// lockFile takes an flock on f, as bbolt does (so that bbolt's own lock of
// the same file by another process conflicts with it), polling until
// timeout (0: for ever).
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if timeout > 0 && !time.Now().Before(deadline) {
			return errLockTimeout
		}
		wait := 50 * time.Millisecond
		if timeout > 0 {
			wait = min(wait, max(time.Until(deadline), time.Millisecond))
		}
		time.Sleep(wait)
	}
}

// newID makes a store ID: 128 random bits in hex.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validID says whether b can be a store ID: 1 to 64 hex digits.
func validID(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
