package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
)

// fileServer serves image files as the control plane does
// (http.ServeContent, so ranges work), misbehaving on purpose: it cuts
// answers short, flips bytes, or ignores ranges.
type fileServer struct {
	files map[string][]byte // by "image/which"

	mu sync.Mutex
	// cuts[i] > 0: answer i (0-based, over all requests) stops after that
	// many bytes of body and the connection is dropped.
	cuts map[int]int
	// corrupt is how many answers (the first ones) have a byte flipped.
	corrupt int
	// extra appends bytes to every answer (a server file longer than its
	// record).
	extra []byte
	// ignoreRange answers 200 with the whole file to every request.
	ignoreRange bool
	// delay holds each answer back (to make callers overlap).
	delay time.Duration
	// ranges records the Range header of every request ("" for none).
	ranges []string
}

func (s *fileServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.Prefix+"/images/{name}/files/{file}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		i := len(s.ranges)
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		cut, flip, extra, ignore, delay := s.cuts[i], i < s.corrupt, s.extra, s.ignoreRange, s.delay
		s.mu.Unlock()
		time.Sleep(delay)
		data, ok := s.files[r.PathValue("name")+"/"+r.PathValue("file")]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"not_found","message":"image %s has no file %s"}}`, r.PathValue("name"), r.PathValue("file"))
			return
		}
		data = append(append([]byte(nil), data...), extra...)
		if flip {
			data[len(data)/2] ^= 0x40
		}
		if ignore {
			r.Header.Del("Range")
		}
		var out http.ResponseWriter = w
		if cut > 0 {
			out = &cutWriter{ResponseWriter: w, left: cut}
		}
		http.ServeContent(out, r, "", time.Unix(1700000000, 0), bytes.NewReader(data))
	})
	return mux
}

func (s *fileServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// cutWriter passes left bytes of body and then drops the connection.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) <= c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.left])
	c.left = 0
	c.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// content is n bytes that differ from position to position.
func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/251) ^ seed
	}
	return b
}

// cacheRig is an image cache talking to a fileServer through the real
// client.
type cacheRig struct {
	srv   *fileServer
	cl    *client.Client
	cache *imageCache
	logs  *syncBuffer
}

func newCacheRig(t *testing.T, srv *fileServer) *cacheRig {
	t.Helper()
	hs := httptest.NewServer(srv.handler())
	t.Cleanup(hs.Close)
	cl, err := client.New(client.Config{Server: hs.URL, Token: "node-token"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	c := &imageCache{dir: filepath.Join(t.TempDir(), "images"), log: slog.New(slog.NewTextHandler(logs, nil)),
		retryWait: time.Millisecond}
	return &cacheRig{srv: srv, cl: cl, cache: c, logs: logs}
}

// image registers a firmware-boot image of one disk with the cache and
// the server.
func (r *cacheRig) image(name string, disk []byte) model.Image {
	if r.srv.files == nil {
		r.srv.files = map[string][]byte{}
	}
	r.srv.files[name+"/disk"] = disk
	img := model.Image{Name: name, Boot: "firmware", DiskFormat: "raw",
		Disk: model.ImageFile{SHA256: sum(disk), Size: int64(len(disk))}}
	r.cache.known(img)
	return img
}

func checkCached(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, sha256 %s; want %d bytes, %s", path, len(got), sum(got), len(want), sum(want))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o444 {
		t.Fatalf("%s: mode %v, want read-only", path, st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), partPrefix+filepath.Base(path))); !os.IsNotExist(err) {
		t.Fatalf("the part of %s is still there (%v)", path, err)
	}
}

func TestImageCacheResumes(t *testing.T) {
	disk := content(300_000, 1)
	tests := []struct {
		name string
		cuts map[int]int
		// part is what an earlier agent process left in the part file.
		part        []byte
		ignoreRange bool
		// want is the Range of each request; "from>0" is any resume.
		want []string
		// warn is a log line expected.
		warn string
	}{
		{name: "whole at once", want: []string{""}},
		{name: "cut once", cuts: map[int]int{0: 70_000}, want: []string{"", "bytes=70000-"}, warn: "image file download cut; resuming"},
		{name: "cut twice", cuts: map[int]int{0: 1000, 1: 100_000}, want: []string{"", "bytes=1000-", "bytes=101000-"}},
		{name: "part of an earlier run", part: disk[:123_456], want: []string{"bytes=123456-"}, warn: "resuming image file download"},
		{name: "server ignores the range", cuts: map[int]int{0: 5000}, ignoreRange: true, want: []string{"", "bytes=5000-"}},
		{name: "damaged part of an earlier run", part: append(append([]byte(nil), disk[:999]...), disk[999]^1),
			want: []string{"bytes=1000-", ""}, warn: "image file corrupt, fetching again"},
		{name: "whole part of an earlier run", part: disk, want: nil},
		{name: "part longer than the file", part: append(append([]byte(nil), disk...), 'x'), want: []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCacheRig(t, &fileServer{cuts: tc.cuts, ignoreRange: tc.ignoreRange})
			img := r.image("img", disk)
			if tc.part != nil {
				if err := os.MkdirAll(r.cache.dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(r.cache.dir, partPrefix+img.Disk.SHA256), tc.part, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			li, err := r.cache.ensure(context.Background(), r.cl, "img")
			if err != nil {
				t.Fatalf("ensure: %v\nlog:\n%s", err, r.logs)
			}
			if li.Disk != filepath.Join(r.cache.dir, img.Disk.SHA256) {
				t.Fatalf("disk at %s", li.Disk)
			}
			checkCached(t, li.Disk, disk)
			if got := r.srv.requests(); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("requests with ranges %q, want %q", got, tc.want)
			}
			if tc.warn != "" && !strings.Contains(r.logs.String(), tc.warn) {
				t.Fatalf("no %q in the log:\n%s", tc.warn, r.logs)
			}
		})
	}
}

func TestImageCacheVerifies(t *testing.T) {
	disk := content(50_000, 2)
	tests := []struct {
		name     string
		corrupt  int
		extra    []byte
		requests int
		warnings int
		err      string
	}{
		{name: "good", requests: 1},
		{name: "first corrupt", corrupt: 1, requests: 2, warnings: 1},
		{name: "two corrupt", corrupt: 2, requests: 3, warnings: 2},
		{name: "three corrupt", corrupt: 3, requests: 3, warnings: 2,
			err: "disk of image img: the download did not match its sha256 3 times"},
		{name: "server file longer", extra: []byte("trailing"), requests: 3, warnings: 2,
			err: "disk of image img: the download did not match its sha256 3 times"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCacheRig(t, &fileServer{corrupt: tc.corrupt, extra: tc.extra})
			img := r.image("img", disk)
			li, err := r.cache.ensure(context.Background(), r.cl, "img")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), img.Disk.SHA256) {
					t.Fatalf("ensure: %v, want an error with %q and the sha256", err, tc.err)
				}
				if _, serr := os.Stat(filepath.Join(r.cache.dir, img.Disk.SHA256)); !os.IsNotExist(serr) {
					t.Fatalf("a file that failed its check is in the cache (%v)", serr)
				}
			} else {
				if err != nil {
					t.Fatalf("ensure: %v", err)
				}
				checkCached(t, li.Disk, disk)
			}
			if got := len(r.srv.requests()); got != tc.requests {
				t.Fatalf("%d requests, want %d", got, tc.requests)
			}
			logs := r.logs.String()
			if got := strings.Count(logs, "image file corrupt, fetching again"); got != tc.warnings {
				t.Fatalf("%d corruption warnings, want %d:\n%s", got, tc.warnings, logs)
			}
			if tc.warnings > 0 && !strings.Contains(logs, "want="+img.Disk.SHA256) {
				t.Fatalf("the warning does not name the wanted sum:\n%s", logs)
			}
		})
	}
}

// A failing server answer that asking again cannot mend ends ensure at
// once, and a cancelled context stops the retries.
func TestImageCacheGivesUp(t *testing.T) {
	disk := content(10_000, 3)
	r := newCacheRig(t, &fileServer{})
	r.image("img", disk)
	delete(r.srv.files, "img/disk")
	_, err := r.cache.ensure(context.Background(), r.cl, "img")
	if err == nil || !strings.Contains(err.Error(), "image img has no file disk") {
		t.Fatalf("ensure of a file the server lacks: %v", err)
	}
	if n := len(r.srv.requests()); n != 1 {
		t.Fatalf("%d requests for a file the server lacks, want 1", n)
	}
	if _, err := r.cache.ensure(context.Background(), r.cl, "other"); err == nil || !strings.Contains(err.Error(), `image "other" is not known`) {
		t.Fatalf("ensure of an unknown image: %v", err)
	}
}

func TestImageCacheConcurrent(t *testing.T) {
	a, b := content(200_000, 4), content(100_000, 5)
	r := newCacheRig(t, &fileServer{delay: 50 * time.Millisecond})
	r.image("a", a)
	r.image("b", b)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	paths := make(chan string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"a", "b"}[i%2]
			li, err := r.cache.ensure(context.Background(), r.cl, name)
			errs <- err
			paths <- name + "=" + li.Disk
		}()
	}
	wg.Wait()
	close(errs)
	close(paths)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for p := range paths {
		seen[p] = true
	}
	if len(seen) != 2 {
		t.Fatalf("paths handed out: %v", seen)
	}
	if n := len(r.srv.requests()); n != 2 {
		t.Fatalf("%d downloads for two files, want 2", n)
	}
	checkCached(t, filepath.Join(r.cache.dir, sum(a)), a)
	checkCached(t, filepath.Join(r.cache.dir, sum(b)), b)
}

func TestImageCacheLRU(t *testing.T) {
	const kb = 1000
	old := time.Now().Add(-time.Hour)
	// Cached files, oldest use first.
	type cached struct {
		name  string
		size  int
		part  bool // a part left by a download not under way
		inUse bool
	}
	tests := []struct {
		name    string
		limit   int64
		cached  []cached
		newSize int
		// evicted are the names expected gone; err the error's words.
		evicted []string
		err     []string
	}{
		{name: "no limit", limit: 0, cached: []cached{{name: "x", size: 10 * kb}, {name: "y", size: 10 * kb}}, newSize: 10 * kb},
		{name: "room enough", limit: 40 * kb, cached: []cached{{name: "x", size: 10 * kb}, {name: "y", size: 10 * kb}}, newSize: 10 * kb},
		{name: "oldest unused goes", limit: 30 * kb,
			cached:  []cached{{name: "x", size: 10 * kb}, {name: "y", size: 10 * kb}, {name: "z", size: 10 * kb}},
			newSize: 10 * kb, evicted: []string{"x"}},
		{name: "in use is kept", limit: 30 * kb,
			cached:  []cached{{name: "x", size: 10 * kb, inUse: true}, {name: "y", size: 10 * kb}, {name: "z", size: 10 * kb}},
			newSize: 10 * kb, evicted: []string{"y"}},
		{name: "as many as needed", limit: 40 * kb,
			cached:  []cached{{name: "x", size: 10 * kb}, {name: "y", size: 10 * kb, inUse: true}, {name: "z", size: 10 * kb}, {name: "w", size: 10 * kb}},
			newSize: 15 * kb, evicted: []string{"x", "z"}},
		{name: "a stale part goes too", limit: 30 * kb,
			cached:  []cached{{name: "p", size: 15 * kb, part: true}, {name: "x", size: 10 * kb}},
			newSize: 10 * kb, evicted: []string{"p"}},
		{name: "too big with all in use", limit: 30 * kb,
			cached:  []cached{{name: "x", size: 10 * kb, inUse: true}, {name: "y", size: 10 * kb, inUse: true}, {name: "z", size: 5 * kb}},
			newSize: 15 * kb,
			err:     []string{"disk of image new", "needs 14.6Ki (15000 bytes)", "limit is 29.3Ki (30000 bytes)", "19.5Ki (20000 bytes) of it is in use"}},
		{name: "bigger than the limit", limit: 10 * kb, newSize: 11 * kb,
			err: []string{"needs 10.7Ki (11000 bytes)", "limit is 9.8Ki (10000 bytes)", "0 (0 bytes) of it is in use"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCacheRig(t, &fileServer{})
			r.cache.limit = tc.limit
			if err := os.MkdirAll(r.cache.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			inUse := map[string]bool{}
			names := map[string]string{} // path -> name
			for i, c := range tc.cached {
				data := content(c.size, byte(10+i))
				path := filepath.Join(r.cache.dir, sum(data))
				if c.part {
					path = filepath.Join(r.cache.dir, partPrefix+sum(data))
				}
				if err := os.WriteFile(path, data, 0o444); err != nil {
					t.Fatal(err)
				}
				at := old.Add(time.Duration(i) * time.Minute)
				if err := os.Chtimes(path, at, at); err != nil {
					t.Fatal(err)
				}
				if c.inUse {
					inUse[sum(data)] = true
				}
				names[path] = c.name
			}
			r.cache.inUse = func() map[string]bool { return inUse }
			disk := content(tc.newSize, 99)
			r.image("new", disk)
			li, err := r.cache.ensure(context.Background(), r.cl, "new")
			var gone []string
			for path, name := range names {
				if _, serr := os.Stat(path); os.IsNotExist(serr) {
					gone = append(gone, name)
				}
			}
			sort.Strings(gone)
			want := append([]string(nil), tc.evicted...)
			sort.Strings(want)
			if strings.Join(gone, ",") != strings.Join(want, ",") {
				t.Fatalf("evicted %v, want %v", gone, want)
			}
			if tc.err != nil {
				if err == nil {
					t.Fatal("ensure succeeded, want an error")
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q lacks %q", err, w)
					}
				}
				if n := len(r.srv.requests()); n != 0 {
					t.Fatalf("%d requests for a file refused room", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("ensure: %v\n%s", err, r.logs)
			}
			checkCached(t, li.Disk, disk)
		})
	}
}

// ensure records each use in the file's mtime, so a file just used is
// the last to go.
func TestImageCacheUseMovesToFront(t *testing.T) {
	r := newCacheRig(t, &fileServer{})
	x, y, z := content(10_000, 1), content(10_000, 2), content(10_000, 3)
	r.image("x", x)
	r.image("y", y)
	ctx := context.Background()
	for _, n := range []string{"x", "y"} {
		if _, err := r.cache.ensure(ctx, r.cl, n); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for i, d := range [][]byte{x, y} {
		at := old.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(filepath.Join(r.cache.dir, sum(d)), at, at); err != nil {
			t.Fatal(err)
		}
	}
	// x, the older, is used again: y goes to make room for z.
	if _, err := r.cache.ensure(ctx, r.cl, "x"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(r.cache.dir, sum(x))); err != nil || time.Since(st.ModTime()) > time.Minute {
		t.Fatalf("x's use not recorded: %v %v", st.ModTime(), err)
	}
	r.cache.limit = 20_000
	r.image("z", z)
	if _, err := r.cache.ensure(ctx, r.cl, "z"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d    []byte
		want bool
	}{{x, true}, {y, false}, {z, true}} {
		_, err := os.Stat(filepath.Join(r.cache.dir, sum(c.d)))
		if have := err == nil; have != c.want {
			t.Fatalf("%s in the cache: %v, want %v", sum(c.d)[:8], have, c.want)
		}
	}
}

// Progress of a long download is logged with bytes, total and rate.
func TestImageCacheLogsProgress(t *testing.T) {
	r := newCacheRig(t, &fileServer{})
	r.cache.progressEvery = time.Nanosecond
	var rates []int64
	r.cache.rate = func(n int64) { rates = append(rates, n) }
	disk := content(3<<20, 6)
	r.image("img", disk)
	if _, err := r.cache.ensure(context.Background(), r.cl, "img"); err != nil {
		t.Fatal(err)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "image file download progress") || !strings.Contains(logs, fmt.Sprintf("total=%d", len(disk))) || !strings.Contains(logs, "rate=") {
		t.Fatalf("no progress logged:\n%s", logs)
	}
	if len(rates) != 1 || rates[0] <= 0 {
		t.Fatalf("rates told: %v", rates)
	}
}

func TestImagesInUse(t *testing.T) {
	file := func(s string) model.ImageFile { return model.ImageFile{SHA256: sum([]byte(s)), Size: 1} }
	imgA := model.Image{Name: "a", Boot: "direct", Disk: file("a-disk"), Kernel: &model.ImageFile{SHA256: sum([]byte("kernel")), Size: 1}}
	imgB := model.Image{Name: "b", Boot: "firmware", Disk: file("b-disk")}
	imgC := model.Image{Name: "c", Boot: "firmware", Disk: file("c-disk")}
	ws := func(id, image string) model.Workspace {
		return model.Workspace{ID: id, Spec: model.WorkspaceSpec{Name: id, Image: image}}
	}
	tests := []struct {
		name     string
		assigned []model.Workspace
		liveIn   []model.Workspace
		// instances are started on the driver (by ID).
		instances []string
		want      []string
	}{
		{name: "nothing", want: nil},
		{name: "assigned, with and without an instance", assigned: []model.Workspace{ws("w1", "a"), ws("w2", "b")}, instances: []string{"w1"},
			want: []string{imgA.Disk.SHA256, imgA.Kernel.SHA256, imgB.Disk.SHA256}},
		{name: "migrating here", liveIn: []model.Workspace{ws("w3", "b")}, instances: []string{"w3"}, want: []string{imgB.Disk.SHA256}},
		{name: "an instance of no workspace: everything", assigned: []model.Workspace{ws("w1", "a")}, instances: []string{"w1", "stray"},
			want: []string{"everything"}},
		{name: "an image not known: everything", assigned: []model.Workspace{ws("w1", "nosuch")}, want: []string{"everything"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			drv := fake.New(filepath.Join(dir, "state"))
			defer drv.Close()
			c := &imageCache{dir: filepath.Join(dir, "images"), log: quiet()}
			for _, img := range []model.Image{imgA, imgB, imgC} {
				c.known(img)
			}
			// The cache holds all four files.
			if err := os.MkdirAll(c.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			all := []string{imgA.Disk.SHA256, imgA.Kernel.SHA256, imgB.Disk.SHA256, imgC.Disk.SHA256}
			for _, s := range all {
				if err := os.WriteFile(filepath.Join(c.dir, s), []byte("x"), 0o444); err != nil {
					t.Fatal(err)
				}
			}
			a := &Agent{log: quiet(), drv: drv, images: c, assigned: map[string]model.Workspace{}, liveIn: map[string]model.Workspace{}}
			for _, w := range tc.assigned {
				a.assigned[w.ID] = w
			}
			for _, w := range tc.liveIn {
				a.liveIn[w.ID] = w
			}
			for _, id := range tc.instances {
				if _, err := drv.Start(context.Background(), hypervisor.InstanceSpec{ID: id,
					Quantum: model.Quantum{VCPUs: 1, Memory: 128 << 20, Disk: model.GiB},
					Image:   hypervisor.LocalImage{Name: "a", Boot: "firmware", Disk: "/d", DiskFormat: "raw"}}); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.want
			if len(want) == 1 && want[0] == "everything" {
				want = all
			}
			var got []string
			for s := range a.imagesInUse() {
				got = append(got, s)
			}
			sort.Strings(got)
			want = append([]string(nil), want...)
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("in use %v\nwant %v", got, want)
			}
		})
	}
}

// Through the control plane's own handler (TLS, node credentials): a
// range is answered 206 from the offset, and a part left by an earlier
// run is resumed to the right file.
func TestImageCacheWithControlPlane(t *testing.T) {
	logs := &syncBuffer{}
	r := newRigAgent(t, nil, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		c.ImageCacheBytes = 10 << 20
	})
	ctx := context.Background()
	disk := []byte(strings.Repeat("content of rootfs.img", 1000)) // as addImage writes it
	// The node shows registered a moment before the agent keeps its client.
	r.eventually("the agent's node client", func() bool { return r.agent.client() != nil })
	cl := r.agent.client()
	rc, total, err := cl.ImageFileFrom(ctx, "vgrid-guest", "disk", 5000)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if fb, ok := rc.(*client.FileBody); !ok || fb.Start != 5000 || total != int64(len(disk)) || err != nil || !bytes.Equal(body, disk[5000:]) {
		t.Fatalf("range answer: %T start %v, total %d, %d bytes, %v", rc, rc, total, len(body), err)
	}
	dir := filepath.Join(r.dataDir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, partPrefix+sum(disk)), disk[:5000], 0o600); err != nil {
		t.Fatal(err)
	}
	imgs, err := r.user.Images(ctx)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("images %v, %v", imgs, err)
	}
	r.agent.images.known(imgs[0]) // as the assignments of a workspace on it would
	li, err := r.agent.images.ensure(ctx, cl, "vgrid-guest")
	if err != nil {
		t.Fatal(err)
	}
	checkCached(t, li.Disk, disk)
	if l := logs.String(); !strings.Contains(l, "resuming image file download") || !strings.Contains(l, "have=5000") || strings.Contains(l, "corrupt") {
		t.Fatalf("log:\n%s", l)
	}
}
