package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Commands run in guests (vgrid workspace exec), relayed through the
// store so that any replica of the control plane may serve the user and
// any other the host's agent:
//
//	exec/<node>/<id>            execRecord: the command, for the host's agent
//	execout/<id>/claimed        written with the claim (the agent took it)
//	execout/<id>/o/<seq>        api.ExecOutput: a piece of output not yet streamed
//	execout/<id>/x              api.ExecExit: how it ended
//
// The user's request (Exec) writes the record, watches execout/<id>/,
// streams each piece as it comes (and deletes it), and deletes everything
// when it ends. The host's long poll (Assignments) lists its unclaimed
// records and is woken when one is written (its hostWaker). A record a crash
// left behind is swept by Run (sweepExecs).

// Limits of a command (the guest agent's own, internal/guest/agent).
const (
	MaxExecArgs        = 256       // argv entries
	MaxExecBytes       = 64 << 10  // argv, env and dir together
	MaxExecStdin       = 256 << 10 // bytes of standard input
	DefaultExecTimeout = time.Minute
	MaxExecTimeout     = time.Hour
	// MaxExecBacklog bounds the pieces of one command stored and not yet
	// streamed to the user: an agent whose piece finds that many waiting
	// is refused (and gives the command up): its user does not read.
	MaxExecBacklog = 256
	// maxExecMessage bounds an exit's message and error.
	maxExecMessage = 4 << 10
)

// Times of the relay.
const (
	// ExecPickup is how long a command waits for its host's agent to
	// take it.
	ExecPickup = 30 * time.Second
	// execBeginAfter: once the agent took the command, the user's answer
	// (200, a stream) begins at the first output, or after this long.
	// Until then a command that could not run is an error status (409).
	execBeginAfter = 2 * time.Second
	// execGrace is how long past its timeout a command's end is waited
	// for (the guest kills it at its timeout).
	execGrace = 30 * time.Second
	// execSweepEvery is how often Run looks for records left behind;
	// execStale how long past the end of its user's wait one is kept.
	execSweepEvery = time.Minute
	execStale      = time.Minute
)

// execRecord is what exec/<node>/<id> holds.
type execRecord struct {
	api.ExecRequest
	Node    string    `json:"node"`
	Claimed time.Time `json:"claimed,omitzero"`
}

var execIDRE = regexp.MustCompile(`^x[0-9a-f]{16}$`)

func newExecID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "x" + hex.EncodeToString(b)
}

func execKey(node, id string) string { return "exec/" + node + "/" + id }
func execOutPrefix(id string) string { return "execout/" + id + "/" }
func execChunkKey(id string, seq int64) string {
	return fmt.Sprintf("%so/%012d", execOutPrefix(id), seq)
}

// ValidateExec checks a command as the user sends it (POST
// /workspaces/{name}/exec). It is pure.
func ValidateExec(req api.ExecPost) []api.FieldError {
	var f fieldErrs
	switch {
	case len(req.Argv) == 0:
		f.add("argv", "required: the command and its arguments, e.g. [\"hostname\"]")
	case req.Argv[0] == "":
		f.add("argv[0]", "the command must not be empty")
	case len(req.Argv) > MaxExecArgs:
		f.add("argv", "%d entries, at most %d", len(req.Argv), MaxExecArgs)
	}
	size := len(req.Dir)
	for i, a := range req.Argv {
		size += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			f.add(fmt.Sprintf("argv[%d]", i), "must not contain NUL bytes")
		}
	}
	for i, e := range req.Env {
		size += len(e)
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			f.add(fmt.Sprintf("env[%d]", i), "want KEY=VALUE, got %s", quoteShort(e))
		} else if strings.IndexByte(e, 0) >= 0 {
			f.add(fmt.Sprintf("env[%d]", i), "must not contain NUL bytes")
		}
	}
	switch {
	case strings.IndexByte(req.Dir, 0) >= 0:
		f.add("dir", "must not contain NUL bytes")
	case req.Dir != "" && !path.IsAbs(req.Dir):
		f.add("dir", "want an absolute path in the guest, got %s", quoteShort(req.Dir))
	}
	if size > MaxExecBytes {
		f.add("argv", "argv, env and dir take %d bytes together, at most %d", size, MaxExecBytes)
	}
	if len(req.Stdin) > MaxExecStdin {
		f.add("stdin", "%d bytes, at most %d (%s)", len(req.Stdin), MaxExecStdin, model.ByteSize(MaxExecStdin).Human())
	}
	switch {
	case req.TimeoutS < 0:
		f.add("timeout_s", "must not be negative (0: %d)", int(DefaultExecTimeout/time.Second))
	case time.Duration(req.TimeoutS)*time.Second > MaxExecTimeout:
		f.add("timeout_s", "%d seconds, at most %d (1 h)", req.TimeoutS, int(MaxExecTimeout/time.Second))
	}
	return f
}

// validateExecOutput checks a piece of output as an agent sends it.
func validateExecOutput(o api.ExecOutput) []api.FieldError {
	var f fieldErrs
	if o.Seq < 0 || o.Seq > 1<<40 {
		f.add("seq", "want 0 to %d, got %d", int64(1)<<40, o.Seq)
	}
	if o.Stream != api.StreamStdout && o.Stream != api.StreamStderr {
		f.add("stream", "want stdout or stderr, got %s", quoteShort(o.Stream))
	}
	if len(o.Data) == 0 || len(o.Data) > api.MaxExecChunk {
		f.add("data", "want 1 to %d bytes, got %d", api.MaxExecChunk, len(o.Data))
	}
	return f
}

// validateExecExit checks a command's end as an agent sends it.
func validateExecExit(x api.ExecExit) []api.FieldError {
	var f fieldErrs
	if x.ExitCode < -1 || x.ExitCode > 255 {
		f.add("exit_code", "want -1 to 255, got %d", x.ExitCode)
	}
	if len(x.Message) > maxExecMessage {
		f.add("message", "%d bytes, at most %d", len(x.Message), maxExecMessage)
	}
	if len(x.Error) > maxExecMessage {
		f.add("error", "%d bytes, at most %d", len(x.Error), maxExecMessage)
	}
	if x.Chunks < 0 || x.Chunks > 1<<40 {
		f.add("chunks", "want 0 to %d, got %d", int64(1)<<40, x.Chunks)
	}
	return f
}

// execRefusal says why a command cannot run in ws now ("" if it can): its
// guest must be Running on a host and meant to go on running. It is pure.
func execRefusal(ws model.Workspace) string {
	st, name := ws.Status, ws.Spec.Name
	switch {
	case ws.Desired == model.DesiredDeleted:
		return fmt.Sprintf("workspace %q is being deleted", name)
	case st.Move != nil:
		return fmt.Sprintf("workspace %q is moving to host %s (state %s): run the command once it runs there", name, st.Node, st.State)
	case st.Node == "" || st.State == model.StateQueued || st.State == model.StateScheduled:
		return fmt.Sprintf("workspace %q is %s: it runs on no host yet", name, st.State)
	case ws.Desired != model.DesiredRunning && (st.State == model.StateRunning || st.State == model.StateStarting):
		return fmt.Sprintf("workspace %q is %s but is to be %s", name, st.State, ws.Desired)
	case st.State == model.StateRunning:
		return ""
	case st.State == model.StateStarting:
		return fmt.Sprintf("workspace %q is Starting: guest agent not connected yet; the guest is still booting", name)
	case st.State == model.StatePending:
		return fmt.Sprintf("workspace %q is Pending: host %s has not started its guest yet", name, st.Node)
	}
	return fmt.Sprintf("workspace %q is %s, not Running: start it first (vgrid workspace start %s)", name, st.State, name)
}

// execTimeout is how long a command may run.
func execTimeout(s int) time.Duration {
	if s <= 0 {
		return DefaultExecTimeout
	}
	return time.Duration(s) * time.Second
}

// ExecSink receives the answer of Exec: Begin once the answer is a stream
// (status 200), then each line. An error Exec returns before Begin is the
// request's answer; after Begin, the stream's.
type ExecSink interface {
	Begin() error
	Line(api.ExecLine) error
}

// Exec runs a command in the guest of project's workspace name, through
// its host's agent, and streams its output and end to sink as they come.
// A workspace that is not Running on a host is a conflict naming its
// state; a command the host could not run (its guest agent not
// connected) is a conflict too, when it has printed nothing.
func (ctl *Controller) Exec(ctx context.Context, project, name string, req api.ExecPost, sink ExecSink) error {
	if fe := ValidateExec(req); len(fe) > 0 {
		return invalid("invalid command: "+fe[0].Field+": "+fe[0].Reason, fe...)
	}
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return err
	}
	if reason := execRefusal(ws); reason != "" {
		return conflict(reason)
	}
	timeout := execTimeout(req.TimeoutS)
	rec := execRecord{Node: ws.Status.Node, ExecRequest: api.ExecRequest{
		ID: newExecID(), Project: project, Name: name, Workspace: ws.ID,
		Argv: req.Argv, Env: req.Env, Dir: req.Dir, Stdin: req.Stdin,
		TimeoutS: int(timeout / time.Second), Created: ctl.now(),
	}}
	b, _ := json.Marshal(rec)
	key := execKey(rec.Node, rec.ID)
	rev, err := ctl.store.Create(ctx, key, b)
	if err != nil {
		return err
	}
	defer ctl.dropExec(ctx, key, rec.ID)
	r := &execRelay{ctl: ctl, rec: rec, sink: sink, ctx: context.WithoutCancel(ctx), pending: map[int64]api.ExecOutput{}}
	return r.run(ctx, rev, timeout)
}

// dropExec deletes a command's record and what is left of its output: a
// record gone tells its agent (its next piece is refused) to give the
// command up.
func (ctl *Controller) dropExec(ctx context.Context, key, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := ctl.store.Delete(ctx, key, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		ctl.log.Warn("exec: delete record", "key", key, "err", err)
	}
	kvs, err := ctl.store.List(ctx, execOutPrefix(id))
	if err != nil {
		ctl.log.Warn("exec: list output", "id", id, "err", err)
		return
	}
	for _, kv := range kvs {
		if err := ctl.store.Delete(ctx, kv.Key, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
			ctl.log.Warn("exec: delete output", "key", kv.Key, "err", err)
		}
	}
}

// execRelay streams one command's records to its user.
type execRelay struct {
	ctl  *Controller
	rec  execRecord
	sink ExecSink
	ctx  context.Context // for deleting what was streamed, also after the user left

	begun, claimed bool
	next           int64 // the next piece to stream
	pending        map[int64]api.ExecOutput
	exit           *api.ExecExit
}

func (r *execRelay) run(ctx context.Context, rev int64, timeout time.Duration) error {
	prefix := execOutPrefix(r.rec.ID)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r.ctl.store.Watch(wctx, prefix, rev)
	if err != nil {
		return err
	}
	pickup := time.NewTimer(ExecPickup)
	defer pickup.Stop()
	var beginC, deadlineC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-pickup.C:
			return r.fail(conflict(fmt.Sprintf("host %s did not take the command within %s: is its agent running? (vgrid node get %s)", r.rec.Node, ExecPickup, r.rec.Node)))
		case <-beginC:
			beginC = nil
			if err := r.begin(); err != nil {
				return err
			}
			continue
		case <-deadlineC:
			return r.fail(fmt.Errorf("host %s did not say how the command ended within %s of its timeout (%s)", r.rec.Node, execGrace, timeout))
		case ev, ok := <-ch:
			switch {
			case !ok:
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// The watch fell behind: read what is there, then watch on.
				if ch, err = r.relist(wctx, prefix); err != nil {
					return err
				}
			case ev.Type == store.EventPut:
				if err := r.add(ev.KV); err != nil {
					return err
				}
			}
		}
		if r.claimed && deadlineC == nil {
			pickup.Stop()
			beginC = time.After(execBeginAfter)
			deadlineC = time.After(timeout + execGrace)
		}
		if done, err := r.flush(); done || err != nil {
			return err
		}
	}
}

// relist reads the command's records and watches them again from there.
func (r *execRelay) relist(ctx context.Context, prefix string) (<-chan store.Event, error) {
	rev, err := r.ctl.store.Revision(ctx)
	if err != nil {
		return nil, err
	}
	kvs, err := r.ctl.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		if err := r.add(kv); err != nil {
			return nil, err
		}
	}
	return r.ctl.store.Watch(ctx, prefix, rev)
}

// add takes in one record of the command.
func (r *execRelay) add(kv store.KV) error {
	switch rest := strings.TrimPrefix(kv.Key, execOutPrefix(r.rec.ID)); {
	case rest == "claimed":
		r.claimed = true
	case rest == "x":
		var x api.ExecExit
		if err := json.Unmarshal(kv.Value, &x); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		r.claimed, r.exit = true, &x
	case strings.HasPrefix(rest, "o/"):
		var o api.ExecOutput
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if o.Seq >= r.next {
			r.pending[o.Seq] = o
		}
	}
	return nil
}

// flush streams the pieces that are next in order, and the end once every
// piece before it is streamed. done: the command's answer is complete.
func (r *execRelay) flush() (done bool, err error) {
	for {
		o, ok := r.pending[r.next]
		if !ok {
			break
		}
		if err := r.begin(); err != nil {
			return true, err
		}
		delete(r.pending, r.next)
		if err := r.sink.Line(api.ExecLine{Stream: o.Stream, Data: o.Data}); err != nil {
			return true, err
		}
		// Streamed: the store keeps only what the user has not read.
		if err := r.ctl.store.Delete(r.ctx, execChunkKey(r.rec.ID, r.next), 0); err != nil && !errors.Is(err, store.ErrNotFound) {
			r.ctl.log.Warn("exec: delete streamed output", "id", r.rec.ID, "err", err)
		}
		r.next++
	}
	x := r.exit
	if x == nil || r.next < x.Chunks {
		return false, nil
	}
	if x.Error != "" {
		return true, r.fail(conflict(x.Error))
	}
	if err := r.begin(); err != nil {
		return true, err
	}
	code := x.ExitCode
	return true, r.sink.Line(api.ExecLine{ExitCode: &code, Message: x.Message})
}

func (r *execRelay) begin() error {
	if r.begun {
		return nil
	}
	r.begun = true
	return r.sink.Begin()
}

// fail ends the answer with err: its status before the stream began, its
// last line after.
func (r *execRelay) fail(err error) error {
	if !r.begun {
		return err
	}
	return r.sink.Line(api.ExecLine{Error: err.Error()})
}

// execRecordOf reads a command of node's, which must be claimed unless
// unclaimed is set.
func (ctl *Controller) execRecordOf(ctx context.Context, node, id string, unclaimed bool) (execRecord, store.KV, error) {
	var rec execRecord
	if !execIDRE.MatchString(id) {
		return rec, store.KV{}, invalid("invalid command id", api.FieldError{Field: "id", Reason: "want x and 16 hex digits, got " + quoteShort(id)})
	}
	kv, err := ctl.store.Get(ctx, execKey(node, id))
	if errors.Is(err, store.ErrNotFound) {
		return rec, kv, gone("no such command for this host: it ended, or its user gave it up")
	}
	if err != nil {
		return rec, kv, err
	}
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return rec, kv, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	if !unclaimed && rec.Claimed.IsZero() {
		return rec, kv, conflict("command " + id + " is not claimed: claim it first")
	}
	return rec, kv, nil
}

// pendingExecs are the commands waiting for node's agent.
func (ctl *Controller) pendingExecs(ctx context.Context, node string) ([]api.ExecRequest, error) {
	kvs, err := ctl.store.List(ctx, "exec/"+node+"/")
	if err != nil {
		return nil, err
	}
	var out []api.ExecRequest
	for _, kv := range kvs {
		var rec execRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			ctl.log.Warn("exec: decode record", "key", kv.Key, "err", err)
			continue
		}
		if rec.Claimed.IsZero() && rec.Node == node {
			out = append(out, rec.ExecRequest)
		}
	}
	return out, nil
}

// ClaimExec is node's agent taking a command: it runs it once, only after
// its claim succeeded. A second claim is a conflict; a command whose user
// went away, or whose workspace is no longer on node, is gone.
func (ctl *Controller) ClaimExec(ctx context.Context, node, id string) (api.ExecRequest, error) {
	rec, kv, err := ctl.execRecordOf(ctx, node, id, true)
	if err != nil {
		return api.ExecRequest{}, err
	}
	if !rec.Claimed.IsZero() {
		return api.ExecRequest{}, conflict("command " + id + " was claimed already")
	}
	rec.Claimed = ctl.now()
	b, _ := json.Marshal(rec)
	ops := []store.Op{{Key: kv.Key, Value: b, Rev: kv.Revision}, {Key: execOutPrefix(id) + "claimed", Value: []byte("{}"), Rev: store.OpMustNotExist}}
	ws, werr := ctl.getWS(ctx, rec.Project, rec.Name)
	moved := werr != nil || ws.ID != rec.Workspace || ws.Status.Node != node
	if moved {
		// Its user learns at once rather than at the pickup's end.
		x, _ := json.Marshal(api.ExecExit{ExitCode: -1, Error: fmt.Sprintf("workspace %q is no longer on host %s", rec.Name, node)})
		ops = append(ops, store.Op{Key: execOutPrefix(id) + "x", Value: x, Rev: store.OpMustNotExist})
	}
	switch _, err := ctl.store.Txn(ctx, ops); {
	case errors.Is(err, store.ErrNotFound):
		return api.ExecRequest{}, gone("no such command for this host: its user gave it up")
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		return api.ExecRequest{}, conflict("command " + id + " was claimed already")
	case err != nil:
		return api.ExecRequest{}, err
	}
	if moved {
		return api.ExecRequest{}, gone(fmt.Sprintf("workspace %q is no longer on this host", rec.Name))
	}
	return rec.ExecRequest, nil
}

// ExecOutput stores a piece of a claimed command's output for its user.
func (ctl *Controller) ExecOutput(ctx context.Context, node, id string, o api.ExecOutput) (api.ExecOutputAck, error) {
	if fe := validateExecOutput(o); len(fe) > 0 {
		return api.ExecOutputAck{}, invalid("invalid output", fe...)
	}
	if _, _, err := ctl.execRecordOf(ctx, node, id, false); err != nil {
		return api.ExecOutputAck{}, err
	}
	kvs, err := ctl.store.List(ctx, execOutPrefix(id)+"o/")
	if err != nil {
		return api.ExecOutputAck{}, err
	}
	backlog := len(kvs)
	if backlog >= MaxExecBacklog {
		return api.ExecOutputAck{Backlog: backlog}, conflict(fmt.Sprintf("%d pieces of output wait for the user, who does not read them: give the command up", backlog))
	}
	b, _ := json.Marshal(o)
	if _, err := ctl.store.Create(ctx, execChunkKey(id, o.Seq), b); err != nil && !errors.Is(err, store.ErrExists) {
		return api.ExecOutputAck{}, err
	}
	return api.ExecOutputAck{Backlog: backlog + 1}, nil
}

// ExecExit stores how a claimed command ended.
func (ctl *Controller) ExecExit(ctx context.Context, node, id string, x api.ExecExit) error {
	if fe := validateExecExit(x); len(fe) > 0 {
		return invalid("invalid exit", fe...)
	}
	if _, _, err := ctl.execRecordOf(ctx, node, id, false); err != nil {
		return err
	}
	b, _ := json.Marshal(x)
	if _, err := ctl.store.Create(ctx, execOutPrefix(id)+"x", b); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	return nil
}

// execState is the controller's share of the relay.
type execState struct {
	waker hostWaker // of exec/: a command written wakes its host
	mu    sync.Mutex
	swept time.Time // the last sweepExecs
}

// sweepExecs deletes, at most every execSweepEvery, the commands whose
// user's wait ended long ago (a replica that crashed while relaying), and
// output whose command is gone.
func (ctl *Controller) sweepExecs(ctx context.Context) {
	now := ctl.now()
	ctl.execs.mu.Lock()
	due := now.Sub(ctl.execs.swept) >= execSweepEvery
	if due {
		ctl.execs.swept = now
	}
	ctl.execs.mu.Unlock()
	if !due {
		return
	}
	kvs, err := ctl.store.List(ctx, "exec/")
	if err != nil {
		ctl.log.Warn("exec sweep", "err", err)
		return
	}
	live := map[string]bool{}
	for _, kv := range kvs {
		var rec execRecord
		if err := json.Unmarshal(kv.Value, &rec); err == nil && !execStaleAt(rec, now) {
			live[rec.ID] = true
			continue
		}
		ctl.log.Info("exec: deleting a command left behind", "key", kv.Key, "created", rec.Created)
		if err := ctl.store.Delete(ctx, kv.Key, kv.Revision); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			ctl.log.Warn("exec sweep", "key", kv.Key, "err", err)
		}
	}
	outs, err := ctl.store.List(ctx, "execout/")
	if err != nil {
		ctl.log.Warn("exec sweep", "err", err)
		return
	}
	for _, kv := range outs {
		id, _, _ := strings.Cut(strings.TrimPrefix(kv.Key, "execout/"), "/")
		if live[id] {
			continue
		}
		if err := ctl.store.Delete(ctx, kv.Key, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
			ctl.log.Warn("exec sweep", "key", kv.Key, "err", err)
		}
	}
}

// execStaleAt says whether rec outlived the longest wait of its user by
// execStale at now.
func execStaleAt(rec execRecord, now time.Time) bool {
	return now.After(rec.Created.Add(ExecPickup + execTimeout(rec.TimeoutS) + execGrace + execStale))
}

// execWakeHosts: a command written unclaimed wakes its host (a claim or
// a delete gives its agent nothing new to do).
func execWakeHosts(ev store.Event) []string {
	if ev.Type != store.EventPut {
		return nil
	}
	var v struct {
		Claimed time.Time `json:"claimed"`
	}
	if json.Unmarshal(ev.KV.Value, &v) == nil && !v.Claimed.IsZero() {
		return nil
	}
	node, _, _ := strings.Cut(strings.TrimPrefix(ev.KV.Key, "exec/"), "/")
	return []string{node}
}
