package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// csp lets the page load scripts, styles, images and connections from
// its own origin only: no inline script or style, no eval, no frames.
// The vendored library is the build that injects no <style> elements
// (assets/vendor/VENDOR.md), so none is needed.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'self'"

// contentTypes are set explicitly: the system's MIME table may lack or
// misname some (text/javascript for ES modules matters: browsers refuse
// a module served as anything else).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".md":   "text/markdown; charset=utf-8",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json",
}

// Patterns are the http.ServeMux patterns to mount Handler on beside an
// API: the root, one-segment paths (the page's files and its routes,
// e.g. /calendar), and the directories of its modules and of the
// vendored library. Deeper unknown paths stay unrouted (404 from the
// mux), and none overlaps /api/.
var Patterns = []string{"GET /{$}", "GET /{page}", "GET /js/", "GET /vendor/"}

type file struct {
	data        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard: its files by path, index.html for "/" and
// for any other path without a file extension (the page routes itself),
// 404 for a missing file and for anything under /api/, 405 for methods
// other than GET and HEAD. Every answer carries a strict
// Content-Security-Policy; files are revalidated by ETag on each load
// (they change with the binary).
func Handler() http.Handler {
	root, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := map[string]*file{}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		ct := contentTypes[path.Ext(p)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		files["/"+p] = &file{data: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	index := files["/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		if p == "/api" || strings.HasPrefix(p, "/api/") {
			http.NotFound(w, r)
			return
		}
		f := files[p]
		if f == nil {
			if path.Ext(p) != "" {
				http.NotFound(w, r)
				return
			}
			f = index // a page of the app: it reads its route itself
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
	})
}
