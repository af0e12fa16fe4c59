package control

import (
	"strings"
	"testing"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
)

func TestValidateExec(t *testing.T) {
	big := strings.Repeat("a", MaxExecBytes)
	many := make([]string, MaxExecArgs+1)
	for i := range many {
		many[i] = "x"
	}
	for _, tc := range []struct {
		name  string
		req   api.ExecPost
		field string // "" = valid
		want  string // in the reason
	}{
		{"ok", api.ExecPost{Argv: []string{"hostname"}}, "", ""},
		{"ok full", api.ExecPost{Argv: []string{"sh", "-c", "echo $A"}, Env: []string{"A=1", "B="}, Dir: "/tmp", Stdin: []byte("in"), TimeoutS: 3600}, "", ""},
		{"ok at the limits", api.ExecPost{Argv: []string{strings.Repeat("a", MaxExecBytes)}, Stdin: make([]byte, MaxExecStdin), TimeoutS: 1}, "", ""},
		{"no argv", api.ExecPost{}, "argv", "required"},
		{"empty command", api.ExecPost{Argv: []string{"", "x"}}, "argv[0]", "empty"},
		{"too many args", api.ExecPost{Argv: many}, "argv", "at most 256"},
		{"NUL in argv", api.ExecPost{Argv: []string{"echo", "a\x00b"}}, "argv[1]", "NUL"},
		{"env without =", api.ExecPost{Argv: []string{"true"}, Env: []string{"A=1", "PATH"}}, "env[1]", "KEY=VALUE"},
		{"env without key", api.ExecPost{Argv: []string{"true"}, Env: []string{"=x"}}, "env[0]", "KEY=VALUE"},
		{"NUL in env", api.ExecPost{Argv: []string{"true"}, Env: []string{"A=\x00"}}, "env[0]", "NUL"},
		{"relative dir", api.ExecPost{Argv: []string{"true"}, Dir: "tmp"}, "dir", "absolute"},
		{"NUL in dir", api.ExecPost{Argv: []string{"true"}, Dir: "/t\x00"}, "dir", "NUL"},
		{"too large", api.ExecPost{Argv: []string{"echo", big}}, "argv", "at most 65536"},
		{"too large with env", api.ExecPost{Argv: []string{"echo"}, Env: []string{"A=" + big}}, "argv", "together"},
		{"stdin too large", api.ExecPost{Argv: []string{"cat"}, Stdin: make([]byte, MaxExecStdin+1)}, "stdin", "at most 262144"},
		{"negative timeout", api.ExecPost{Argv: []string{"true"}, TimeoutS: -1}, "timeout_s", "negative"},
		{"timeout over an hour", api.ExecPost{Argv: []string{"true"}, TimeoutS: 3601}, "timeout_s", "at most 3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := ValidateExec(tc.req)
			if tc.field == "" {
				if len(fe) > 0 {
					t.Fatalf("want valid, got %v", fe)
				}
				return
			}
			if len(fe) != 1 || fe[0].Field != tc.field || !strings.Contains(fe[0].Reason, tc.want) {
				t.Fatalf("got %v, want one error on %s containing %q", fe, tc.field, tc.want)
			}
		})
	}
}

func TestValidateExecAgentInput(t *testing.T) {
	for _, tc := range []struct {
		o     api.ExecOutput
		field string
	}{
		{api.ExecOutput{Seq: 0, Stream: "stdout", Data: []byte("x")}, ""},
		{api.ExecOutput{Seq: 3, Stream: "stderr", Data: make([]byte, api.MaxExecChunk)}, ""},
		{api.ExecOutput{Seq: -1, Stream: "stdout", Data: []byte("x")}, "seq"},
		{api.ExecOutput{Stream: "stdin", Data: []byte("x")}, "stream"},
		{api.ExecOutput{Stream: "stdout"}, "data"},
		{api.ExecOutput{Stream: "stdout", Data: make([]byte, api.MaxExecChunk+1)}, "data"},
	} {
		fe := validateExecOutput(tc.o)
		if tc.field == "" && len(fe) > 0 || tc.field != "" && (len(fe) != 1 || fe[0].Field != tc.field) {
			t.Errorf("output %+v: got %v, want an error on %q", tc.o.Seq, fe, tc.field)
		}
	}
	for _, tc := range []struct {
		x     api.ExecExit
		field string
	}{
		{api.ExecExit{ExitCode: 0}, ""},
		{api.ExecExit{ExitCode: -1, Error: "guest agent not connected yet"}, ""},
		{api.ExecExit{ExitCode: 255, Chunks: 9}, ""},
		{api.ExecExit{ExitCode: 256}, "exit_code"},
		{api.ExecExit{ExitCode: -2}, "exit_code"},
		{api.ExecExit{Message: strings.Repeat("m", maxExecMessage+1)}, "message"},
		{api.ExecExit{Error: strings.Repeat("e", maxExecMessage+1)}, "error"},
		{api.ExecExit{Chunks: -1}, "chunks"},
	} {
		fe := validateExecExit(tc.x)
		if tc.field == "" && len(fe) > 0 || tc.field != "" && (len(fe) != 1 || fe[0].Field != tc.field) {
			t.Errorf("exit %+v: got %v, want an error on %q", tc.x.ExitCode, fe, tc.field)
		}
	}
}

func TestExecRefusal(t *testing.T) {
	ws := func(st model.State, desired model.Desired, node string) model.Workspace {
		return model.Workspace{Spec: model.WorkspaceSpec{Name: "w1"}, Desired: desired, Status: model.WorkspaceStatus{State: st, Node: node}}
	}
	moving := ws(model.StateStopped, model.DesiredRunning, "h2")
	moving.Status.Move = &model.Move{From: "h1"}
	for _, tc := range []struct {
		name string
		ws   model.Workspace
		want string // "" = may run
	}{
		{"running", ws(model.StateRunning, model.DesiredRunning, "h1"), ""},
		{"starting", ws(model.StateStarting, model.DesiredRunning, "h1"), "guest agent not connected yet; the guest is still booting"},
		{"pending", ws(model.StatePending, model.DesiredRunning, "h1"), "is Pending"},
		{"stopped", ws(model.StateStopped, model.DesiredStopped, "h1"), "is Stopped, not Running"},
		{"stopping", ws(model.StateStopping, model.DesiredStopped, "h1"), "is Stopping"},
		{"being stopped", ws(model.StateRunning, model.DesiredStopped, "h1"), "is Running but is to be stopped"},
		{"suspended", ws(model.StateSuspended, model.DesiredSuspended, "h1"), "is Suspended"},
		{"failed", ws(model.StateFailed, model.DesiredStopped, "h1"), "is Failed"},
		{"queued", ws(model.StateQueued, model.DesiredRunning, ""), "is Queued: it runs on no host"},
		{"deleted", ws(model.StateRunning, model.DesiredDeleted, "h1"), "being deleted"},
		{"moving", moving, "moving to host h2"},
	} {
		got := execRefusal(tc.ws)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestExecStale(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := execRecord{ExecRequest: api.ExecRequest{Created: t0, TimeoutS: 60}}
	longest := ExecPickup + time.Minute + execGrace
	if execStaleAt(rec, t0.Add(longest)) {
		t.Fatal("stale while its user may still wait")
	}
	if !execStaleAt(rec, t0.Add(longest+execStale+time.Second)) {
		t.Fatal("not stale a minute after its user's longest wait")
	}
}
