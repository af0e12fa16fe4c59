package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"vgrid/api"
)

func TestImageFileFrom(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 100))
	tests := []struct {
		name   string
		offset int64
		// ignoreRange answers 200 with the whole file; badRange sends a
		// Content-Range that does not start at the offset.
		ignoreRange, badRange bool
		wantRange             string
		wantStart, wantTotal  int64
		wantBody              []byte
		wantStatus            int // an *Error of this status
		wantErr               string
	}{
		{name: "whole", offset: 0, wantRange: "", wantStart: 0, wantTotal: 1000, wantBody: data},
		{name: "from the middle", offset: 400, wantRange: "bytes=400-", wantStart: 400, wantTotal: 1000, wantBody: data[400:]},
		{name: "last byte", offset: 999, wantRange: "bytes=999-", wantStart: 999, wantTotal: 1000, wantBody: data[999:]},
		{name: "range ignored", offset: 400, ignoreRange: true, wantRange: "bytes=400-", wantStart: 0, wantTotal: 1000, wantBody: data},
		{name: "past the end", offset: 1000, wantRange: "bytes=1000-", wantStatus: http.StatusRequestedRangeNotSatisfiable},
		{name: "wrong range answered", offset: 400, badRange: true, wantRange: "bytes=400-", wantErr: "Content-Range starts at 0, asked for 400"},
		{name: "negative offset", offset: -1, wantErr: "offset -1: want 0 or more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotRange, gotPath, gotAuth string
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotRange, gotPath, gotAuth = r.Header.Get("Range"), r.URL.Path, r.Header.Get("Authorization")
				if tc.ignoreRange {
					r.Header.Del("Range")
				}
				if tc.badRange {
					w.Header().Set("Content-Range", "bytes 0-999/1000")
					w.WriteHeader(http.StatusPartialContent)
					w.Write(data)
					return
				}
				http.ServeContent(w, r, "", time.Unix(1, 0), bytes.NewReader(data))
			}))
			defer hs.Close()
			c, err := New(Config{Server: hs.URL, Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			rc, total, err := c.ImageFileFrom(context.Background(), "img 1", "disk", tc.offset)
			if tc.wantErr != "" || tc.wantStatus != 0 {
				var ce *Error
				switch {
				case err == nil:
					rc.Close()
					t.Fatal("no error")
				case tc.wantStatus != 0 && (!errors.As(err, &ce) || ce.Status != tc.wantStatus):
					t.Fatalf("error %v, want status %d", err, tc.wantStatus)
				case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if gotPath != api.Prefix+"/images/img 1/files/disk" || gotAuth != "Bearer tok" {
				t.Fatalf("request %q with %q", gotPath, gotAuth)
			}
			if gotRange != tc.wantRange {
				t.Fatalf("Range %q, want %q", gotRange, tc.wantRange)
			}
			fb, ok := rc.(*FileBody)
			if !ok {
				t.Fatalf("body %T, want *FileBody", rc)
			}
			if fb.Start != tc.wantStart || total != tc.wantTotal {
				t.Fatalf("start %d total %d, want %d %d", fb.Start, total, tc.wantStart, tc.wantTotal)
			}
			body, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(body, tc.wantBody) {
				t.Fatalf("body %d bytes (%v), want %d", len(body), err, len(tc.wantBody))
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 5-9/5", 0, 0, false},
		{"bytes 9-3/20", 0, 0, false},
		{"100-199/200", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"bytes x-2/3", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		start, total, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (start != tc.start || total != tc.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, ok %v", tc.in, start, total, err, tc.start, tc.total, tc.ok)
		}
	}
}

// FuzzParseContentRange: the header comes from the server; no input
// panics, and what is accepted is a consistent range.
func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 100-199/200")
	f.Fuzz(func(t *testing.T, s string) {
		start, total, err := parseContentRange(s)
		if err != nil {
			return
		}
		if start < 0 || (total != -1 && total <= start) {
			t.Fatalf("%q: start %d total %d", s, start, total)
		}
	})
}
