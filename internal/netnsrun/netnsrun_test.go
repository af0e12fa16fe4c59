package netnsrun

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"vgrid/internal/testenv"
)

// f runs in the namespace; the caller's thread stays where it was.
func TestDo(t *testing.T) {
	orig := lockedHere(t)
	defer runtime.UnlockOSThread()
	var err error
	ns, err := netns.New() // moves this thread
	if err != nil {
		testenv.Skip(t, "cannot make a network namespace: %v", err)
	}
	defer ns.Close()
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	var inside netns.NsHandle
	err = Do(ns, func() error {
		inside, err = netns.Get()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(ns) {
		t.Errorf("f ran in %s, want %s", inside, ns)
	}
	if cur, _ := netns.Get(); !cur.Equal(orig) {
		t.Errorf("the caller's thread is in %s, want %s", cur, orig)
	}
	want := errors.New("boom")
	if err := Do(ns, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("f's error: got %v", err)
	}
}

// NewNamed makes a persistent namespace; the caller's thread stays.
func TestNewNamed(t *testing.T) {
	orig := lockedHere(t)
	defer runtime.UnlockOSThread()
	var err error
	name := fmt.Sprintf("vgrid-nsrun-%d", os.Getpid())
	h, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Error(err)
		}
	}()
	if h.Equal(orig) {
		t.Fatal("NewNamed returned the caller's namespace")
	}
	if cur, _ := netns.Get(); !cur.Equal(orig) {
		t.Errorf("the caller's thread moved to %s", cur)
	}
	byPath, err := netns.GetFromName(name)
	if err != nil || !byPath.Equal(h) {
		t.Errorf("/var/run/netns/%s: %v, %v; want the handle returned", name, byPath, err)
	}
	byPath.Close()
	if _, err := NewNamed(name); err == nil {
		t.Error("NewNamed of an existing name: no error")
	}
}

// lockedHere needs root, locks the test's goroutine to its thread (the
// caller unlocks it) and returns that thread's namespace, closed when the
// test ends.
func lockedHere(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to make a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() { orig.Close() })
	return orig
}
