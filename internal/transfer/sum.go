package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

const bufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// sumCache remembers the SHA-256 of the files served, by path, for as long
// as their size and mtime stay the same. Concurrent requests for the same
// file share one computation.
type sumCache struct {
	mu sync.Mutex
	m  map[string]*sumEntry
}

type sumEntry struct {
	size  int64
	mtime int64
	done  chan struct{}
	sum   string
	err   error
}

const maxSumEntries = 1024

func (c *sumCache) sum(ctx context.Context, path string, fi os.FileInfo) (string, error) {
	size, mtime := fi.Size(), fi.ModTime().UnixNano()
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*sumEntry)
	}
	e := c.m[path]
	if e == nil || e.size != size || e.mtime != mtime {
		if e == nil && len(c.m) >= maxSumEntries {
			for p := range c.m { // drop one, any one
				delete(c.m, p)
				break
			}
		}
		e = &sumEntry{size: size, mtime: mtime, done: make(chan struct{})}
		c.m[path] = e
		c.mu.Unlock()
		e.sum, e.err = hashFile(path, size, mtime)
		if e.err != nil {
			c.mu.Lock()
			if c.m[path] == e {
				delete(c.m, path)
			}
			c.mu.Unlock()
		}
		close(e.done)
		return e.sum, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.sum, e.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// errChanged says that a file changed while it was read.
type errChanged struct{ path string }

func (e errChanged) Error() string { return fmt.Sprintf("%s changed while being read", e.path) }

// hashFile returns the SHA-256 of the file at path, which must have the
// given size and mtime before and after.
func hashFile(path string, size, mtime int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	same := func() bool {
		fi, err := f.Stat()
		return err == nil && fi.Size() == size && fi.ModTime().UnixNano() == mtime
	}
	if !same() {
		return "", errChanged{path}
	}
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{f}, *bp)
	if err != nil {
		return "", err
	}
	if n != size || !same() {
		return "", errChanged{path}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
