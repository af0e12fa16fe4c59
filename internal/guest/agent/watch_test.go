package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
)

// TestWatchMachine checks that a change of MemTotal, of the root disk's
// size or of the online CPUs is signalled once, and nothing else is.
func TestWatchMachine(t *testing.T) {
	tests := []struct {
		name, file, content string
		changed             bool
	}{
		{"memtotal", "proc/meminfo", "MemTotal:         163840 kB\nMemFree: 1 kB\n", true},
		{"only memfree", "proc/meminfo", "MemTotal:         229072 kB\nMemFree: 99 kB\n", false},
		{"disk", "sys/block/vda/size", "4194304\n", true},
		{"cpus", "sys/devices/system/cpu/online", "0\n", true},
		{"uptime", "proc/uptime", "9.00 2.00\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeRoot(t, guestFiles)
			a := testAgent(t, root, nil)
			a.watchEvery = 5 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { a.watchMachine(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			time.Sleep(30 * time.Millisecond) // the watcher has its baseline
			replaceFile(t, filepath.Join(root, tt.file), tt.content)
			select {
			case <-a.changed:
				if !tt.changed {
					t.Errorf("a change of %s was signalled", tt.file)
				}
			case <-time.After(200 * time.Millisecond):
				if tt.changed {
					t.Errorf("no change signalled after %s changed", tt.file)
				}
			}
			// One change, one signal.
			select {
			case <-a.changed:
				t.Errorf("a second signal without a second change")
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// replaceFile gives path new content at once, as the kernel's files
// change (a rename: a reader never sees it empty or half written, which
// os.WriteFile's truncate-then-write would show a poller).
func replaceFile(t testing.TB, path, content string) {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// TestServeSendsChangedFacts checks that Serve sends facts unasked (no
// ID) when the watcher saw a change, with the new MemTotal.
func TestServeSendsChangedFacts(t *testing.T) {
	root := fakeRoot(t, guestFiles)
	a := testAgent(t, root, nil)
	a.watchEvery = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.watchMachine(ctx)
	host, guest := net.Pipe()
	defer host.Close()
	done := make(chan error, 1)
	go func() { done <- a.Serve(guest) }()
	time.Sleep(30 * time.Millisecond)
	replaceFile(t, filepath.Join(root, "proc/meminfo"), "MemTotal: 163840 kB\n")
	lines := make(chan proto.Message, 1)
	go func() {
		line, err := bufio.NewReader(host).ReadBytes('\n')
		var m proto.Message
		if err == nil {
			err = json.Unmarshal(line, &m)
		}
		if err != nil {
			t.Errorf("read from the agent: %v", err)
		}
		lines <- m
	}()
	select {
	case m := <-lines:
		if m.Type != proto.TypeFacts || m.ID != "" || m.Info == nil || m.Info.MemoryMiB != 160 {
			t.Errorf("got %+v (info %+v), want unasked facts with 160 MiB", m, m.Info)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no facts after MemTotal changed")
	}
	host.Close()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Serve after hangup = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after the host hung up")
	}
}
