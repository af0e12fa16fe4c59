package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// FetchOptions says what Fetch fetches, from where, and how.
type FetchOptions struct {
	// URL of the source: https://host:port (a path prefix is kept).
	URL string
	// ID of the transfer.
	ID string
	// Dir is the staging directory, created if missing; the files land
	// there under their names.
	Dir string
	// TLS has the client certificate, the CA (RootCAs, required) and
	// ServerName, the source's host name (else the URL's host is used).
	TLS *tls.Config
	// Progress, if not nil, is told the bytes fetched (or found in place)
	// so far of the total of the manifest, after each chunk; never
	// concurrently. done goes back only when a file is fetched again
	// after a checksum mismatch.
	Progress func(done, total int64)
	// Retries after a failed attempt (network errors, 5xx): 0 → 5,
	// negative → none. An attempt that received bytes resets the count.
	Retries int
	// Backoff before the first retry, doubled each time up to 30s: 0 → 500ms.
	Backoff time.Duration
	// StallTimeout ends an attempt that received nothing for that long
	// (it is then retried): 0 → 60s.
	StallTimeout time.Duration
	// Log, if not nil, gets retries and completed files.
	Log *slog.Logger
}

// ChecksumError says that a file fetched (twice) does not have the sum of
// the manifest.
type ChecksumError struct {
	Name string
	Want string // the manifest's
	Got  string // the received file's
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("transfer: file %q: sha256 mismatch: manifest says %s, received %s", e.Name, e.Want, e.Got)
}

// StatusError is a refusal by the source, with its message.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("source answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// permanent marks an error that retrying will not cure.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

var errStalled = errors.New("no data received within the stall timeout")

const (
	defaultRetries = 5
	defaultBackoff = 500 * time.Millisecond
	maxBackoff     = 30 * time.Second
	defaultStall   = 60 * time.Second
	sumXattr       = "user.vgrid.transfer.sha256"
)

type fetcher struct {
	o           FetchOptions
	base        string
	client      *http.Client
	root        *os.Root
	log         *slog.Logger
	retries     int
	stall       time.Duration
	done, total int64
}

// Fetch fetches the files of transfer o.ID from o.URL into o.Dir and
// returns them (Path under o.Dir) in the manifest's order. See the package
// documentation.
func Fetch(ctx context.Context, o FetchOptions) ([]File, error) {
	f := &fetcher{o: o, log: o.Log, retries: o.Retries, stall: o.StallTimeout}
	if err := f.init(); err != nil {
		return nil, err
	}
	defer f.root.Close()
	defer f.client.CloseIdleConnections()

	entries, err := f.manifest(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		f.total += e.Size
	}
	f.setDone(0)
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		if err := f.fetchFile(ctx, e); err != nil {
			return nil, err
		}
		files = append(files, File{Name: e.Name, Path: filepath.Join(o.Dir, filepath.FromSlash(e.Name)), Size: e.Size})
	}
	return files, nil
}

func (f *fetcher) init() error {
	o := f.o
	u, err := url.Parse(o.URL)
	if err != nil {
		return fmt.Errorf("transfer: source URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("transfer: source URL %q: want https://host:port", o.URL)
	}
	if err := validID(o.ID); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if o.Dir == "" {
		return errors.New("transfer: no staging directory")
	}
	if o.TLS == nil || o.TLS.RootCAs == nil {
		return errors.New("transfer: the TLS configuration must have the CA (RootCAs)")
	}
	if o.TLS.InsecureSkipVerify {
		return errors.New("transfer: InsecureSkipVerify refused")
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.retries == 0 {
		f.retries = defaultRetries
	} else if f.retries < 0 {
		f.retries = 0
	}
	if f.stall <= 0 {
		f.stall = defaultStall
	}
	if f.o.Backoff <= 0 {
		f.o.Backoff = defaultBackoff
	}
	f.base = strings.TrimRight(o.URL, "/") + "/v1/transfers/" + o.ID

	tc := o.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 15 * time.Second}
	f.client = &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: 30 * time.Second,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			ReadBufferSize:      256 << 10,
			WriteBufferSize:     16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if f.root, err = os.OpenRoot(o.Dir); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	return nil
}

func (f *fetcher) setDone(n int64) {
	f.done = n
	if f.o.Progress != nil {
		f.o.Progress(n, f.total)
	}
}

// retry runs op until it succeeds, fails for good, or has failed
// f.retries+1 times in a row without progress, sleeping in between.
func (f *fetcher) retry(ctx context.Context, what string, op func() (progressed bool, err error)) error {
	delay := f.o.Backoff
	failures := 0
	for {
		progressed, err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("transfer: %s: %w", what, ctx.Err())
		}
		if !retryable(err) {
			return fmt.Errorf("transfer: %s: %w", what, err)
		}
		if progressed {
			failures, delay = 0, f.o.Backoff
		}
		failures++
		if failures > f.retries {
			return fmt.Errorf("transfer: %s: giving up after %d attempts: %w", what, failures, err)
		}
		d := delay/2 + rand.N(delay/2+1) // jitter
		f.log.Warn("transfer: retrying", "id", f.o.ID, "what", what, "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("transfer: %s: %w", what, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
}

func retryable(err error) bool {
	var p permanent
	var se *StatusError
	var ce *ChecksumError
	var oe *net.OpError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &p), errors.As(err, &ce), errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &rh):
		return false
	case errors.As(err, &se):
		return se.Code >= 500 || se.Code == http.StatusRequestTimeout || se.Code == http.StatusTooManyRequests
	case errors.As(err, &oe) && oe.Op == "remote error":
		return false // a TLS alert: the source refused our certificate
	}
	return true
}

func (f *fetcher) get(ctx context.Context, url string, off int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, permanent{err}
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	return f.client.Do(req)
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := strings.TrimSpace(string(b))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, msg)
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	return &StatusError{Code: resp.StatusCode, Message: msg}
}

func (f *fetcher) manifest(ctx context.Context) ([]entry, error) {
	var entries []entry
	err := f.retry(ctx, "manifest of "+f.o.ID, func() (bool, error) {
		resp, err := f.get(ctx, f.base+"/manifest", 0)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, statusError(resp)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
		if err != nil {
			return false, err
		}
		if entries, err = decodeManifest(data); err != nil {
			return false, permanent{err}
		}
		return false, nil
	})
	return entries, err
}

func (f *fetcher) fetchFile(ctx context.Context, e entry) error {
	t0 := time.Now()
	base := f.done
	if ok, err := f.inPlace(ctx, e); err != nil {
		return fmt.Errorf("transfer: file %q: %w", e.Name, err)
	} else if ok {
		f.log.Info("transfer: file already in place", "id", f.o.ID, "file", e.Name)
		f.root.Remove(e.Name + partSuffix) // a leftover, if any
		f.setDone(base + e.Size)
		return nil
	}
	if dir := path.Dir(e.Name); dir != "." {
		if err := f.root.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("transfer: file %q: %w", e.Name, err)
		}
	}
	part := e.Name + partSuffix
	for again := false; ; again = true {
		sum, err := f.download(ctx, e, part, base)
		if err != nil {
			return err
		}
		if sum == e.SHA256 {
			break
		}
		if err := f.root.Remove(part); err != nil {
			return fmt.Errorf("transfer: file %q: %w", e.Name, err)
		}
		cerr := &ChecksumError{Name: e.Name, Want: e.SHA256, Got: sum}
		if again {
			return cerr
		}
		f.log.Warn("transfer: fetching the file again", "id", f.o.ID, "err", cerr)
		f.setDone(base)
	}
	if err := f.root.Rename(part, e.Name); err != nil {
		return fmt.Errorf("transfer: file %q: %w", e.Name, err)
	}
	if err := f.syncDirs(e.Name); err != nil {
		return fmt.Errorf("transfer: file %q: %w", e.Name, err)
	}
	d := time.Since(t0)
	f.log.Info("transfer: file fetched", "id", f.o.ID, "file", e.Name, "bytes", e.Size, "took", d,
		"MBps", fmt.Sprintf("%.0f", float64(e.Size)/1e6/max(d.Seconds(), 1e-9)))
	f.setDone(base + e.Size)
	return nil
}

// syncDirs fsyncs the directory of name and those above it up to Dir.
func (f *fetcher) syncDirs(name string) error {
	for d := path.Dir(name); ; d = path.Dir(d) {
		df, err := f.root.Open(d)
		if err != nil {
			return err
		}
		err = df.Sync()
		df.Close()
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			return err
		}
		if d == "." {
			return nil
		}
	}
}

// inPlace reports whether e is already in place with its sum.
func (f *fetcher) inPlace(ctx context.Context, e entry) (bool, error) {
	fi, err := f.root.Lstat(e.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%s exists and is not a regular file", e.Name)
	}
	if fi.Size() != e.Size {
		return false, nil
	}
	file, err := f.root.Open(e.Name)
	if err != nil {
		return false, err
	}
	defer file.Close()
	if fi, err = file.Stat(); err != nil {
		return false, err
	}
	stamp := sumStamp(e.SHA256, fi)
	if getXattr(file, sumXattr) == stamp {
		return true, nil
	}
	h := sha256.New()
	if err := hashPrefix(ctx, h, file, fi.Size()); err != nil {
		return false, err
	}
	if hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return false, nil
	}
	setXattr(file, sumXattr, stamp)
	return true, nil
}

func sumStamp(sum string, fi os.FileInfo) string {
	return sum + " " + strconv.FormatInt(fi.Size(), 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
}

// hashPrefix adds the first n bytes of file to h.
func hashPrefix(ctx context.Context, h hash.Hash, file *os.File, n int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := file.ReadAt(buf[:min(int64(len(buf)), n-off)], off)
		h.Write(buf[:m])
		off += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && off == n) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return permanent{err}
		}
	}
	return nil
}

// download gets e into part, resuming from what part has, and returns the
// sum of the complete part. A part whose sum is e's is fsynced.
func (f *fetcher) download(ctx context.Context, e entry, part string, base int64) (string, error) {
	h := sha256.New()
	hashed := int64(-1) // the bytes of the part in h
	var sum string
	err := f.retry(ctx, fmt.Sprintf("file %q", e.Name), func() (bool, error) {
		pf, err := f.root.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return false, permanent{err}
		}
		defer pf.Close()
		fi, err := pf.Stat()
		if err != nil {
			return false, permanent{err}
		}
		if !fi.Mode().IsRegular() {
			return false, permanent{fmt.Errorf("%s is not a regular file", part)}
		}
		off := fi.Size()
		if off > e.Size {
			if err := pf.Truncate(0); err != nil {
				return false, permanent{err}
			}
			off = 0
		}
		if hashed != off {
			h.Reset()
			hashed = -1
			if err := hashPrefix(ctx, h, pf, off); err != nil {
				return false, err
			}
			hashed = off
		}
		f.setDone(base + off)
		start := off
		if off < e.Size {
			off, err = f.receive(ctx, e, pf, h, off, base)
			hashed = off
			if err != nil {
				// The part's size is where the next attempt resumes.
				if terr := pf.Truncate(off); terr != nil {
					hashed = -1
				}
				return off > start, err
			}
		}
		sum = hex.EncodeToString(h.Sum(nil))
		if sum == e.SHA256 {
			if fi, err := pf.Stat(); err == nil {
				setXattr(pf, sumXattr, sumStamp(sum, fi))
			}
			if err := pf.Sync(); err != nil {
				return false, permanent{err}
			}
		}
		if err := pf.Close(); err != nil {
			return false, permanent{err}
		}
		return false, nil
	})
	return sum, err
}

// receive gets the bytes of e from off on into pf and h; it returns how
// far the part is written (and hashed).
func (f *fetcher) receive(ctx context.Context, e entry, pf *os.File, h hash.Hash, off, base int64) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	go func() { // the stall watchdog
		t := time.NewTicker(max(f.stall/8, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if time.Since(time.Unix(0, last.Load())) > f.stall {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	netErr := func(err error) error {
		if context.Cause(ctx) == errStalled {
			return errStalled
		}
		return err
	}

	resp, err := f.get(ctx, f.base+"/files/"+e.Name, off)
	if err != nil {
		return off, netErr(err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off || end != e.Size-1 || total != e.Size {
			return off, permanent{fmt.Errorf("asked for bytes %d- of %d, source sent Content-Range %q (did the file change?)",
				off, e.Size, resp.Header.Get("Content-Range"))}
		}
	case http.StatusOK:
		if off > 0 { // the source ignored the range: start over
			if err := pf.Truncate(0); err != nil {
				return off, permanent{err}
			}
			h.Reset()
			off = 0
			f.setDone(base)
		}
	default:
		return off, statusError(resp)
	}
	if resp.ContentLength != e.Size-off {
		return off, permanent{fmt.Errorf("source sends %d bytes from %d, the manifest says %d in all (did the file change?)",
			resp.ContentLength, off, e.Size)}
	}

	// The network is read here, the file written and hashed by a second
	// goroutine, with a few large buffers between them.
	const nbuf = 4
	free := make(chan []byte, nbuf)
	full := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, bufSize)
	}
	written := off
	flushed := off // where writeback was last started
	var werr error
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		for b := range full {
			if werr == nil {
				if werr = writeSparse(pf, b, written); werr == nil {
					h.Write(b)
					written += int64(len(b))
					if written-flushed >= writebackChunk {
						startWriteback(pf, flushed, written-flushed)
						flushed = written
					}
					last.Store(time.Now().UnixNano())
					f.setDone(base + written)
				} else {
					cancel(werr)
				}
			}
			free <- b
		}
	}()
	body := &stallReader{r: resp.Body, last: &last}
	var rerr error
	for remaining := e.Size - off; remaining > 0; {
		b := <-free
		n, err := io.ReadFull(body, b[:min(int64(len(b)), remaining)])
		if n > 0 {
			full <- b[:n]
			remaining -= int64(n)
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(full)
	<-wdone
	if werr != nil {
		return written, permanent{werr}
	}
	if rerr != nil {
		if errors.Is(rerr, io.EOF) {
			rerr = io.ErrUnexpectedEOF
		}
		return written, netErr(rerr)
	}
	var one [1]byte
	resp.Body.Read(one[:])                      // reach EOF, so that the connection is reused
	if err := pf.Truncate(e.Size); err != nil { // a trailing hole
		return written, permanent{err}
	}
	return written, nil
}

type stallReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.last.Store(time.Now().UnixNano())
	}
	return n, err
}

const zeroBlock = 64 << 10

// writebackChunk is how much is written before writeback to disk is
// started, so that the disk works during the transfer, not after it.
const writebackChunk = 32 << 20

var zeros [zeroBlock]byte

// writeSparse writes b at off in file, except the blocks of zeros (aligned
// on the file's offsets), which are left as holes: the part is only ever
// written past its end, where the file reads as zeros.
func writeSparse(file *os.File, b []byte, off int64) error {
	run := -1 // start of the pending run of data
	for i := 0; i < len(b); {
		end := min(len(b), i+int(zeroBlock-(off+int64(i))%zeroBlock))
		if bytes.Equal(b[i:end], zeros[:end-i]) {
			if run >= 0 {
				if _, err := file.WriteAt(b[run:i], off+int64(run)); err != nil {
					return err
				}
				run = -1
			}
		} else if run < 0 {
			run = i
		}
		i = end
	}
	if run >= 0 {
		if _, err := file.WriteAt(b[run:], off+int64(run)); err != nil {
			return err
		}
	}
	return nil
}

// parseContentRange parses "bytes start-end/total".
func parseContentRange(s string) (start, end, total int64, ok bool) {
	s, ok = strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	rng, tot, ok1 := strings.Cut(s, "/")
	a, b, ok2 := strings.Cut(rng, "-")
	if !ok1 || !ok2 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	total, err3 = strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || total <= end {
		return 0, 0, 0, false
	}
	return start, end, total, true
}
