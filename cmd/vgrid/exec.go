package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
)

// exitStatus ends vgrid with a command's exit code (vgrid workspace exec),
// saying nothing more.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// maxExecStdin is what the control plane takes of standard input.
const maxExecStdin = 256 << 10

func wsExec(g *globals) *cobra.Command {
	var timeout time.Duration
	var env []string
	var dir string
	var stdin bool
	c := &cobra.Command{
		Use:   "exec NAME [--timeout 60s] [--env K=V]... [--dir D] [--stdin] -- CMD [ARG...]",
		Short: "Run a command in a running workspace's guest; its output streams back and vgrid exits with its exit code",
		Long: `Run a command in a running workspace's guest, through its host's agent and
the guest agent. The command runs without a shell (give sh -c '...' for one);
its standard output and error stream to vgrid's as they come, and vgrid exits
with its exit code. The guest kills it after --timeout (at most 1h).
--stdin sends vgrid's standard input (at most 256 KiB) as the command's.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash >= 0 && dash != 1 {
				return fmt.Errorf("usage: vgrid workspace exec NAME [flags] -- CMD [ARG...]: give one workspace name before --")
			}
			if timeout < time.Second || timeout > time.Hour || timeout%time.Second != 0 {
				return fmt.Errorf("--timeout %s: want whole seconds from 1s to 1h", timeout)
			}
			req := api.ExecPost{Argv: args[1:], Env: env, Dir: dir, TimeoutS: int(timeout / time.Second)}
			for _, e := range env {
				if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
					return fmt.Errorf("--env %q: want KEY=VALUE", e)
				}
			}
			if stdin {
				b, err := io.ReadAll(io.LimitReader(os.Stdin, maxExecStdin+1))
				if err != nil {
					return fmt.Errorf("read standard input: %w", err)
				}
				if len(b) > maxExecStdin {
					return fmt.Errorf("--stdin: standard input is larger than %d bytes", maxExecStdin)
				}
				req.Stdin = b
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			res, err := cl.Exec(cmd.Context(), args[0], req, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if res.Message != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "vgrid: %s (exit code %d)\n", res.Message, res.ExitCode)
			}
			if res.ExitCode != 0 {
				return exitStatus(res.ExitCode)
			}
			return nil
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", time.Minute, "kill the command after this long (1s to 1h)")
	c.Flags().StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE added to the command's environment (repeatable)")
	c.Flags().StringVar(&dir, "dir", "", "working directory in the guest (absolute)")
	c.Flags().BoolVar(&stdin, "stdin", false, "send vgrid's standard input as the command's")
	return c
}
