package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"vgrid/internal/guest/proto"
)

// Limits of commands run for the host (proto.TypeExec).
const (
	MaxExecs           = 8         // running at once
	MaxExecArgs        = 256       // argv entries
	MaxExecBytes       = 64 << 10  // argv, env and dir together
	MaxExecStdin       = 256 << 10 // bytes of standard input
	DefaultExecTimeout = time.Minute
	MaxExecTimeout     = time.Hour
	execChunk          = 16 << 10 // bytes of output per message
)

// checkExec validates a command and returns how long it may run. It is
// pure.
func checkExec(r *proto.ExecRequest) (time.Duration, error) {
	if r == nil || len(r.Argv) == 0 || r.Argv[0] == "" {
		return 0, errors.New("exec: argv is empty: give the command and its arguments")
	}
	if len(r.Argv) > MaxExecArgs {
		return 0, fmt.Errorf("exec: %d arguments, at most %d", len(r.Argv), MaxExecArgs)
	}
	size := len(r.Dir)
	for _, s := range append(append([]string{r.Dir}, r.Argv...), r.Env...) {
		if strings.IndexByte(s, 0) >= 0 {
			return 0, errors.New("exec: arguments, environment and directory must not contain NUL bytes")
		}
		size += len(s)
	}
	for _, e := range r.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return 0, fmt.Errorf("exec: environment entry %q: want KEY=VALUE", e)
		}
	}
	if size > MaxExecBytes {
		return 0, fmt.Errorf("exec: arguments, environment and directory take %d bytes, at most %d", size, MaxExecBytes)
	}
	if len(r.Stdin) > MaxExecStdin {
		return 0, fmt.Errorf("exec: standard input of %d bytes, at most %d", len(r.Stdin), MaxExecStdin)
	}
	switch t := time.Duration(r.TimeoutS) * time.Second; {
	case r.TimeoutS < 0:
		return 0, fmt.Errorf("exec: timeout %ds: must not be negative", r.TimeoutS)
	case r.TimeoutS == 0:
		return DefaultExecTimeout, nil
	case t > MaxExecTimeout:
		return 0, fmt.Errorf("exec: timeout %ds: at most %d", r.TimeoutS, int(MaxExecTimeout/time.Second))
	default:
		return t, nil
	}
}

// startExec runs req's command in the background, sending its output and
// its end with send; it is killed when ctx ends (the host went away).
func (a *Agent) startExec(ctx context.Context, wg *sync.WaitGroup, req proto.Message, send func(proto.Message) error) {
	exit := func(code int, msg string) {
		if err := send(proto.Message{Type: proto.TypeExit, ID: req.ID, ExitCode: &code, Message: msg}); err != nil {
			a.log.Printf("exec %s: send exit: %v", req.ID, err)
		}
	}
	timeout, err := checkExec(req.Exec)
	if err != nil {
		exit(126, err.Error())
		return
	}
	select {
	case a.execs <- struct{}{}:
	default:
		exit(126, fmt.Sprintf("exec: %d commands are running already; try again when one ends", MaxExecs))
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-a.execs }()
		code, msg := a.runExec(ctx, req.ID, *req.Exec, timeout, send)
		exit(code, msg)
	}()
}

// runExec runs one command and returns its exit code and, when it did not
// end by itself, why.
func (a *Agent) runExec(ctx context.Context, id string, r proto.ExecRequest, timeout time.Duration, send func(proto.Message) error) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Argv[0], r.Argv[1:]...)
	cmd.Env = append(execEnv(os.Environ()), r.Env...)
	cmd.Dir = r.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	if len(r.Stdin) > 0 {
		cmd.Stdin = bytes.NewReader(r.Stdin)
	}
	cmd.Stdout = &chunkWriter{id: id, stream: proto.StreamStdout, send: send}
	cmd.Stderr = &chunkWriter{id: id, stream: proto.StreamStderr, send: send}
	// Its own process group, killed whole: a shell's children go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second // output pipes held by a stray child
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, ""
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			why := fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = fmt.Sprintf("timed out after %s and was killed", timeout)
			} else if ctx.Err() != nil {
				why = "killed: the host's connection ended"
			}
			return 128 + int(ws.Signal()), why
		}
		return ee.ExitCode(), ""
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return 127, err.Error()
	default:
		return 126, err.Error()
	}
}

// execEnv is the environment of a command: the agent's, with a PATH if it
// has none.
func execEnv(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// chunkWriter sends what a command writes as output messages of at most
// execChunk bytes.
type chunkWriter struct {
	id, stream string
	send       func(proto.Message) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += execChunk {
		end := min(off+execChunk, len(p))
		data := append([]byte(nil), p[off:end]...)
		if err := w.send(proto.Message{Type: proto.TypeOutput, ID: w.id, Stream: w.stream, Data: data}); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
