package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
	"vgrid/internal/server"
)

// execDriver is the fake driver with a few more commands, to see output
// stream as it comes and a command given up:
//
//	stream: "one" on stdout, then waits for gate, "two" on stderr, exit 3
//	big N:  N bytes of output in small writes, exit 0
//	tick:   "t" every 20 ms until it is given up (gaveUp is closed)
//	notready: the driver's ErrGuestNotReady
type execDriver struct {
	*fake.Driver
	gate   chan struct{}
	gaveUp chan struct{}
	once   sync.Once
}

func (d *execDriver) Exec(ctx context.Context, id string, req hypervisor.ExecRequest, out func(string, []byte) error) (hypervisor.ExecResult, error) {
	if len(req.Argv) == 0 {
		return d.Driver.Exec(ctx, id, req, out)
	}
	switch req.Argv[0] {
	case "stream":
		if err := out(hypervisor.StreamStdout, []byte("one\n")); err != nil {
			return hypervisor.ExecResult{}, err
		}
		select {
		case <-d.gate:
		case <-ctx.Done():
			return hypervisor.ExecResult{}, ctx.Err()
		}
		if err := out(hypervisor.StreamStderr, []byte("two\n")); err != nil {
			return hypervisor.ExecResult{}, err
		}
		return hypervisor.ExecResult{ExitCode: 3, Message: "three"}, nil
	case "big":
		var n int
		fmt.Sscan(req.Argv[1], &n)
		line := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n") // 64 bytes
		for i := 0; i < n; i += len(line) {
			if err := out(hypervisor.StreamStdout, line); err != nil {
				return hypervisor.ExecResult{}, err
			}
		}
		return hypervisor.ExecResult{}, nil
	case "tick":
		for {
			if err := out(hypervisor.StreamStdout, []byte("t\n")); err != nil {
				d.once.Do(func() { close(d.gaveUp) })
				return hypervisor.ExecResult{}, err
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				d.once.Do(func() { close(d.gaveUp) })
				return hypervisor.ExecResult{}, ctx.Err()
			}
		}
	case "notready":
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: %w", id, hypervisor.ErrGuestNotReady)
	}
	return d.Driver.Exec(ctx, id, req, out)
}

// signalWriter says when what it was written contains want.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.buf.String() }

func newExecRig(t *testing.T) (*rig, *execDriver) {
	var xd *execDriver
	r := newRigAgent(t, nil, func(c *Config) {
		xd = &execDriver{Driver: c.Driver.(*fake.Driver), gate: make(chan struct{}), gaveUp: make(chan struct{})}
		c.Driver = xd
	})
	return r, xd
}

// execRecords are the exec keys left in the store.
func (r *rig) execRecords() []string {
	var keys []string
	for _, p := range []string{"exec/", "execout/"} {
		kvs, err := r.srv.Controller().Store().List(context.Background(), p)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, kv := range kvs {
			keys = append(keys, kv.Key)
		}
	}
	return keys
}

func (r *rig) waitNoExecRecords() {
	r.t.Helper()
	r.eventually("exec records deleted", func() bool { return len(r.execRecords()) == 0 })
}

func apiStatus(err error) (int, string) {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status, ce.Body.Message
	}
	return 0, fmt.Sprint(err)
}

func TestExecRunsCommandsInGuests(t *testing.T) {
	r, _ := newExecRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateRunning)

	exec := func(argv []string, stdin []byte) (client.ExecResult, string, string, error) {
		var out, errb bytes.Buffer
		res, err := r.user.Exec(ctx, "w1", api.ExecPost{Argv: argv, Stdin: stdin, TimeoutS: 10}, &out, &errb)
		return res, out.String(), errb.String(), err
	}
	res, out, errOut, err := exec([]string{"echo", "hi"}, nil)
	if err != nil || res.ExitCode != 0 || out != "hi\n" || errOut != "" {
		t.Fatalf("echo hi: %+v stdout %q stderr %q err %v", res, out, errOut, err)
	}
	if res, _, _, err := exec([]string{"false"}, nil); err != nil || res.ExitCode != 1 {
		t.Fatalf("false: %+v %v, want exit code 1", res, err)
	}
	if res, out, _, err := exec([]string{"cat"}, []byte("from stdin\x00\xff")); err != nil || res.ExitCode != 0 || out != "from stdin\x00\xff" {
		t.Fatalf("cat: %+v stdout %q %v", res, out, err)
	}
	res, _, errOut, err = exec([]string{"nope"}, nil)
	if err != nil || res.ExitCode != 127 || errOut != "nope: not found\n" || !strings.Contains(res.Message, "not found") {
		t.Fatalf("nope: %+v stderr %q %v, want 127 and not found", res, errOut, err)
	}
	r.waitNoExecRecords()

	// Refusals: bad input names the field; the guest agent not connected
	// is a 409 saying so.
	if _, _, _, err := exec(nil, nil); !strings.Contains(fmt.Sprint(err), "argv") {
		t.Fatalf("no argv: %v", err)
	} else if st, _ := apiStatus(err); st != 400 {
		t.Fatalf("no argv: status %d", st)
	}
	if _, err := r.user.Exec(ctx, "w1", api.ExecPost{Argv: []string{"true"}, TimeoutS: 7200}, nil, nil); !strings.Contains(fmt.Sprint(err), "timeout_s") {
		t.Fatalf("timeout 2h: %v", err)
	}
	_, _, _, err = exec([]string{"notready"}, nil)
	if st, msg := apiStatus(err); st != 409 || !strings.Contains(msg, "guest agent not connected yet; the guest is still booting") {
		t.Fatalf("guest not ready: %d %q", st, msg)
	}

	// Another project's workspace is not found.
	tok, err := r.srv.CreateToken(ctx, "other", server.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	other := r.user.WithToken(tok)
	if _, err := other.Exec(ctx, "w1", api.ExecPost{Argv: []string{"echo", "hi"}}, nil, nil); !client.IsNotFound(err) {
		t.Fatalf("another project's exec: %v, want 404", err)
	}
	r.waitNoExecRecords()

	// A stopped workspace: 409 naming its state.
	if _, err := r.user.StopWorkspace(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateStopped)
	_, _, _, err = exec([]string{"echo", "hi"}, nil)
	if st, msg := apiStatus(err); st != 409 || !strings.Contains(msg, "Stopped") {
		t.Fatalf("stopped workspace: %d %q, want 409 naming Stopped", st, msg)
	}
	if keys := r.execRecords(); len(keys) != 0 {
		t.Fatalf("exec records left: %v", keys)
	}
}

func TestExecStreamsOutputAsItComes(t *testing.T) {
	r, xd := newExecRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.user.CreateWorkspace(ctx, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	r.waitState("w1", model.StateRunning)

	out := &signalWriter{want: "one\n", seen: make(chan struct{})}
	var errb bytes.Buffer
	type result struct {
		res client.ExecResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := r.user.Exec(ctx, "w1", api.ExecPost{Argv: []string{"stream"}}, out, &errb)
		done <- result{res, err}
	}()
	// The first line arrives while the command still runs.
	select {
	case <-out.seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("no output while the command runs (stdout %q)", out.String())
	}
	// It runs once: claiming it again is refused; another host may not
	// answer for it.
	var id string
	for _, k := range r.execRecords() {
		if strings.HasPrefix(k, "exec/h1/") {
			id = strings.TrimPrefix(k, "exec/h1/")
		}
	}
	if id == "" {
		t.Fatalf("no exec record for h1: %v", r.execRecords())
	}
	if _, err := r.agent.client().ClaimExec(ctx, "h1", id); !strings.Contains(fmt.Sprint(err), "claimed already") {
		t.Fatalf("second claim: %v, want a conflict", err)
	}
	if _, err := r.agent.client().ExecOutput(ctx, "h2", id, api.ExecOutput{Stream: "stdout", Data: []byte("x")}); func() int { s, _ := apiStatus(err); return s }() != 403 {
		t.Fatalf("output for another host's command: %v, want 403", err)
	}
	if _, err := r.user.ClaimExec(ctx, "h1", id); func() int { s, _ := apiStatus(err); return s }() != 403 {
		t.Fatalf("a user claiming a command: %v, want 403", err)
	}
	close(xd.gate)
	select {
	case d := <-done:
		if d.err != nil || d.res.ExitCode != 3 || d.res.Message != "three" || out.String() != "one\n" || errb.String() != "two\n" {
			t.Fatalf("stream: %+v %v stdout %q stderr %q", d.res, d.err, out.String(), errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not end")
	}
	r.waitNoExecRecords()

	// Much output arrives whole and in order, in many pieces.
	var big bytes.Buffer
	res, err := r.user.Exec(ctx, "w1", api.ExecPost{Argv: []string{"big", "1048576"}}, &big, nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("big: %+v %v", res, err)
	}
	if want := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 1<<14); big.String() != want {
		t.Fatalf("big: got %d bytes, want %d in order", big.Len(), len(want))
	}
	r.waitNoExecRecords()

	// A user who goes away gives the command up.
	tctx, tcancel := context.WithCancel(ctx)
	ticks := &signalWriter{want: "t\nt\n", seen: make(chan struct{})}
	go func() { _, _ = r.user.Exec(tctx, "w1", api.ExecPost{Argv: []string{"tick"}}, ticks, nil) }()
	select {
	case <-ticks.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("tick printed nothing")
	}
	tcancel()
	select {
	case <-xd.gaveUp:
	case <-time.After(10 * time.Second):
		t.Fatal("the command went on after its user went away")
	}
	r.waitNoExecRecords()
}
