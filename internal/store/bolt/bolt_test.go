package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/store"
	"vgrid/internal/store/storetest"
)

func openAt(t testing.TB, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(dir, "vgrid.db"), opts...)
	if err != nil {
		t.Fatalf("Open: got error %v, want none", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) store.Store { return openAt(t, dir) })
}

func TestConformanceSmallHistory(t *testing.T) {
	// The suite's writes fit in a history of 64 changes, but the log is
	// trimmed on most writes.
	storetest.Run(t, func(t *testing.T, dir string) store.Store { return openAt(t, dir, WithHistory(64)) })
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	defer s.Close()
	path := filepath.Join(dir, "vgrid.db")
	start := time.Now()
	_, err := Open(path) // waits DefaultLockTimeout
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got error %v, want ErrLocked", err)
	}
	if got, want := err.Error(), "store "+path+" is in use by another vgrid process"; got != want {
		t.Fatalf("second Open: got %q, want %q", got, want)
	}
	// bbolt polls the lock every 50ms and gives up just before the timeout.
	if d := time.Since(start); d < DefaultLockTimeout-100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("second Open: took %v, want about the lock timeout", d)
	}
	// Once the first is closed the file can be opened again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Close: got error %v, want none", err)
	}
	s2.Close()
}

func TestOpenNotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("junk", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), "open store "+path) {
		t.Fatalf("Open(junk): got error %v, want one naming the file", err)
	}
}

func TestWatchCompacted(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openAt(t, dir, WithHistory(5))
	var revs []int64
	for i := range 10 {
		rev, err := s.Create(ctx, fmt.Sprintf("k/%d", i), []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	// The log holds the last 5 changes: revs[5..9]; watching after revs[4]
	// works, after revs[3] does not.
	tests := []struct {
		from      int64
		compacted bool
		want      int // events replayed
	}{
		{revs[3], true, 0},
		{revs[0], true, 0},
		{revs[4], false, 5},
		{revs[7], false, 2},
		{revs[9], false, 0},
		{revs[9] + 100, false, 0},
	}
	check := func(s *Store) {
		t.Helper()
		for _, tt := range tests {
			ch, err := s.Watch(ctx, "k/", tt.from)
			if tt.compacted {
				if !errors.Is(err, store.ErrCompacted) {
					t.Fatalf("Watch(from %d): got error %v, want ErrCompacted", tt.from, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Watch(from %d): got error %v, want none", tt.from, err)
			}
			for i := range tt.want {
				ev := <-ch
				if want := revs[len(revs)-tt.want+i]; ev.KV.Revision != want {
					t.Fatalf("Watch(from %d): event %d at revision %d, want %d", tt.from, i, ev.KV.Revision, want)
				}
			}
		}
	}
	check(s)
	// The history is on disk: it survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir, WithHistory(5))
	defer s.Close()
	check(s)
	// A watch from a revision in the future sees only later changes.
	ch, err := s.Watch(ctx, "k/", revs[9]+2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Create(ctx, fmt.Sprintf("k/new%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if ev := <-ch; ev.KV.Key != "k/new2" || ev.KV.Revision != revs[9]+3 {
		t.Fatalf("Watch(from the future): got %q at %d, want k/new2 at %d", ev.KV.Key, ev.KV.Revision, revs[9]+3)
	}
}

func TestWatchNoHistory(t *testing.T) {
	s := openAt(t, t.TempDir(), WithHistory(0))
	defer s.Close()
	ctx := context.Background()
	r1, _ := s.Create(ctx, "a", nil)
	s.Create(ctx, "b", nil)
	if _, err := s.Watch(ctx, "", r1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch(from %d) without history: got %v, want ErrCompacted", r1, err)
	}
	if _, err := s.Watch(ctx, "", 0); err != nil {
		t.Fatalf("Watch(from now) without history: got %v, want none", err)
	}
}

func TestSlowWatcherDropped(t *testing.T) {
	s := openAt(t, t.TempDir(), WithWatchBuffer(10))
	defer s.Close()
	ctx := context.Background()
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := s.Watch(ctx, "", 0) // a reader that keeps up
	if err != nil {
		t.Fatal(err)
	}
	// The fast reader acknowledges each event before the next write, so
	// that it keeps up whatever the scheduler does (a loaded machine once
	// left it behind by more than its buffer, and it was dropped too).
	got, ack := make(chan int, 1), make(chan struct{})
	go func() {
		n := 0
		for range fast {
			n++
			ack <- struct{}{}
			if n == 100 {
				break
			}
		}
		close(ack)
		got <- n
	}()
	done := make(chan error)
	go func() {
		for i := range 100 {
			if _, err := s.Create(ctx, fmt.Sprintf("k%03d", i), nil); err != nil {
				done <- err
				return
			}
			if _, ok := <-ack; !ok {
				done <- fmt.Errorf("the fast watcher's channel closed after %d events", i)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writes blocked behind a slow watcher")
	}
	if n := <-got; n != 100 {
		t.Fatalf("fast watcher: got %d events, want 100", n)
	}
	n := 0
	timeout := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
			if open {
				n++
			}
		case <-timeout:
			t.Fatal("slow watcher's channel not closed")
		}
	}
	if n > 11 {
		t.Fatalf("slow watcher: got %d events before the close, want at most 11", n)
	}
	s.wmu.Lock()
	left := len(s.watchers)
	s.wmu.Unlock()
	if left != 1 {
		t.Fatalf("watchers left: got %d, want 1", left)
	}
}

func TestInvalidArguments(t *testing.T) {
	s := openAt(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	tests := []struct {
		name string
		err  error
	}{
		{"empty key", func() error { _, err := s.Create(ctx, "", nil); return err }()},
		{"huge key", func() error { _, err := s.Update(ctx, strings.Repeat("k", 40000), nil, 0); return err }()},
		{"negative watch revision", func() error { _, err := s.Watch(ctx, "", -1); return err }()},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: got no error, want one", tt.name)
		}
	}
	if rev, _ := s.Revision(ctx); rev != 0 {
		t.Fatalf("Revision after failed writes: got %d, want 0", rev)
	}
}

func TestWatchersReleased(t *testing.T) {
	s := openAt(t, t.TempDir())
	defer s.Close()
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := s.Watch(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		for range ch {
		}
	}
	s.wmu.Lock()
	left := len(s.watchers)
	s.wmu.Unlock()
	if left != 0 {
		t.Fatalf("watchers after cancel: got %d, want 0", left)
	}
}

func TestLogEntries(t *testing.T) {
	put := func(k, v string) store.Event {
		return store.Event{Type: store.EventPut, KV: store.KV{Key: k, Value: []byte(v), Revision: 7}}
	}
	del := func(k string) store.Event {
		return store.Event{Type: store.EventDelete, KV: store.KV{Key: k, Revision: 7}}
	}
	tests := [][]store.Event{
		{put("a", "1")},
		{del("a")},
		{put("a", ""), del("b"), put("c", strings.Repeat("x", 300))},
		{del("a"), del("b")},
	}
	for _, evs := range tests {
		b := encodeLog(evs)
		got, err := decodeLog(7, b)
		if err != nil {
			t.Fatalf("decodeLog(encodeLog(%v)): got error %v, want none", evs, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(evs) {
			t.Fatalf("decodeLog(encodeLog(%v)): got %v", evs, got)
		}
		for _, ev := range got {
			if (ev.Type == store.EventPut) != (ev.KV.Value != nil) {
				t.Fatalf("decodeLog: got %v, want a non-nil value for puts only", ev)
			}
		}
		if len(evs) == 1 {
			continue // a single change: the format from before Txn
		}
		// Every truncation and a few corruptions are errors, not panics.
		for n := range len(b) {
			if _, err := decodeLog(7, b[:n]); err == nil {
				t.Fatalf("decodeLog of %d of the %d bytes: got no error, want one", n, len(b))
			}
		}
		for _, bad := range [][]byte{
			append(bytes.Clone(b), 0),                             // trailing byte
			append([]byte{logBatch, 0xff, 0xff, 0x7f}, b[2:]...),  // huge count
			append([]byte{logBatch, byte(len(evs)), 9}, b[3:]...), // unknown type
		} {
			if _, err := decodeLog(7, bad); err == nil {
				t.Fatalf("decodeLog(%q): got no error, want one", bad)
			}
		}
	}
}
