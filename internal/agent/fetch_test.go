package agent

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/client"
)

// FetchImageFile is the cache's path: a cut answer is resumed, a
// corrupt one fetched again, the result is read-only under its sum, and
// a file already there is not fetched again.
func TestFetchImageFile(t *testing.T) {
	data := content(300<<10, 7)
	for _, tc := range []struct {
		name     string
		srv      *fileServer
		sha      string
		size     int64
		wantReqs int    // requests the server saw
		wantErr  string // "" for none
	}{
		{"whole", &fileServer{}, sum(data), int64(len(data)), 1, ""},
		{"cut then resumed", &fileServer{cuts: map[int]int{0: 100 << 10}}, sum(data), int64(len(data)), 2, ""},
		{"corrupt then fetched again", &fileServer{corrupt: 1}, sum(data), int64(len(data)), 2, ""},
		{"bad sum", &fileServer{}, "xyz", int64(len(data)), 0, "sha256"},
		{"unknown file", &fileServer{}, sum([]byte("other")), 5, 1, "no file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.srv.files = map[string][]byte{"img/disk": data}
			if tc.name == "unknown file" {
				tc.srv.files = nil
			}
			hs := httptest.NewServer(tc.srv.handler())
			defer hs.Close()
			cl, err := client.New(client.Config{Server: hs.URL, Token: "t"})
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "cache")
			path, err := FetchImageFile(context.Background(), cl, dir, "img", "disk", tc.sha, tc.size)
			if got := len(tc.srv.requests()); got != tc.wantReqs {
				t.Errorf("%d requests, want %d", got, tc.wantReqs)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FetchImageFile = %q, %v; want an error about %q", path, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if path != filepath.Join(dir, tc.sha) {
				t.Errorf("path %s, want %s", path, filepath.Join(dir, tc.sha))
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the cached file: %d bytes, %v; want the server's %d", len(got), err, len(data))
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o444 {
				t.Errorf("mode %v, want read-only", st.Mode().Perm())
			}
			before := len(tc.srv.requests())
			if again, err := FetchImageFile(context.Background(), cl, dir, "img", "disk", tc.sha, tc.size); err != nil || again != path {
				t.Errorf("second fetch: %q, %v", again, err)
			}
			if n := len(tc.srv.requests()) - before; n != 0 {
				t.Errorf("a cached file was fetched again (%d requests)", n)
			}
		})
	}
}
