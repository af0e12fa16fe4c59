package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func twoFiles(t *testing.T) (dir string, files []File) {
	dir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "disk"), 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk", "overlay.qcow2")
	mem := filepath.Join(dir, "memory.bin")
	writeSparseish(t, disk, 64<<20)
	writeRandom(t, mem, 8<<20)
	return dir, []File{
		{Name: "disk/overlay.qcow2", Path: disk, Size: 64 << 20},
		{Name: "memory.bin", Path: mem}, // Size 0: not checked
	}
}

func TestFetch(t *testing.T) {
	_, files := twoFiles(t)
	src := startSource(t, files, sourceOpts{})
	dst := filepath.Join(t.TempDir(), "staging")
	o := clientOpts(src, dst)
	var calls []int64
	var total int64
	o.Progress = func(done, tot int64) { calls = append(calls, done); total = tot }

	got, err := Fetch(fetchCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d files, want 2", len(got))
	}
	for i, f := range got {
		if f.Name != files[i].Name || f.Path != filepath.Join(dst, filepath.FromSlash(files[i].Name)) {
			t.Errorf("file %d: %+v", i, f)
		}
		fi, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != f.Size || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: size %d (want %d), mode %v", f.Name, fi.Size(), f.Size, fi.Mode())
		}
		sameContent(t, files[i].Path, f.Path)
	}
	if want := int64(72 << 20); total != want || calls[len(calls)-1] != want {
		t.Errorf("progress: total %d, last %d; want %d", total, calls[len(calls)-1], want)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] < calls[i-1] {
			t.Fatalf("progress went back: %d after %d", calls[i], calls[i-1])
		}
	}
	if l := listDir(t, dst); strings.Join(l, " ") != "disk disk/overlay.qcow2 memory.bin" {
		t.Errorf("staging dir has %v", l)
	}
	// The sparse file stays sparse, where the file system has holes.
	if st, ok := statBlocks(files[0].Path); ok && st < 32<<20 {
		if dt, _ := statBlocks(got[0].Path); dt > 32<<20 {
			t.Errorf("fetched sparse file uses %d bytes (source %d)", dt, st)
		}
	}

	// Again: nothing is fetched.
	before := src.fileGets.Load()
	if _, err := Fetch(fetchCtx(t), o); err != nil {
		t.Fatal(err)
	}
	if n := src.fileGets.Load() - before; n != 0 {
		t.Errorf("second Fetch fetched %d files, want 0", n)
	}

	// A damaged copy (same size) is fetched again, the other one is not.
	damage(t, got[1].Path, 12345)
	os.Chtimes(got[1].Path, time.Now(), time.Now().Add(time.Second)) // a real change moves mtime
	before = src.fileGets.Load()
	if _, err := Fetch(fetchCtx(t), o); err != nil {
		t.Fatal(err)
	}
	if n := src.fileGets.Load() - before; n != 1 {
		t.Errorf("third Fetch fetched %d files, want 1", n)
	}
	sameContent(t, files[1].Path, got[1].Path)
}

func statBlocks(path string) (int64, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Blocks * 512, true
}

// damage flips a byte of the file at path, keeping its size and mtime.
func damage(t *testing.T, path string, off int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
}

// cutWriter writes n bytes of the body, then cuts the connection.
type cutWriter struct {
	http.ResponseWriter
	n int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) < c.n {
		c.n -= len(p)
		return c.ResponseWriter.Write(p)
	}
	c.ResponseWriter.Write(p[:c.n])
	http.NewResponseController(c.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

// cutFirst cuts the first response for the file named name after n bytes;
// before each request for it, it records the size of its part in dir.
func cutFirst(name string, n int, dir string, partSizes *[]int64) func(http.Handler) http.Handler {
	var once sync.Once
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/files/"+name) {
				h.ServeHTTP(w, r)
				return
			}
			size := int64(-1)
			if fi, err := os.Stat(filepath.Join(dir, name+partSuffix)); err == nil {
				size = fi.Size()
			}
			*partSizes = append(*partSizes, size)
			cut := false
			once.Do(func() { cut = true })
			if cut {
				w = &cutWriter{ResponseWriter: w, n: n}
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name      string
		file      string
		cutAt     int
		sameFetch bool // resumed by a retry of the same Fetch, else by a second Fetch
	}{
		{"retry/random data", "memory.bin", 3<<20 + 12345, true},
		{"retry/in a hole", "disk/overlay.qcow2", 20 << 20, true},
		{"second Fetch/random data", "memory.bin", 5<<20 + 1, false},
		{"second Fetch/in a hole", "disk/overlay.qcow2", 40<<20 + 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, files := twoFiles(t)
			dst := t.TempDir()
			var parts []int64
			src := startSource(t, files, sourceOpts{wrap: cutFirst(tc.file, tc.cutAt, dst, &parts)})
			o := clientOpts(src, dst)
			if !tc.sameFetch {
				o.Retries = -1
				_, err := Fetch(fetchCtx(t), o)
				if err == nil || !strings.Contains(err.Error(), tc.file) {
					t.Fatalf("first Fetch: %v, want an error naming %s", err, tc.file)
				}
				o.Retries = 0
			}
			got, err := Fetch(fetchCtx(t), o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				sameContent(t, files[i].Path, got[i].Path)
			}
			var ranges []string
			for _, r := range src.rangeHeaders() {
				ranges = append(ranges, r)
			}
			// The requests for the file: the first from 0, the second from
			// exactly where the cut was, which is the part's size.
			if len(parts) != 2 {
				t.Fatalf("%d requests for %s, want 2 (ranges %q)", len(parts), tc.file, ranges)
			}
			if parts[1] != int64(tc.cutAt) {
				t.Errorf("part had %d bytes at the second request, want %d", parts[1], tc.cutAt)
			}
			want := "bytes=" + strconv.Itoa(tc.cutAt) + "-"
			found := false
			for _, r := range ranges {
				if r == want {
					found = true
				}
			}
			if !found {
				t.Errorf("Range headers %q, want one %q", ranges, want)
			}
		})
	}
}

func TestChecksumMismatch(t *testing.T) {
	t.Run("changed after the manifest", func(t *testing.T) {
		_, files := twoFiles(t)
		var once sync.Once
		src := startSource(t, files, sourceOpts{wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				if strings.HasSuffix(r.URL.Path, "/manifest") {
					once.Do(func() { damage(t, files[1].Path, 4242) })
				}
			})
		}})
		dst := t.TempDir()
		_, err := Fetch(fetchCtx(t), clientOpts(src, dst))
		var ce *ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("got %v, want a ChecksumError", err)
		}
		if ce.Name != "memory.bin" || ce.Want == ce.Got || !validSum(ce.Want) || !validSum(ce.Got) {
			t.Errorf("ChecksumError %+v", ce)
		}
		for _, s := range []string{"memory.bin", ce.Want, ce.Got} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %s", err, s)
			}
		}
		// The first file is in place; the bad one twice fetched, and gone.
		if l := listDir(t, dst); strings.Join(l, " ") != "disk disk/overlay.qcow2" {
			t.Errorf("staging dir has %v", l)
		}
		if n := src.fileGets.Load(); n != 3 {
			t.Errorf("%d file requests, want 3", n)
		}
	})
	t.Run("damaged in flight once", func(t *testing.T) {
		_, files := twoFiles(t)
		var damaged atomic.Bool
		src := startSource(t, files, sourceOpts{wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/memory.bin") && damaged.CompareAndSwap(false, true) {
					w = &flipWriter{ResponseWriter: w, at: 1 << 20}
				}
				h.ServeHTTP(w, r)
			})
		}})
		got, err := Fetch(fetchCtx(t), clientOpts(src, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		sameContent(t, files[1].Path, got[1].Path)
		if n := src.fileGets.Load(); n != 3 {
			t.Errorf("%d file requests, want 3", n)
		}
	})
}

// flipWriter flips the byte at offset at of the body.
type flipWriter struct {
	http.ResponseWriter
	at, off int
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if i := f.at - f.off; i >= 0 && i < len(p) {
		q := append([]byte(nil), p...)
		q[i] ^= 1
		p = q
	}
	f.off += len(p)
	return f.ResponseWriter.Write(p)
}

func TestCancel(t *testing.T) {
	_, files := twoFiles(t)
	src := startSource(t, files, sourceOpts{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(&slowWriter{ResponseWriter: w, ctx: r.Context()}, r)
		})
	}})
	ctx, cancel := context.WithCancel(context.Background())
	var progressed sync.Once
	started := make(chan struct{})
	o := clientOpts(src, t.TempDir())
	o.Progress = func(done, total int64) {
		if done > 0 {
			progressed.Do(func() { close(started) })
		}
	}
	errc := make(chan error, 1)
	go func() { _, err := Fetch(ctx, o); errc <- err }()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("Fetch returned before any progress: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no progress")
	}
	t0 := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("Fetch took %v to stop", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Fetch did not stop")
	}
}

// slowWriter writes at most 64 KiB each 20ms.
type slowWriter struct {
	http.ResponseWriter
	ctx context.Context
}

func (s *slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 64<<10)
		m, err := s.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		http.NewResponseController(s.ResponseWriter).Flush()
		p = p[k:]
		select {
		case <-time.After(20 * time.Millisecond):
		case <-s.ctx.Done():
			return n, s.ctx.Err()
		}
	}
	return n, nil
}

func TestStall(t *testing.T) {
	_, files := twoFiles(t)
	var stalled atomic.Bool
	src := startSource(t, files, sourceOpts{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/memory.bin") && stalled.CompareAndSwap(false, true) {
				w = &stallWriter{ResponseWriter: w, after: 2 << 20, ctx: r.Context()}
			}
			h.ServeHTTP(w, r)
		})
	}})
	o := clientOpts(src, t.TempDir())
	o.StallTimeout = 300 * time.Millisecond
	got, err := Fetch(fetchCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	sameContent(t, files[1].Path, got[1].Path)
	if r := src.rangeHeaders(); len(r) != 3 || r[2] != "bytes=2097152-" {
		t.Errorf("ranges %q, want the third from 2097152", r)
	}
}

// stallWriter writes after bytes, then blocks until the request ends.
type stallWriter struct {
	http.ResponseWriter
	after int
	ctx   context.Context
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if len(p) < s.after {
		s.after -= len(p)
		return s.ResponseWriter.Write(p)
	}
	n, _ := s.ResponseWriter.Write(p[:s.after])
	http.NewResponseController(s.ResponseWriter).Flush()
	<-s.ctx.Done()
	return n, s.ctx.Err()
}

func TestManifestSums(t *testing.T) {
	_, files := twoFiles(t)
	src := startSource(t, files, sourceOpts{})
	f := &fetcher{o: clientOpts(src, t.TempDir())}
	if err := f.init(); err != nil {
		t.Fatal(err)
	}
	defer f.root.Close()
	entries, err := f.manifest(fetchCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		b, _ := os.ReadFile(files[i].Path)
		sum := sha256.Sum256(b)
		if e.Name != files[i].Name || e.Size != int64(len(b)) || e.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	// A change (same size and mtime is not one) shows in the next manifest.
	writeRandom(t, files[1].Path, 8<<20)
	os.Chtimes(files[1].Path, time.Now(), time.Now().Add(time.Second))
	again, err := f.manifest(fetchCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if again[1].SHA256 == entries[1].SHA256 || again[0] != entries[0] {
		t.Errorf("manifest after a change: %+v, before %+v", again, entries)
	}
	// A file of another size than announced is refused.
	src.files[0].Size = 1
	if _, err := f.manifest(fetchCtx(t)); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("got %v, want a 409", err)
	}
}

func TestFetchEmptyAndNested(t *testing.T) {
	dir := t.TempDir()
	empty, small := filepath.Join(dir, "empty"), filepath.Join(dir, "small")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(small, []byte("hello"), 0o600)
	src := startSource(t, []File{{Name: "a/b/c/empty", Path: empty}, {Name: "a/b/small", Path: small, Size: 5}}, sourceOpts{})
	dst := t.TempDir()
	// A leftover part of a file that turns out to be in place goes away.
	got, err := Fetch(fetchCtx(t), clientOpts(src, dst))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dst, "a/b/small.part"), []byte("hel"), 0o600)
	if got, err = Fetch(fetchCtx(t), clientOpts(src, dst)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Size != 0 || got[1].Size != 5 {
		t.Fatalf("got %+v", got)
	}
	sameContent(t, empty, got[0].Path)
	sameContent(t, small, got[1].Path)
	if l := listDir(t, dst); strings.Join(l, " ") != "a a/b a/b/c a/b/c/empty a/b/small" {
		t.Errorf("staging dir has %v", l)
	}
}
