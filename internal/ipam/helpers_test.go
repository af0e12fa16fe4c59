package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// checkErr checks that err is an *Error for field whose reason contains
// reason and that wraps kind; or that err is nil when field and reason
// are both empty.
func checkErr(t *testing.T, what string, err error, field, reason string, kind error) {
	t.Helper()
	if field == "" && reason == "" {
		if err != nil {
			t.Errorf("%s: got error %v, want none", what, err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: got %v (%T), want an *Error for %s", what, err, err, field)
		return
	}
	if e.Field != field {
		t.Errorf("%s: got field %q, want %q (error %v)", what, e.Field, field, err)
	}
	if !strings.Contains(e.Reason, reason) {
		t.Errorf("%s: got reason %q, want it to contain %q", what, e.Reason, reason)
	}
	if !errors.Is(err, kind) {
		t.Errorf("%s: got kind %v, want %v", what, e.Kind, kind)
	}
}

func addr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

func prefix(s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

func mustPool(t testing.TB, subnet string) Pool {
	t.Helper()
	p, err := NewPool(prefix(subnet))
	if err != nil {
		t.Fatalf("NewPool(%s): %v", subnet, err)
	}
	return p
}
