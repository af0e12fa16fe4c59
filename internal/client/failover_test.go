package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vgrid/api"
)

// replicaStub answers like a replica: `notLeader` times 503 not_leader,
// then 200 with {"ok":true}; hang drops the connection after reading the
// request instead (a leader killed mid-request).
type replicaStub struct {
	notLeader int32
	hang      bool
	calls     atomic.Int32
}

func (s *replicaStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.calls.Add(1)
	if s.hang {
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
		return
	}
	if n <= s.notLeader {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"` + api.CodeNotLeader + `","message":"no replica leads"}}`))
		return
	}
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// deadURL is an address nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func TestFailover(t *testing.T) {
	tests := []struct {
		name     string
		stubs    []*replicaStub // nil: a dead address
		method   string
		key      string // an idempotency key
		wantErr  string
		wantHits []int32 // calls per stub
	}{
		{"first dead, second answers", []*replicaStub{nil, {}}, "POST", "", "", []int32{0, 1}},
		{"a follower without a leader, then the leader", []*replicaStub{{notLeader: 100}, {}}, "POST", "", "", []int32{1, 1}},
		{"an election: not_leader twice everywhere, then answers", []*replicaStub{{notLeader: 2}}, "POST", "", "", []int32{3}},
		{"a write cut after it was sent is not retried", []*replicaStub{{hang: true}, {}}, "POST", "", "EOF", []int32{1, 0}},
		{"a keyed write cut after it was sent is retried", []*replicaStub{{hang: true}, {}}, "POST", "k", "", []int32{1, 1}},
		{"a read cut after it was sent is retried elsewhere", []*replicaStub{{hang: true}, {}}, "GET", "", "", []int32{1, 1}},
		{"one server that does not answer: an error at once", []*replicaStub{nil}, "GET", "", "connection refused", nil},
		{"one server, a keyed write cut: not retried there", []*replicaStub{{hang: true}}, "POST", "k", "EOF", []int32{1}},
		{"never a leader: gives up after the FailoverWait", []*replicaStub{{notLeader: 1000}}, "POST", "", "no replica leads", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			for _, s := range tc.stubs {
				if s == nil {
					urls = append(urls, deadURL(t))
					continue
				}
				srv := httptest.NewServer(s)
				defer srv.Close()
				urls = append(urls, srv.URL)
			}
			c, err := New(Config{Server: strings.Join(urls, ","), Token: "t", FailoverWait: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]bool
			err = c.do(context.Background(), tc.method, "/x", tc.key, map[string]int{"a": 1}, &out)
			if tc.wantErr == "" {
				if err != nil || !out["ok"] {
					t.Fatalf("got %v, %v", out, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			for i, want := range tc.wantHits {
				if got := tc.stubs[i]; got != nil && got.calls.Load() != want {
					t.Errorf("replica %d got %d calls, want %d", i, got.calls.Load(), want)
				}
			}
			if tc.wantErr == "" && c.base() != strings.TrimRight(urls[len(urls)-1], "/")+api.Prefix && len(urls) > 1 {
				t.Errorf("the client stays on %s, want the replica that answered", c.base())
			}
		})
	}
}

func TestServerList(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"https://a:1,https://b:2", ""},
		{"https://a:1, https://b:2", ""},
		{"https://a:1,ftp://b", `"ftp://b": want https://host:port`},
		{"https://a:1,,https://b:2", `"": want https://host:port`},
		{"https://a:1,http://10.0.0.1:2", "plain http"},
	} {
		_, err := New(Config{Server: tc.in})
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(%q): %v, want %q", tc.in, err, tc.err)
		}
	}
}
