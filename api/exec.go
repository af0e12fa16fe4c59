package api

import "time"

// Running a command in a workspace's guest (vgrid workspace exec).
//
// The user's POST /workspaces/{name}/exec stores the command for the
// host the workspace runs on; that host's agent finds it in its
// assignments (Assignments.Execs), claims it (so that it runs once), runs
// it through its hypervisor driver and sends its output and its end back
// (POST /nodes/{node}/execs/{id}/output and .../exit); the user's request
// streams them as they come, one ExecLine per line (application/x-ndjson).

// ExecPost is the body of POST /workspaces/{name}/exec.
type ExecPost struct {
	// Argv is the command and its arguments (no shell: give
	// ["sh", "-c", "..."] for one).
	Argv []string `json:"argv"`
	// Env are KEY=VALUE entries added to the command's environment.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory in the guest ("" = the guest agent's).
	Dir string `json:"dir,omitempty"`
	// Stdin is the command's standard input (base64 in JSON).
	Stdin []byte `json:"stdin,omitempty"`
	// TimeoutS bounds the command's run in seconds (0: 60); it is killed
	// after that.
	TimeoutS int `json:"timeout_s,omitempty"`
}

// ExecLine is one line of the answer of POST /workspaces/{name}/exec: a
// piece of output (Stream and Data), or, last, the command's end
// (ExitCode, with a Message when it was killed or could not run), or
// Error when the command's end is not known (the host went away, the
// command could not be started).
type ExecLine struct {
	Stream   string `json:"stream,omitempty"` // stdout or stderr
	Data     []byte `json:"data,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Message  string `json:"message,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Output streams of an exec.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// ExecRequest is a command waiting for a host's agent (Assignments.Execs).
type ExecRequest struct {
	ID string `json:"id"`
	// Project, Name and Workspace (its ID) say which workspace's guest
	// runs it.
	Project   string    `json:"project"`
	Name      string    `json:"name"`
	Workspace string    `json:"workspace"`
	Argv      []string  `json:"argv"`
	Env       []string  `json:"env,omitempty"`
	Dir       string    `json:"dir,omitempty"`
	Stdin     []byte    `json:"stdin,omitempty"`
	TimeoutS  int       `json:"timeout_s"`
	Created   time.Time `json:"created"`
}

// MaxExecChunk bounds the data of one ExecOutput.
const MaxExecChunk = 64 << 10

// ExecOutput is a piece of a command's output, from the agent (POST
// /nodes/{node}/execs/{id}/output). Seq counts the pieces of one command
// from 0; sending a piece again (a retry) is no error and stores nothing.
type ExecOutput struct {
	Seq    int64  `json:"seq"`
	Stream string `json:"stream"`
	Data   []byte `json:"data"`
}

// ExecOutputAck answers an ExecOutput: Backlog is how many pieces the
// user has not read yet. An agent slows down when it grows.
type ExecOutputAck struct {
	Backlog int `json:"backlog"`
}

// ExecExit is how a command ended, from the agent (POST
// /nodes/{node}/execs/{id}/exit), after its Chunks pieces of output:
// ExitCode and Message as the guest said, or Error when it could not be
// run (the guest agent not connected yet, the guest not running).
type ExecExit struct {
	ExitCode int    `json:"exit_code"`
	Message  string `json:"message,omitempty"`
	Error    string `json:"error,omitempty"`
	Chunks   int64  `json:"chunks"`
}
