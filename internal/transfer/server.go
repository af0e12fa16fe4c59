package transfer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Errors authorize may return (or wrap) to choose the status of a refusal:
// ErrNotFound → 404, anything else → 403. The error's text is sent to the
// peer.
var (
	ErrNotFound  = errors.New("no such transfer")
	ErrForbidden = errors.New("not allowed")
)

// Server serves the files of transfers to the peers that authorize allows.
type Server struct {
	authorize func(peerHost, id string) ([]File, error)
	log       *slog.Logger
	mux       *http.ServeMux
	sums      sumCache
}

// NewServer returns a Server. authorize is called on every request with the
// peer host (the CN of its verified client certificate) and the transfer id;
// it returns the files of that transfer the peer may fetch, or an error
// (see ErrNotFound). It may be called concurrently. log may be nil.
func NewServer(authorize func(peerHost string, id string) ([]File, error), log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{authorize: authorize, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/transfers/{id}/manifest", s.manifest)
	s.mux.HandleFunc("GET /v1/transfers/{id}/files/{name...}", s.file)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

// files authenticates and authorizes a request; it answers it and returns
// ok=false if it may not go on.
func (s *Server) files(w http.ResponseWriter, r *http.Request) (peer, id string, files []File, ok bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		httpError(w, http.StatusUnauthorized, "a verified client certificate is required")
		return "", "", nil, false
	}
	peer = r.TLS.VerifiedChains[0][0].Subject.CommonName
	if peer == "" {
		httpError(w, http.StatusForbidden, "the client certificate has no common name")
		return "", "", nil, false
	}
	id = r.PathValue("id")
	if err := validID(id); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return "", "", nil, false
	}
	files, err := s.authorize(peer, id)
	if err != nil {
		code := http.StatusForbidden
		if errors.Is(err, ErrNotFound) {
			code = http.StatusNotFound
		}
		s.log.Warn("transfer refused", "peer", peer, "id", id, "err", err)
		httpError(w, code, "transfer %s for %s: %v", id, peer, err)
		return "", "", nil, false
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	if err := checkNames(names); err != nil {
		s.log.Error("transfer: authorize returned bad names", "peer", peer, "id", id, "err", err)
		httpError(w, http.StatusInternalServerError, "transfer %s: %v", id, err)
		return "", "", nil, false
	}
	return peer, id, files, true
}

// stat checks that f is a regular file of the size announced, if any.
func stat(f File) (os.FileInfo, int, error) {
	fi, err := os.Stat(f.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, http.StatusNotFound, fmt.Errorf("file %q: missing on the source", f.Name)
		}
		return nil, http.StatusInternalServerError, fmt.Errorf("file %q: %v", f.Name, err)
	}
	code, err := checkInfo(f, fi)
	return fi, code, err
}

func checkInfo(f File, fi os.FileInfo) (int, error) {
	if !fi.Mode().IsRegular() {
		return http.StatusInternalServerError, fmt.Errorf("file %q: not a regular file on the source", f.Name)
	}
	if f.Size != 0 && fi.Size() != f.Size {
		return http.StatusConflict, fmt.Errorf("file %q: %d bytes on the source, %d expected", f.Name, fi.Size(), f.Size)
	}
	return 0, nil
}

func (s *Server) manifest(w http.ResponseWriter, r *http.Request) {
	peer, id, files, ok := s.files(w, r)
	if !ok {
		return
	}
	start := time.Now()
	entries := make([]entry, len(files))
	for i, f := range files {
		fi, code, err := stat(f)
		if err == nil {
			entries[i] = entry{Name: f.Name, Size: fi.Size()}
			entries[i].SHA256, err = s.sums.sum(r.Context(), f.Path, fi)
			if _, changed := err.(errChanged); changed {
				code, err = http.StatusConflict, fmt.Errorf("file %q: %v", f.Name, err)
			} else if err != nil {
				code, err = http.StatusInternalServerError, fmt.Errorf("file %q: %v", f.Name, err)
			}
		}
		if err != nil {
			s.log.Error("transfer manifest", "peer", peer, "id", id, "err", err)
			httpError(w, code, "transfer %s: %v", id, err)
			return
		}
	}
	body, err := encodeManifest(entries)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "transfer %s: %v", id, err)
		return
	}
	s.log.Info("transfer manifest", "peer", peer, "id", id, "files", len(entries), "took", time.Since(start))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	peer, id, files, ok := s.files(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if err := ValidName(name); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var file File
	found := false
	for _, f := range files {
		if f.Name == name {
			file, found = f, true
			break
		}
	}
	if !found {
		httpError(w, http.StatusNotFound, "transfer %s has no file %q", id, name)
		return
	}
	f, err := os.Open(file.Path)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, os.ErrNotExist) {
			code = http.StatusNotFound
		}
		httpError(w, code, "file %q: %v", name, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "file %q: %v", name, err)
		return
	}
	if code, err := checkInfo(file, fi); err != nil {
		httpError(w, code, "%v", err)
		return
	}
	size := fi.Size()
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		httpError(w, http.StatusRequestedRangeNotSatisfiable, "file %q: %v", name, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	code := http.StatusOK
	if partial {
		code = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	t0 := time.Now()
	n, err := copyRange(w, f, start, end)
	if err != nil {
		s.log.Warn("transfer file interrupted", "peer", peer, "id", id, "file", name, "from", start, "sent", n, "err", err)
		// Make sure the peer sees a short body, not a complete one.
		panic(http.ErrAbortHandler)
	}
	s.log.Info("transfer file sent", "peer", peer, "id", id, "file", name, "from", start, "bytes", n, "took", time.Since(t0))
}

// copyRange copies the bytes [start, end) of f to w with a large buffer.
func copyRange(w io.Writer, f *os.File, start, end int64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var sent int64
	for off := start; off < end; {
		b := buf[:min(int64(len(buf)), end-off)]
		n, err := f.ReadAt(b, off)
		if n > 0 {
			m, werr := w.Write(b[:n])
			sent += int64(m)
			if werr != nil {
				return sent, werr
			}
			off += int64(n)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off == end) {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("file shrank to %d bytes while being sent", off)
			}
			return sent, err
		}
	}
	return sent, nil
}

// parseRange interprets a Range header for a file of size bytes: the range
// [start, end) to send and whether it is partial. Only a single byte range
// is honored; other forms are ignored (the whole file is sent), as RFC 9110
// allows. An unsatisfiable range is an error (416).
func parseRange(header string, size int64) (start, end int64, partial bool, err error) {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if header == "" || !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, false, nil
	}
	num := func(s string) (int64, bool) {
		if s == "" || len(s) > 19 {
			return 0, false
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if first == "" { // suffix: the last n bytes
		n, ok := num(last)
		if !ok {
			return 0, size, false, nil
		}
		if n == 0 {
			return 0, 0, false, fmt.Errorf("empty suffix range %q", header)
		}
		return max(0, size-n), size, true, nil
	}
	a, ok := num(first)
	if !ok {
		return 0, size, false, nil
	}
	b := size - 1
	if last != "" {
		if b, ok = num(last); !ok || b < a {
			return 0, size, false, nil
		}
	}
	if a >= size {
		return 0, 0, false, fmt.Errorf("range %q beyond the end (%d bytes)", header, size)
	}
	return a, min(b, size-1) + 1, true, nil
}
