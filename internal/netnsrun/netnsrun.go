package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on a locked OS thread moved into ns, then moves the thread
// back. If it cannot be moved back it stays locked, so it ends with its
// goroutine instead of serving other goroutines from the wrong namespace.
func Do(ns netns.NsHandle, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("this thread's namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("back to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// NewNamed makes the persistent network namespace name
// (/var/run/netns/<name>) and returns a handle to it, from a thread of its
// own: the caller's thread stays where it is.
func NewNamed(name string) (netns.NsHandle, error) {
	orig, err := netns.Get()
	if err != nil {
		return netns.None(), fmt.Errorf("this thread's namespace: %w", err)
	}
	defer orig.Close()
	h := netns.None()
	// Do moves its thread back to orig after f, wherever f left it.
	err = Do(orig, func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil && h.IsOpen() {
		h.Close()
		h = netns.None()
	}
	return h, err
}
