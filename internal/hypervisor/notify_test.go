package hypervisor

import (
	"testing"
	"time"
)

func TestNotifierCoalesces(t *testing.T) {
	n := NewNotifier()
	defer n.Close()
	for _, id := range []string{"a", "b", "a", "c", "b"} {
		n.Notify(id)
	}
	// The run loop may already hold the first "a" when the second comes,
	// so "a" can come twice; b and c at most once each.
	var got []string
	count := map[string]int{}
	for {
		select {
		case id := <-n.C():
			got = append(got, id)
			count[id]++
			continue
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	if count["a"] < 1 || count["a"] > 2 || count["b"] != 1 || count["c"] != 1 || len(count) != 3 {
		t.Errorf("got %v, want a (once or twice), b and c once", got)
	}
	n.Notify("a")
	if id := <-n.C(); id != "a" {
		t.Errorf("after drain: got %q, want a", id)
	}
}

func TestNotifierClose(t *testing.T) {
	n := NewNotifier()
	n.Notify("x")
	n.Close()
	n.Close()
	n.Notify("y") // no panic, no block
	for range n.C() {
	}
}
