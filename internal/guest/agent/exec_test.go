package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
)

func TestCheckExec(t *testing.T) {
	long := strings.Repeat("x", MaxExecBytes)
	for _, c := range []struct {
		name string
		r    *proto.ExecRequest
		want time.Duration
		err  string
	}{
		{"default timeout", &proto.ExecRequest{Argv: []string{"true"}}, DefaultExecTimeout, ""},
		{"timeout", &proto.ExecRequest{Argv: []string{"true"}, TimeoutS: 5}, 5 * time.Second, ""},
		{"none", nil, 0, "argv is empty"},
		{"empty argv", &proto.ExecRequest{}, 0, "argv is empty"},
		{"empty command", &proto.ExecRequest{Argv: []string{""}}, 0, "argv is empty"},
		{"too many args", &proto.ExecRequest{Argv: make([]string, MaxExecArgs+1)}, 0, "argv is empty"},
		{"too many args 2", &proto.ExecRequest{Argv: append([]string{"echo"}, make([]string, MaxExecArgs)...)}, 0, "at most 256"},
		{"NUL", &proto.ExecRequest{Argv: []string{"echo", "a\x00b"}}, 0, "NUL"},
		{"bad env", &proto.ExecRequest{Argv: []string{"env"}, Env: []string{"NOEQUALS"}}, 0, "KEY=VALUE"},
		{"too big", &proto.ExecRequest{Argv: []string{"echo", long}}, 0, "bytes, at most"},
		{"stdin too big", &proto.ExecRequest{Argv: []string{"cat"}, Stdin: make([]byte, MaxExecStdin+1)}, 0, "standard input"},
		{"negative timeout", &proto.ExecRequest{Argv: []string{"true"}, TimeoutS: -1}, 0, "negative"},
		{"timeout too long", &proto.ExecRequest{Argv: []string{"true"}, TimeoutS: 7200}, 0, "at most 3600"},
	} {
		got, err := checkExec(c.r)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("%s: got %v %v, want %v", c.name, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.err)
		}
	}
}

// host is the host's end of a Serve connection.
type host struct {
	in  *io.PipeWriter     // requests to the agent
	out chan proto.Message // what the agent sent
	err chan error         // Serve's return
}

func serveHost(t *testing.T, a *Agent) *host {
	t.Helper()
	reqR, reqW := io.Pipe()
	repR, repW := io.Pipe()
	h := &host{in: reqW, out: make(chan proto.Message, 1024), err: make(chan error, 1)}
	go func() {
		h.err <- a.Serve(struct {
			io.Reader
			io.Writer
		}{reqR, repW})
		repW.Close()
	}()
	go func() {
		sc := bufio.NewScanner(repR)
		sc.Buffer(nil, maxLine)
		for sc.Scan() {
			var m proto.Message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("reply %q: %v", sc.Text(), err)
				continue
			}
			h.out <- m
		}
		close(h.out)
	}()
	t.Cleanup(func() { reqW.Close() })
	return h
}

func (h *host) send(t *testing.T, m proto.Message) {
	t.Helper()
	b, _ := json.Marshal(m)
	if _, err := h.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// result is a command's output and end as the host sees them.
type result struct {
	stdout, stderr string
	chunks         int
	code           int
	msg            string
}

// wait collects the messages of command id until its exit; others are
// returned in seen.
func (h *host) wait(t *testing.T, id string, within time.Duration) (r result, seen []proto.Message) {
	t.Helper()
	timer := time.After(within)
	for {
		select {
		case m, ok := <-h.out:
			if !ok {
				t.Fatalf("connection closed before %s ended", id)
			}
			if m.ID != id {
				seen = append(seen, m)
				continue
			}
			switch m.Type {
			case proto.TypeOutput:
				if len(m.Data) > execChunk {
					t.Errorf("%s: a chunk of %d bytes, at most %d", id, len(m.Data), execChunk)
				}
				r.chunks++
				if m.Stream == proto.StreamStdout {
					r.stdout += string(m.Data)
				} else {
					r.stderr += string(m.Data)
				}
			case proto.TypeExit:
				if m.ExitCode == nil {
					t.Fatalf("%s: exit without a code: %+v", id, m)
				}
				r.code, r.msg = *m.ExitCode, m.Message
				return r, seen
			default:
				t.Fatalf("%s: unexpected %+v", id, m)
			}
		case <-timer:
			t.Fatalf("%s: no exit within %s", id, within)
		}
	}
}

func exec1(argv ...string) proto.Message {
	return proto.Message{Type: proto.TypeExec, Exec: &proto.ExecRequest{Argv: argv}}
}

// Commands run for the host: output on both streams, exit codes, standard
// input, errors, timeouts; a ping is answered while a command runs.
func TestServeExec(t *testing.T) {
	off := 0
	a := testAgent(t, fakeRoot(t, guestFiles), &off)
	h := serveHost(t, a)

	m := exec1("/bin/sh", "-c", "echo out; echo err >&2; exit 3")
	m.ID = "e1"
	h.send(t, m)
	if r, _ := h.wait(t, "e1", 10*time.Second); r.stdout != "out\n" || r.stderr != "err\n" || r.code != 3 || r.msg != "" {
		t.Errorf("e1: %+v", r)
	}

	m = proto.Message{Type: proto.TypeExec, ID: "e2", Exec: &proto.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("hello"), Env: []string{"X=1"}}}
	h.send(t, m)
	if r, _ := h.wait(t, "e2", 10*time.Second); r.stdout != "hello" || r.code != 0 {
		t.Errorf("e2 (stdin): %+v", r)
	}

	m = proto.Message{Type: proto.TypeExec, ID: "e3", Exec: &proto.ExecRequest{Argv: []string{"/bin/sh", "-c", `echo "$X in $(pwd)"`}, Env: []string{"X=1"}, Dir: "/tmp"}}
	h.send(t, m)
	if r, _ := h.wait(t, "e3", 10*time.Second); r.stdout != "1 in /tmp\n" || r.code != 0 {
		t.Errorf("e3 (env, dir): %+v", r)
	}

	m = exec1("/no/such/command")
	m.ID = "e4"
	h.send(t, m)
	if r, _ := h.wait(t, "e4", 10*time.Second); r.code != 127 || r.msg == "" {
		t.Errorf("e4 (not found): %+v", r)
	}

	m = proto.Message{Type: proto.TypeExec, ID: "e5"}
	h.send(t, m)
	if r, _ := h.wait(t, "e5", 10*time.Second); r.code != 126 || !strings.Contains(r.msg, "argv is empty") {
		t.Errorf("e5 (no command): %+v", r)
	}

	// Big output comes in chunks.
	m = exec1("head", "-c", "100000", "/dev/zero")
	m.ID = "e6"
	h.send(t, m)
	if r, _ := h.wait(t, "e6", 10*time.Second); len(r.stdout) != 100000 || r.chunks < 100000/execChunk || r.code != 0 {
		t.Errorf("e6 (100 kB): %d bytes in %d chunks, code %d", len(r.stdout), r.chunks, r.code)
	}

	// A timeout kills it, and its children (a whole process group).
	m = proto.Message{Type: proto.TypeExec, ID: "e7", Exec: &proto.ExecRequest{Argv: []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, TimeoutS: 1}}
	h.send(t, m)
	// Meanwhile the agent answers other requests.
	h.send(t, proto.Message{Type: proto.TypePing, ID: "p"})
	t0 := time.Now()
	r, seen := h.wait(t, "e7", 10*time.Second)
	if r.code != 128+9 || !strings.Contains(r.msg, "timed out after 1s") || time.Since(t0) > 5*time.Second {
		t.Errorf("e7 (timeout): %+v after %s", r, time.Since(t0))
	}
	if len(seen) != 1 || seen[0].Type != proto.TypePong || seen[0].ID != "p" {
		t.Errorf("while e7 ran: %+v, want the pong", seen)
	}
}

// Too many at once: refused, the others run on; and when the host goes
// away, what still runs is killed and Serve returns.
func TestServeExecLimitAndHangup(t *testing.T) {
	off := 0
	a := testAgent(t, fakeRoot(t, guestFiles), &off)
	h := serveHost(t, a)
	for i := range MaxExecs {
		m := exec1("sleep", "30")
		m.ID = "s" + string(rune('a'+i))
		h.send(t, m)
	}
	m := exec1("true")
	m.ID = "over"
	h.send(t, m)
	if r, _ := h.wait(t, "over", 10*time.Second); r.code != 126 || !strings.Contains(r.msg, "running already") {
		t.Errorf("one too many: %+v", r)
	}
	t0 := time.Now()
	h.in.Close()
	select {
	case err := <-h.err:
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the host went away")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Serve returned %s after the hangup", d)
	}
}
