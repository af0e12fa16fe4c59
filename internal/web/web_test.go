package web

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
		body         string // a substring of the answer
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script type="module" src="/js/app.js">`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/calendar", 200, "text/html; charset=utf-8", "<title>vgrid</title>"}, // a route of the app
		{"GET", "/index.html", 200, "text/html; charset=utf-8", "<title>vgrid</title>"},
		{"GET", "/js/app.js", 200, "text/javascript; charset=utf-8", "import"},
		{"GET", "/js/../js/api.js", 200, "text/javascript; charset=utf-8", "export"},
		{"GET", "/app.css", 200, "text/css; charset=utf-8", ".vis-item.bar"},
		{"GET", "/vendor/vis-timeline-graph2d.min.js", 200, "text/javascript; charset=utf-8", "vis-timeline"},
		{"GET", "/vendor/vis-timeline-graph2d.min.css", 200, "text/css; charset=utf-8", ".vis-timeline"},
		{"GET", "/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/missing.js", 404, "", ""},
		{"GET", "/api/v1/whatever", 404, "", ""},
		{"GET", "/api", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"DELETE", "/js/app.js", 405, "", ""},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		what := tc.method + " " + tc.path
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d", what, w.Code, tc.status)
			continue
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: Content-Security-Policy %q", what, csp)
		}
		if tc.status != 200 {
			continue
		}
		if got := w.Header().Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", what, got, tc.ctype)
		}
		if w.Header().Get("ETag") == "" || w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q", what, w.Header().Get("ETag"), w.Header().Get("Cache-Control"))
		}
		if !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s: body lacks %q", what, tc.body)
		}
	}
}

func TestRevalidation(t *testing.T) {
	h := Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/js/app.js", nil))
	etag := w.Header().Get("ETag")
	r := httptest.NewRequest("GET", "/js/app.js", nil)
	r.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match of the current ETag: %d, want 304", w.Code)
	}
}

// The page must work under its own CSP: no inline script or style, no
// style attributes, and every file it names is served.
func TestIndexFitsCSP(t *testing.T) {
	b, err := fs.ReadFile(assets, "assets/index.html")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`).MatchString(page) || strings.Contains(page, "<style") ||
		regexp.MustCompile(`\sstyle=`).MatchString(page) || regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
		t.Error("index.html has inline script, style or event handlers, which the CSP refuses")
	}
	h := Handler()
	for _, m := range regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", m[1], nil))
		if w.Code != 200 || strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("index.html names %s: %d %s", m[1], w.Code, w.Header().Get("Content-Type"))
		}
	}
}

// The vendored files are exactly the ones VENDOR.md pins.
func TestVendorPinned(t *testing.T) {
	doc, err := fs.ReadFile(assets, "assets/vendor/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| `[^`]+` \\| `([0-9a-f]{64})` \\|$").FindAllStringSubmatch(string(doc), -1)
	if len(rows) < 2 {
		t.Fatalf("VENDOR.md lists %d files with sums", len(rows))
	}
	for _, r := range rows {
		b, err := fs.ReadFile(assets, "assets/vendor/"+r[1])
		if err != nil {
			t.Errorf("%s: %v", r[1], err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != r[2] {
			t.Errorf("%s: sha256 %s, VENDOR.md says %s", r[1], got, r[2])
		}
	}
}

// Mounted by its patterns beside an API catch-all, the dashboard takes
// the root, its files and one-segment routes, and leaves the API and
// deeper unknown paths alone.
func TestPatterns(t *testing.T) {
	mux := http.NewServeMux()
	h := Handler()
	for _, p := range Patterns {
		mux.Handle(p, h)
	}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(298) })
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", 200}, {"HEAD", "/", 200}, {"GET", "/calendar", 200}, {"GET", "/app.css", 200},
		{"GET", "/js/app.js", 200}, {"GET", "/vendor/VENDOR.md", 200}, {"GET", "/vendor/nope.js", 404},
		{"GET", "/healthz", 298}, {"GET", "/api/v1/whoami", 299}, {"POST", "/api/v1/plan", 299},
		{"GET", "/nowhere/at/all", 404}, {"POST", "/", 405},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, w.Code, tc.status)
		}
	}
}
