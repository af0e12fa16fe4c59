package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQMP serves one QMP client on a unix socket: it greets, accepts
// qmp_capabilities and answers query-status (preceded by a STOP event),
// "fail" (an error) and "hang" (nothing).
func fakeQMP(t *testing.T, greet bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if !greet {
			time.Sleep(2 * time.Second)
			return
		}
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\r\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var req struct {
				Execute string `json:"execute"`
				ID      string `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &req) != nil {
				return
			}
			id, _ := json.Marshal(req.ID)
			switch req.Execute {
			case "qmp_capabilities":
				c.Write([]byte(`{"return": {}, "id": ` + string(id) + "}\r\n"))
			case "query-status":
				c.Write([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}` + "\r\n"))
				c.Write([]byte(`{"return": {"status": "paused", "running": false}, "id": ` + string(id) + "}\r\n"))
			case "fail":
				c.Write([]byte(`{"error": {"class": "CommandNotFound", "desc": "The command fail has not been found"}, "id": ` + string(id) + "}\r\n"))
			case "hang":
			case "bye":
				return
			}
		}
	}()
	return path
}

func TestQMPClient(t *testing.T) {
	path := fakeQMP(t, true)
	events := make(chan string, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, func(name string, _ json.RawMessage) { events <- name })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var st struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "paused" {
		t.Errorf("query-status: got %q, %v, want paused", st.Status, err)
	}
	select {
	case ev := <-events:
		if ev != "STOP" {
			t.Errorf("event: got %q, want STOP", ev)
		}
	case <-time.After(time.Second):
		t.Error("no event")
	}
	var qe *Error
	if err := c.Execute(ctx, "fail", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("fail: got %v, want a CommandNotFound qmp error", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if err := c.Execute(short, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: got %v, want a deadline error", err)
	}
	// A reply that comes after its caller gave up must not confuse the next.
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Errorf("query-status after a timeout: %v", err)
	}
	_ = c.Execute(ctx, "bye", nil, nil) // the server hangs up
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed after the server hung up")
	}
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after hang-up: got %v, want ErrClosed", err)
	}
}

func TestQMPNoGreeting(t *testing.T) {
	path := fakeQMP(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, path, nil)
	if err == nil || !strings.Contains(err.Error(), "greeting") {
		t.Errorf("got %v, want a greeting error", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("dial took %s; the deadline is 200ms", time.Since(start))
	}
}
