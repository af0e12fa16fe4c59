package netnsrun

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"vgrid/internal/testenv"
)

// f runs in the namespace; the caller's thread stays where it was.
func TestDo(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to make a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
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
