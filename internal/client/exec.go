package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"vgrid/api"
)

// ExecResult is how a command run in a guest ended.
type ExecResult struct {
	ExitCode int
	// Message says why, when the command was killed (its timeout) or
	// could not run in the guest (not found: exit code 127).
	Message string
}

// ExecError is the stream of an exec ending with an error line: the
// command's end is not known (its host went away, or it could not run
// once it had printed something).
type ExecError struct{ Message string }

func (e *ExecError) Error() string { return e.Message }

// Exec runs a command in a workspace's guest and copies its output to
// stdout and stderr as it comes; it returns when the command has ended.
// A refusal before the command ran (not Running, guest agent not
// connected, invalid request) is an *Error as for any call.
func (c *Client) Exec(ctx context.Context, name string, req api.ExecPost, stdout, stderr io.Writer) (ExecResult, error) {
	path := "/workspaces/" + url.PathEscape(name) + "/exec"
	resp, err := c.send(ctx, "POST", path, "", req)
	if err != nil {
		return ExecResult{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var l api.ExecLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return ExecResult{}, fmt.Errorf("exec in %s: the answer ended before the command's exit: %w", name, err)
		}
		switch {
		case l.Error != "":
			return ExecResult{}, &ExecError{Message: l.Error}
		case l.ExitCode != nil:
			return ExecResult{ExitCode: *l.ExitCode, Message: l.Message}, nil
		}
		w := stdout
		if l.Stream == api.StreamStderr {
			w = stderr
		}
		if w == nil || len(l.Data) == 0 {
			continue
		}
		if _, err := w.Write(l.Data); err != nil {
			return ExecResult{}, fmt.Errorf("exec in %s: write %s: %w", name, l.Stream, err)
		}
	}
}

// The agent's side of exec.

func nodeExec(node, id, verb string) string {
	return "/nodes/" + url.PathEscape(node) + "/execs/" + url.PathEscape(id) + "/" + verb
}

// ClaimExec takes a command of the assignments' Execs: the agent runs it
// only if the claim succeeds (a second claim is a 409).
func (c *Client) ClaimExec(ctx context.Context, node, id string) (api.ExecRequest, error) {
	var x api.ExecRequest
	return x, c.Do(ctx, "POST", nodeExec(node, id, "claim"), struct{}{}, &x)
}

// ExecOutput sends a piece of a claimed command's output.
func (c *Client) ExecOutput(ctx context.Context, node, id string, o api.ExecOutput) (api.ExecOutputAck, error) {
	var ack api.ExecOutputAck
	return ack, c.Do(ctx, "POST", nodeExec(node, id, "output"), o, &ack)
}

// ExecExit sends how a claimed command ended.
func (c *Client) ExecExit(ctx context.Context, node, id string, x api.ExecExit) error {
	return c.Do(ctx, "POST", nodeExec(node, id, "exit"), x, nil)
}
