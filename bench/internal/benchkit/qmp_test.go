package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeQMP serves one QMP connection on a socket in a temporary directory:
// it sends the greeting, then for every command the lines answer returns
// (events and the reply; none: it closes the connection).
type fakeQMP struct {
	path string
	// fds receives the contents of every file passed along with a command.
	fds chan string
}

func newFakeQMP(t *testing.T, answer func(cmd string, args json.RawMessage) []string) *fakeQMP {
	t.Helper()
	dir, err := os.MkdirTemp("", "bkqmp-") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeQMP{path: filepath.Join(dir, "qmp.sock"), fds: make(chan string, 4)}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n")); err != nil {
			return
		}
		var pending []byte
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*4))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			f.takeFDs(oob[:oobn])
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				var req struct {
					Execute   string          `json:"execute"`
					Arguments json.RawMessage `json:"arguments"`
				}
				if err := json.Unmarshal(pending[:i], &req); err != nil {
					return
				}
				pending = pending[i+1:]
				lines := answer(req.Execute, req.Arguments)
				if lines == nil {
					return
				}
				for _, line := range lines {
					if _, err := conn.Write([]byte(line + "\n")); err != nil {
						return
					}
				}
			}
		}
	}()
	return f
}

// takeFDs reads the files passed in oob and closes them.
func (f *fakeQMP) takeFDs(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			file := os.NewFile(uintptr(fd), "passed")
			b, _ := io.ReadAll(file)
			file.Close()
			f.fds <- string(b)
		}
	}
}

const ok = `{"return": {}}`

func TestQMPCommands(t *testing.T) {
	f := newFakeQMP(t, func(cmd string, args json.RawMessage) []string {
		switch cmd {
		case "qmp_capabilities", "stop", "getfd":
			return []string{ok}
		case "query-status":
			return []string{`{"return": {"status": "paused", "running": false}}`}
		case "echo":
			return []string{`{"return": ` + string(args) + `}`}
		case "quit":
			return nil // QEMU exits before it answers
		}
		return []string{`{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`}
	})
	c, err := DialQMP(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.Run("stop", nil); err != nil {
		t.Errorf("Run(stop): %v", err)
	}
	if err := c.Run("nonsense", map[string]any{"a": 1}); err == nil || !strings.Contains(err.Error(), "nonsense") ||
		!strings.Contains(err.Error(), "CommandNotFound") {
		t.Errorf("Run(nonsense) = %v, want QEMU's error naming the command", err)
	}
	st, err := c.Status()
	if err != nil || st != "paused" {
		t.Errorf("Status = %q, %v; want paused", st, err)
	}
	var got struct {
		Port string `json:"port"`
	}
	if err := c.do("echo", map[string]any{"port": "4444"}, -1, &got); err != nil || got.Port != "4444" {
		t.Errorf("echo: %+v, %v; want port 4444", got, err)
	}

	// getfd: the file travels with the command.
	file, err := os.CreateTemp(t.TempDir(), "state")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.WriteString("saved state"); err != nil {
		t.Fatal(err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := c.RunFD("getfd", map[string]any{"fdname": "bare"}, int(file.Fd())); err != nil {
		t.Errorf("RunFD(getfd): %v", err)
	}
	select {
	case s := <-f.fds:
		if s != "saved state" {
			t.Errorf("the file passed reads %q, want %q", s, "saved state")
		}
	case <-time.After(5 * time.Second):
		t.Error("RunFD passed no file")
	}

	// quit: the connection ends without a reply, which is quit's success;
	// any other command then fails.
	if err := c.Run("quit", nil); err != nil {
		t.Errorf("Run(quit) = %v, want nil", err)
	}
	if err := c.Run("stop", nil); err == nil {
		t.Error("Run(stop) after the connection ended: no error")
	}
}

func TestQMPWaitMigration(t *testing.T) {
	ev := func(status string) string {
		return `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "` + status + `"}}`
	}
	other := `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}`
	for _, tc := range []struct {
		name    string
		events  []string
		ctx     func() (context.Context, context.CancelFunc)
		timeout time.Duration
		wantErr string // "": none
	}{
		{"completed", []string{ev("setup"), other, ev("active"), ev("completed")}, nil, 5 * time.Second, ""},
		{"failed", []string{ev("setup"), ev("failed")}, nil, 5 * time.Second, "migration failed"},
		{"cancelled", []string{ev("cancelling"), ev("cancelled")}, nil, 5 * time.Second, "migration cancelled"},
		{"timeout", []string{ev("active")}, nil, 50 * time.Millisecond, "did not complete"},
		{"context ended", []string{ev("active")}, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, 5 * time.Second, context.Canceled.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeQMP(t, func(cmd string, _ json.RawMessage) []string {
				if cmd == "migrate" {
					return append(append([]string(nil), tc.events...), ok)
				}
				return []string{ok}
			})
			c, err := DialQMP(f.path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Run("migrate", map[string]any{"uri": "fd:bare"}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			err = c.WaitMigration(ctx, tc.timeout)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("WaitMigration = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestQMPDrainEvents(t *testing.T) {
	f := newFakeQMP(t, func(cmd string, _ json.RawMessage) []string {
		if cmd == "old" {
			return []string{`{"event": "MIGRATION", "data": {"status": "completed"}}`, ok}
		}
		return []string{ok}
	})
	c, err := DialQMP(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Run("old", nil); err != nil {
		t.Fatal(err)
	}
	// The reply comes after the event, so the event is queued by now.
	c.DrainEvents()
	if err := c.WaitMigration(context.Background(), 50*time.Millisecond); err == nil {
		t.Error("WaitMigration after DrainEvents saw the earlier migration's completed")
	}
}

func TestDialQMPFails(t *testing.T) {
	t.Run("no socket", func(t *testing.T) {
		if _, err := DialQMP(filepath.Join(t.TempDir(), "none.sock")); err == nil {
			t.Error("DialQMP of a missing socket: no error")
		}
	})
	t.Run("capabilities refused", func(t *testing.T) {
		f := newFakeQMP(t, func(string, json.RawMessage) []string {
			return []string{`{"error": {"class": "GenericError", "desc": "no"}}`}
		})
		_, err := DialQMP(f.path)
		if err == nil || !strings.Contains(err.Error(), "qmp_capabilities") {
			t.Errorf("DialQMP = %v, want the qmp_capabilities error", err)
		}
	})
	t.Run("connection closed", func(t *testing.T) {
		f := newFakeQMP(t, func(string, json.RawMessage) []string { return nil })
		_, err := DialQMP(f.path)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("DialQMP = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}
