package fake

import (
	"context"
	"fmt"
	"strings"

	"vgrid/internal/hypervisor"
)

// Exec implements hypervisor.Driver with the few commands a fake guest
// has: echo ARGS... (prints them), cat (prints its standard input), true,
// false (exit 1), and exit N; anything else exits 127 as a shell would.
func (d *Driver) Exec(ctx context.Context, id string, req hypervisor.ExecRequest, out func(stream string, data []byte) error) (hypervisor.ExecResult, error) {
	in, err := d.Get(ctx, id)
	if err != nil {
		return hypervisor.ExecResult{}, err
	}
	switch {
	case in.State != hypervisor.InstanceRunning && in.ExitReason == incomingReason:
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: %w", id, hypervisor.ErrIncoming)
	case in.State != hypervisor.InstanceRunning:
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s (%s): %w", id, in.State, hypervisor.ErrNotRunning)
	case in.Guest == nil:
		return hypervisor.ExecResult{}, fmt.Errorf("exec in %s: %w", id, hypervisor.ErrGuestNotReady)
	case len(req.Argv) == 0 || req.Argv[0] == "":
		return hypervisor.ExecResult{ExitCode: 126, Message: "exec: argv is empty: give the command and its arguments"}, nil
	}
	switch req.Argv[0] {
	case "echo":
		return hypervisor.ExecResult{}, out(hypervisor.StreamStdout, []byte(strings.Join(req.Argv[1:], " ")+"\n"))
	case "cat":
		if len(req.Stdin) == 0 {
			return hypervisor.ExecResult{}, nil
		}
		return hypervisor.ExecResult{}, out(hypervisor.StreamStdout, req.Stdin)
	case "true":
		return hypervisor.ExecResult{}, nil
	case "false":
		return hypervisor.ExecResult{ExitCode: 1}, nil
	case "exit":
		var n int
		if len(req.Argv) > 1 {
			fmt.Sscan(req.Argv[1], &n)
		}
		return hypervisor.ExecResult{ExitCode: n & 0xff}, nil
	}
	if err := out(hypervisor.StreamStderr, []byte(req.Argv[0]+": not found\n")); err != nil {
		return hypervisor.ExecResult{}, err
	}
	return hypervisor.ExecResult{ExitCode: 127, Message: "exec: " + req.Argv[0] + ": not found"}, nil
}
