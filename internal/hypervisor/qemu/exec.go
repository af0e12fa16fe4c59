package qemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
)

// Exec implements hypervisor.Driver: the request goes to the guest agent
// over its virtio-serial channel (proto.TypeExec), its output and exit
// come back on the same channel, dispatched by the request's ID
// (serveAgent). Giving up (ctx, an error from out) leaves the command to
// its timeout in the guest. The host waits no longer than that timeout
// and execGrace: a guest whose kernel hangs (its QEMU alive, its agent
// silent) ends the call with an error instead of holding it for ever.
func (d *Driver) Exec(ctx context.Context, id string, req hypervisor.ExecRequest, out func(stream string, data []byte) error) (hypervisor.ExecResult, error) {
	if !hypervisor.ValidID(id) {
		return hypervisor.ExecResult{}, fmt.Errorf("exec %q: %w", id, hypervisor.ErrNotFound)
	}
	if d.closed() {
		return hypervisor.ExecResult{}, ErrClosed
	}
	in, err := d.Get(ctx, id)
	if err != nil {
		return hypervisor.ExecResult{}, err
	}
	if in.State != hypervisor.InstanceRunning {
		if in.ExitReason == IncomingReason { // migrate.go
			return hypervisor.ExecResult{}, errIncoming("exec in", id)
		}
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s (%s): %w", id, in.State, hypervisor.ErrNotRunning)
	}
	d.mu.Lock()
	v := d.vms[id]
	d.mu.Unlock()
	if v == nil {
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: %w", id, hypervisor.ErrGuestNotReady)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	msg := proto.Message{Type: proto.TypeExec, ID: "x" + hex.EncodeToString(b), Exec: &proto.ExecRequest{
		Argv: req.Argv, Env: req.Env, Dir: req.Dir, Stdin: req.Stdin, TimeoutS: int((req.Timeout + 999_999_999) / 1e9),
	}}
	replies, drop, err := v.request(msg)
	if err != nil {
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer drop()
	limit := req.Timeout
	if limit <= 0 {
		limit = execDefaultTimeout
	}
	res, err := awaitExec(ctx, id, replies, limit+execGrace, out)
	if errors.Is(err, errExecHangs) {
		err = fmt.Errorf("%w (its agent last spoke %s ago)", err, time.Since(time.Unix(0, v.heard.Load())).Round(time.Second))
	}
	return res, err
}

// errExecHangs: the guest agent did not end a command by its timeout.
var errExecHangs = errors.New("the guest may hang")

// awaitExec gathers a command's output and exit from the guest agent's
// replies, for at most limit.
func awaitExec(ctx context.Context, id string, replies <-chan proto.Message, limit time.Duration, out func(stream string, data []byte) error) (hypervisor.ExecResult, error) {
	wait := time.NewTimer(limit)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return hypervisor.ExecResult{}, ctx.Err()
		case <-wait.C:
			return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: the guest agent did not end the command within %s (its timeout and %s): %w",
				id, limit, execGrace, errExecHangs)
		case m, ok := <-replies:
			if !ok {
				return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: %w", id, errAgentGone)
			}
			switch m.Type {
			case proto.TypeOutput:
				if m.Stream != hypervisor.StreamStdout && m.Stream != hypervisor.StreamStderr {
					continue
				}
				if err := out(m.Stream, m.Data); err != nil {
					return hypervisor.ExecResult{}, err
				}
			case proto.TypeExit:
				if m.ExitCode == nil {
					return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: the guest agent sent an exit without a code", id)
				}
				return hypervisor.ExecResult{ExitCode: *m.ExitCode, Message: m.Message}, nil
			}
		}
	}
}

// execDefaultTimeout is the guest agent's timeout of a command that
// names none; execGrace is how much longer the host waits for the agent's
// answer (the agent kills the command at its timeout and then says so).
const (
	execDefaultTimeout = time.Minute
	execGrace          = 10 * time.Second
)

// errAgentGone: the guest agent's connection ended during a request (the
// guest stopped, or its agent restarted; a command it ran was killed).
var errAgentGone = errors.New("the guest agent's connection ended before the command did")
