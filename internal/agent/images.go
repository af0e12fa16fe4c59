package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// imageCache keeps image files on the host, named by their SHA-256, so an
// image is fetched from the control plane once per host and every
// workspace disk is a copy-on-write overlay on the cached base.
//
// A file is downloaded into <dir>/.part-<sha256>; a download cut short
// (a network error, an agent restart) goes on from the part's end with an
// HTTP range. The whole file is checked against its SHA-256 before it is
// made read-only and renamed to <dir>/<sha256>; a file that does not match
// is deleted and fetched again from the start, up to maxCorrupt times.
//
// With a limit, the cache evicts, before and after each download, the
// least recently used files no workspace of this host uses (inUse). A
// file's last use is its mtime, set each time ensure hands it out (a
// workspace starts, resumes, is adopted or prepared from it), so the
// order survives an agent restart.
type imageCache struct {
	dir string
	log *slog.Logger
	// rate, if set, is told the rate of each file received (bytes/s).
	rate func(int64)
	// limit is the most bytes the cache may hold (files, parts and
	// downloads under way); 0: no limit.
	limit int64
	// inUse returns the SHA-256 sums of the files that workspaces of this
	// host use (their disks are overlays on them): never evicted. nil:
	// none.
	inUse func() map[string]bool
	// retryWait is the pause before the first resume of a cut download
	// (it grows with each further one); 0: a second.
	retryWait time.Duration
	// progressEvery is the least time between two progress logs of a
	// download (which also wait for a tenth of the file); 0: 5 s.
	progressEvery time.Duration

	// mu guards images and locks.
	mu     sync.Mutex
	images map[string]model.Image
	locks  map[string]*fileLock // by sha256: one download per file

	// space serialises the cache's size decisions and guards reserved.
	space    sync.Mutex
	reserved map[string]int64 // downloads under way: their files' sizes, by sha256
}

// fileLock is held while a file is looked for and downloaded; users
// counts who holds or waits for it.
type fileLock struct {
	ch    chan struct{}
	users int
}

const (
	// maxCorrupt is how many downloads of a file may fail its check
	// before ensure gives up.
	maxCorrupt = 3
	// maxResumes is how many times one ensure resumes a cut download
	// before it gives up (the part stays for the next call).
	maxResumes = 5
	partPrefix = ".part-"
)

func (c *imageCache) known(img model.Image) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.images == nil {
		c.images = map[string]model.Image{}
	}
	c.images[img.Name] = img
}

// cached lists (sorted) the known images whose files are all in the
// cache: a start there copies nothing.
func (c *imageCache) cached() []string {
	c.mu.Lock()
	imgs := make([]model.Image, 0, len(c.images))
	for _, img := range c.images {
		imgs = append(imgs, img)
	}
	c.mu.Unlock()
	out := []string{}
	for _, img := range imgs {
		have := true
		for _, f := range imageFiles(img) {
			if _, err := os.Stat(filepath.Join(c.dir, f.SHA256)); err != nil {
				have = false
				break
			}
		}
		if have {
			out = append(out, img.Name)
		}
	}
	sort.Strings(out)
	return out
}

// imageFiles are the files of an image: its disk, kernel and initrd.
func imageFiles(img model.Image) []*model.ImageFile {
	out := []*model.ImageFile{&img.Disk}
	if img.Kernel != nil {
		out = append(out, img.Kernel)
	}
	if img.Initrd != nil {
		out = append(out, img.Initrd)
	}
	return out
}

// filesOf returns the SHA-256 sums of the named images' files, and false
// if one of them is not known to the cache.
func (c *imageCache) filesOf(names map[string]bool) (map[string]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	complete := true
	for name := range names {
		img, ok := c.images[name]
		if !ok {
			complete = false
			continue
		}
		for _, f := range imageFiles(img) {
			out[f.SHA256] = true
		}
	}
	return out, complete
}

// everything returns every file in the cache, as inUse does: what an
// agent that cannot tell which files are used says, so that none is
// evicted.
func (c *imageCache) everything() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(c.dir)
	for _, e := range ents {
		if validSHA256(e.Name()) {
			out[e.Name()] = true
		}
	}
	return out
}

// ensure returns the image with local paths, downloading what is missing,
// and records the use of its files (their mtime) for the cache's LRU
// order. It is safe for concurrent use: the same file is downloaded once
// at a time (a second caller waits for the first), different files in
// parallel.
func (c *imageCache) ensure(ctx context.Context, cl *client.Client, name string) (hypervisor.LocalImage, error) {
	c.mu.Lock()
	img, ok := c.images[name]
	c.mu.Unlock()
	if !ok {
		return hypervisor.LocalImage{}, fmt.Errorf("image %q is not known to this host", name)
	}
	li := hypervisor.LocalImage{Name: img.Name, Boot: img.Boot, DiskFormat: img.DiskFormat, Cmdline: img.Cmdline, MinDisk: img.MinDisk}
	// The image's own files are never evicted to make room for each other.
	keep := map[string]bool{}
	for _, f := range imageFiles(img) {
		keep[f.SHA256] = true
	}
	var err error
	if li.Disk, err = c.file(ctx, cl, img.Name, "disk", &img.Disk, keep); err != nil {
		return li, err
	}
	if img.Kernel != nil {
		if li.Kernel, err = c.file(ctx, cl, img.Name, "kernel", img.Kernel, keep); err != nil {
			return li, err
		}
	}
	if img.Initrd != nil {
		if li.Initrd, err = c.file(ctx, cl, img.Name, "initrd", img.Initrd, keep); err != nil {
			return li, err
		}
	}
	now := time.Now()
	for _, p := range []string{li.Disk, li.Kernel, li.Initrd} {
		if p == "" {
			continue
		}
		if err := os.Chtimes(p, now, now); err != nil {
			c.log.Warn("record the use of an image file", "image", img.Name, "path", p, "err", err)
		}
	}
	return li, nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// lockFile takes the download lock of sha, or returns ctx's error.
func (c *imageCache) lockFile(ctx context.Context, sha string) (func(), error) {
	c.mu.Lock()
	if c.locks == nil {
		c.locks = map[string]*fileLock{}
	}
	l := c.locks[sha]
	if l == nil {
		l = &fileLock{ch: make(chan struct{}, 1)}
		c.locks[sha] = l
	}
	l.users++
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		if l.users--; l.users == 0 {
			delete(c.locks, sha)
		}
		c.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// present says whether the cache has f whole. A file of the wrong size
// (left by a crash before its data reached the disk) is removed.
func (c *imageCache) present(image, which, path string, f *model.ImageFile) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	if st.Size() == f.Size {
		return true
	}
	c.log.Warn("image file corrupt, fetching again", "image", image, "file", which,
		"got", fmt.Sprintf("%d bytes", st.Size()), "want", fmt.Sprintf("%d bytes", f.Size))
	_ = os.Remove(path)
	return false
}

func (c *imageCache) file(ctx context.Context, cl *client.Client, image, which string, f *model.ImageFile, keep map[string]bool) (string, error) {
	if !validSHA256(f.SHA256) {
		return "", fmt.Errorf("%s of image %s has no valid sha256 (want 64 lowercase hex digits)", which, image)
	}
	if f.Size < 0 {
		return "", fmt.Errorf("%s of image %s: size %d is negative", which, image, f.Size)
	}
	path := filepath.Join(c.dir, f.SHA256)
	if c.present(image, which, path, f) {
		return path, nil
	}
	unlock, err := c.lockFile(ctx, f.SHA256)
	if err != nil {
		return "", err
	}
	defer unlock()
	if c.present(image, which, path, f) {
		return path, nil // another caller fetched it meanwhile
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	if err := c.admit(image, which, f, keep); err != nil {
		return "", err
	}
	err = c.fetch(ctx, cl, image, which, f, path)
	c.space.Lock()
	delete(c.reserved, f.SHA256)
	c.space.Unlock()
	if err != nil {
		return "", err
	}
	if c.limit > 0 {
		if err := c.makeRoom(0, "", keep); err != nil {
			c.log.Warn("image cache over its limit after a download", "err", err)
		}
	}
	return path, nil
}

// admit makes room for f (evicting) and reserves its size while it is
// downloaded, or says why it cannot fit.
func (c *imageCache) admit(image, which string, f *model.ImageFile, keep map[string]bool) error {
	if c.limit <= 0 {
		return nil
	}
	c.space.Lock()
	defer c.space.Unlock()
	if err := c.makeRoomLocked(f.Size, f.SHA256, keep); err != nil {
		return fmt.Errorf("%s of image %s: %w", which, image, err)
	}
	if c.reserved == nil {
		c.reserved = map[string]int64{}
	}
	c.reserved[f.SHA256] = f.Size
	return nil
}

// makeRoom evicts until need more bytes fit under the limit.
func (c *imageCache) makeRoom(need int64, target string, keep map[string]bool) error {
	c.space.Lock()
	defer c.space.Unlock()
	return c.makeRoomLocked(need, target, keep)
}

// cacheEntry is a file in the cache directory.
type cacheEntry struct {
	name  string
	sha   string
	part  bool
	size  int64
	mtime time.Time
}

// makeRoomLocked evicts the least recently used files (and parts of
// downloads not under way) that no workspace uses, none in keep, until
// need more bytes fit under the limit; the part of target, whose download
// is about to start, counts as need. If they cannot fit even with every
// such file gone, it evicts nothing and says how much is needed, the limit
// and how much is in use. c.space is held.
func (c *imageCache) makeRoomLocked(need int64, target string, keep map[string]bool) error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	var inUse map[string]bool
	if c.inUse != nil {
		inUse = c.inUse()
	}
	var used, usedByWorkspaces, downloading int64
	var victims []cacheEntry
	for sha, n := range c.reserved {
		if sha != target {
			used += n
			downloading += n
		}
	}
	for _, e := range ents {
		ce := cacheEntry{name: e.Name()}
		switch {
		case validSHA256(ce.name):
			ce.sha = ce.name
		case strings.HasPrefix(ce.name, partPrefix) && validSHA256(ce.name[len(partPrefix):]):
			ce.sha, ce.part = ce.name[len(partPrefix):], true
		case strings.HasPrefix(ce.name, ".fetch-"):
			// A download of an earlier agent version, cut by a crash.
			_ = os.Remove(filepath.Join(c.dir, ce.name))
			continue
		default:
			continue
		}
		if ce.part && (ce.sha == target || c.reserved[ce.sha] > 0) {
			continue // counted as need, or as a download under way
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		ce.size, ce.mtime = info.Size(), info.ModTime()
		used += ce.size
		switch {
		case ce.part:
			victims = append(victims, ce)
		case inUse[ce.sha] || keep[ce.sha]:
			usedByWorkspaces += ce.size
		case c.reserved[ce.sha] > 0:
			// being replaced (a damaged file): not evicted
		default:
			victims = append(victims, ce)
		}
	}
	if used+need <= c.limit {
		return nil
	}
	var freeable int64
	for _, v := range victims {
		freeable += v.size
	}
	if used-freeable+need > c.limit {
		msg := fmt.Sprintf("needs %s (%d bytes) in the image cache, whose limit is %s (%d bytes); %s (%d bytes) of it is in use by workspaces on this host or by the image's other files",
			human(need), need, human(c.limit), c.limit, human(usedByWorkspaces), usedByWorkspaces)
		if downloading > 0 {
			msg += fmt.Sprintf(" and %s (%d bytes) by other downloads under way", human(downloading), downloading)
		}
		return errors.New(msg)
	}
	sort.Slice(victims, func(i, j int) bool {
		if !victims[i].mtime.Equal(victims[j].mtime) {
			return victims[i].mtime.Before(victims[j].mtime)
		}
		return victims[i].name < victims[j].name
	})
	for _, v := range victims {
		if used+need <= c.limit {
			break
		}
		if err := os.Remove(filepath.Join(c.dir, v.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("image cache: evict %s: %w", v.name, err)
		}
		used -= v.size
		c.log.Info("image file evicted from the cache", "sha256", v.sha, "partial", v.part, "bytes", v.size, "last_used", v.mtime, "limit", c.limit)
	}
	return nil
}

func human(n int64) string { return model.ByteSize(n).Human() }

// fetch downloads f to path: resuming its part, checking its sum,
// fetching it again from the start when the sum differs.
func (c *imageCache) fetch(ctx context.Context, cl *client.Client, image, which string, f *model.ImageFile, path string) error {
	part := filepath.Join(c.dir, partPrefix+f.SHA256)
	corrupt, resumes := 0, 0
	for {
		got, err := c.download(ctx, cl, image, which, f, part)
		if err == nil && got == f.SHA256 {
			return c.install(part, path)
		}
		var corruptErr *corruptAnswer
		switch {
		case err == nil || errors.As(err, &corruptErr):
			if err != nil {
				got = corruptErr.got
			}
			_ = os.Remove(part)
			corrupt++
			if corrupt >= maxCorrupt {
				return fmt.Errorf("%s of image %s: the download did not match its sha256 %d times (last got %s, want %s): the control plane's copy may be damaged",
					which, image, corrupt, got, f.SHA256)
			}
			c.log.Warn("image file corrupt, fetching again", "image", image, "file", which, "got", got, "want", f.SHA256, "attempt", corrupt)
		case ctx.Err() != nil:
			return ctx.Err()
		case permanent(err):
			return fmt.Errorf("download %s of image %s: %w", which, image, err)
		default:
			resumes++
			if resumes > maxResumes {
				return fmt.Errorf("download %s of image %s: %w (cut %d times; what arrived is kept and resumed at the next attempt)", which, image, err, resumes)
			}
			have := int64(0)
			if st, serr := os.Stat(part); serr == nil {
				have = st.Size()
			}
			wait := c.retryWait
			if wait <= 0 {
				wait = time.Second
			}
			wait = min(wait*time.Duration(resumes), 30*time.Second)
			c.log.Warn("image file download cut; resuming", "image", image, "file", which, "have", have, "total", f.Size, "in", wait, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
}

// corruptAnswer is a download that cannot be the file: the server refused
// the range the part's size asked for (the part is longer than its file).
type corruptAnswer struct{ got string }

func (e *corruptAnswer) Error() string { return "corrupt download: " + e.got }

// permanent says whether a download error would not go away by asking
// again: an answer of the API saying no (the image is gone, the host may
// not read it), or a local failure.
func permanent(err error) bool {
	var ce *client.Error
	if errors.As(err, &ce) {
		switch ce.Status {
		case http.StatusRequestTimeout, http.StatusTooManyRequests:
			return false
		}
		return ce.Status < 500
	}
	var le *localError
	return errors.As(err, &le)
}

// localError is a failure of this host (its disk), not of the transfer.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// download brings the part of f to its full size, resuming from what it
// holds, and returns the SHA-256 of the whole part. A part longer than f
// is started again.
func (c *imageCache) download(ctx context.Context, cl *client.Client, image, which string, f *model.ImageFile, part string) (string, error) {
	fh, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", &localError{err}
	}
	defer fh.Close()
	h := sha256.New()
	// Rehash what an earlier attempt left.
	have, err := io.Copy(h, fh)
	if err != nil {
		return "", &localError{fmt.Errorf("read %s: %w", part, err)}
	}
	if have > f.Size {
		if err := restart(fh, h); err != nil {
			return "", err
		}
		have = 0
	}
	if have == f.Size && have > 0 {
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if have > 0 {
		c.log.Info("resuming image file download", "image", image, "file", which, "have", have, "total", f.Size)
	} else {
		c.log.Info("fetching image file", "image", image, "file", which, "bytes", f.Size)
	}
	rc, _, err := cl.ImageFileFrom(ctx, image, which, have)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == http.StatusRequestedRangeNotSatisfiable {
		// The server's file is shorter than the part: not the file.
		return "", &corruptAnswer{got: fmt.Sprintf("a range from %d refused: the server's file is shorter", have)}
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if fb, ok := rc.(*client.FileBody); ok && fb.Start == 0 && have > 0 {
		// The whole file came instead of the range.
		if err := restart(fh, h); err != nil {
			return "", err
		}
		have = 0
	}
	if _, err := fh.Seek(have, io.SeekStart); err != nil {
		return "", &localError{err}
	}
	// One byte more than the file may be is read, so that a longer answer
	// fails the check without filling the disk.
	src := io.LimitReader(rc, f.Size-have+1)
	n, err := c.copyProgress(image, which, fh, h, src, have, f.Size)
	if err != nil {
		return "", err
	}
	if err := fh.Sync(); err != nil {
		return "", &localError{err}
	}
	if have+n != f.Size {
		return "", &corruptAnswer{got: fmt.Sprintf("%d bytes (want %d)", have+n, f.Size)}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// restart empties a part and its hash.
func restart(fh *os.File, h hash.Hash) error {
	h.Reset()
	if err := fh.Truncate(0); err != nil {
		return &localError{err}
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return &localError{err}
	}
	return nil
}

// copyProgress copies src to the part and its hash, logging progress of
// long downloads (at most every progressEvery and every tenth of the
// file) and telling c.rate the rate at the end. It returns the bytes
// copied; a read error comes back as it is, a write error as a
// localError.
func (c *imageCache) copyProgress(image, which string, dst io.Writer, h hash.Hash, src io.Reader, have, total int64) (int64, error) {
	every := c.progressEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	buf := make([]byte, 1<<20)
	t0 := time.Now()
	lastAt, lastBytes := t0, have
	var n int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				return n, &localError{err}
			}
			h.Write(buf[:k])
			n += int64(k)
			now := time.Now()
			if done := have + n; now.Sub(lastAt) >= every && (done-lastBytes)*10 >= total {
				rate := int64(float64(n) / now.Sub(t0).Seconds())
				c.log.Info("image file download progress", "image", image, "file", which, "bytes", done, "total", total,
					"percent", done*100/max(total, 1), "rate", human(rate)+"/s")
				lastAt, lastBytes = now, done
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr
		}
	}
	if took := time.Since(t0); c.rate != nil && n >= 1<<20 && took > 0 {
		c.rate(int64(float64(n) / took.Seconds()))
	}
	return n, nil
}

// install makes a checked part the cache's read-only file, atomically.
func (c *imageCache) install(part, path string) error {
	// Base images are never written: overlays take the writes.
	if err := os.Chmod(part, 0o444); err != nil {
		return err
	}
	if err := os.Rename(part, path); err != nil {
		return err
	}
	if d, err := os.Open(c.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	return nil
}

// imagesInUse returns the SHA-256 sums of the cached files that
// workspaces of this host use or may use: the images of every workspace
// assigned here (running, starting, stopped or suspended with a disk on
// the base), of those migrating here, and the images staged here for
// reservations. If the driver has an instance
// the agent cannot tie to a workspace (one that moved away and is not yet
// deleted, one no workspace wants, or any before the first assignments
// arrived), or an image is not known, it cannot tell which base that disk
// is on, and answers every file in the cache.
func (a *Agent) imagesInUse() map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	insts, listErr := a.drv.List(ctx)
	names := map[string]bool{}
	ids := map[string]bool{}
	a.mu.Lock()
	for id, w := range a.assigned {
		names[w.Spec.Image], ids[id] = true, true
	}
	for id, w := range a.liveIn {
		names[w.Spec.Image], ids[id] = true, true
	}
	a.mu.Unlock()
	// Images staged for reservations due here are kept for them.
	a.stage.mu.Lock()
	for img := range a.stage.wanted {
		names[img] = true
	}
	a.stage.mu.Unlock()
	var strays []string
	for _, in := range insts {
		if !ids[in.ID] {
			strays = append(strays, in.ID)
		}
	}
	files, complete := a.images.filesOf(names)
	switch {
	case listErr != nil:
		a.log.Warn("image cache: cannot list this host's instances, so no cached image file is evicted", "err", listErr)
	case len(strays) > 0:
		a.log.Info("image cache: instances of no workspace assigned here are on this host; their images are not known, so no cached image file is evicted", "instances", strays)
	case !complete:
		a.log.Info("image cache: a workspace of this host has an image not known yet, so no cached image file is evicted")
	default:
		return files
	}
	return a.images.everything()
}
