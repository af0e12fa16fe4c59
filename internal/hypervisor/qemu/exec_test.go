package qemu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
)

// TestAwaitExec: a command's output and exit are gathered from the agent's
// replies; a silent agent (a hung guest) ends the wait at its limit with
// an error saying so, a closed channel as the agent gone, a cancelled
// context as itself.
func TestAwaitExec(t *testing.T) {
	zero, three := 0, 3
	tests := []struct {
		name    string
		replies []proto.Message
		close   bool
		cancel  bool
		want    hypervisor.ExecResult
		out     string
		wantErr string
	}{
		{name: "output and exit", replies: []proto.Message{
			{Type: proto.TypeOutput, Stream: hypervisor.StreamStdout, Data: []byte("hello ")},
			{Type: proto.TypeOutput, Stream: "other", Data: []byte("ignored")},
			{Type: proto.TypeOutput, Stream: hypervisor.StreamStderr, Data: []byte("world")},
			{Type: proto.TypeExit, ExitCode: &three, Message: "exit status 3"},
		}, want: hypervisor.ExecResult{ExitCode: 3, Message: "exit status 3"}, out: "hello world"},
		{name: "exit at once", replies: []proto.Message{{Type: proto.TypeExit, ExitCode: &zero}}},
		{name: "exit without a code", replies: []proto.Message{{Type: proto.TypeExit}}, wantErr: "without a code"},
		{name: "silent agent", replies: []proto.Message{{Type: proto.TypeOutput, Stream: hypervisor.StreamStdout, Data: []byte("x")}},
			out: "x", wantErr: "did not end the command within"},
		{name: "agent gone", close: true, wantErr: errAgentGone.Error()},
		{name: "cancelled", cancel: true, wantErr: context.Canceled.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := make(chan proto.Message, len(tt.replies))
			for _, m := range tt.replies {
				ch <- m
			}
			if tt.close {
				close(ch)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			var out strings.Builder
			start := time.Now()
			res, err := awaitExec(ctx, "w1", ch, 100*time.Millisecond, func(_ string, b []byte) error {
				out.Write(b)
				return nil
			})
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %s", took)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v, want an error with %q", res, err, tt.wantErr)
				}
				if tt.close && !errors.Is(err, errAgentGone) {
					t.Errorf("got %v, want errAgentGone", err)
				}
			} else if err != nil || res != tt.want {
				t.Fatalf("got %+v, %v, want %+v", res, err, tt.want)
			}
			if out.String() != tt.out {
				t.Errorf("output %q, want %q", out.String(), tt.out)
			}
		})
	}
}
