package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A plain http:// address of another machine is refused (the token would
// cross the network in the clear) unless Insecure says so; https and
// this machine's loopback are fine.
func TestInsecurePlainHTTPRefused(t *testing.T) {
	for _, tc := range []struct {
		server   string
		insecure bool
		ok       bool
	}{
		{"http://vgrid.example.org:7443", false, false},
		{"http://10.0.0.5:7443", false, false},
		{"http://[2001:db8::1]:7443", false, false},
		{"HTTP://10.0.0.5:7443", false, false},
		{"http://10.0.0.5:7443", true, true},
		{"https://10.0.0.5:7443", false, true},
		{"http://127.0.0.1:7443", false, true},
		{"http://127.8.0.1:7443", false, true},
		{"http://[::1]:7443", false, true},
		{"http://localhost:7443", false, true},
		{"http://localhost.example.org:7443", false, false},
	} {
		_, err := New(Config{Server: tc.server, Token: "vgu_secret", Insecure: tc.insecure})
		if tc.ok && err != nil {
			t.Errorf("%s (insecure %v): %v", tc.server, tc.insecure, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--insecure")) {
			t.Errorf("%s (insecure %v): %v, want a refusal naming --insecure", tc.server, tc.insecure, err)
		}
	}
}

// With --insecure the token does go over plain http (the test server is
// on loopback, so this checks the request, not the refusal).
func TestInsecureSendsToken(t *testing.T) {
	var got string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Write([]byte("{}"))
	}))
	defer hs.Close()
	c, err := New(Config{Server: hs.URL, Token: "vgu_secret", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), "GET", "/whoami", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got != "Bearer vgu_secret" {
		t.Fatalf("Authorization %q", got)
	}
}

// Insecure is never read from or written to a config file.
func TestInsecureNotInConfigFile(t *testing.T) {
	path := t.TempDir() + "/client.json"
	if err := (Config{Server: "http://10.0.0.5:7443", Token: "t", Insecure: true}).Save(path); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Insecure {
		t.Fatal("Insecure came back from the file")
	}
	if _, err := New(c); err == nil {
		t.Fatal("a saved config allowed plain http")
	}
}
