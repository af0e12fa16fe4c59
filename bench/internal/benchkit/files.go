package benchkit

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// RandomFile writes size random bytes to a new file at path.
func RandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Warm reads path whole, so that the copies compared after it all read
// it from the page cache.
func Warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// TimeCp times `cp src dst` and an fsync of dst (the peer of a copy that
// fsyncs what it writes), then removes dst.
func TimeCp(src, dst string) (time.Duration, error) {
	os.Remove(dst)
	t0 := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v: %s", err, out)
	}
	f, err := os.Open(dst)
	if err != nil {
		return 0, err
	}
	err = f.Sync()
	f.Close()
	d := time.Since(t0)
	os.Remove(dst)
	return d, err
}
