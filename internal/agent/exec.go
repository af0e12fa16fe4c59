package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/hypervisor"
)

// Commands the control plane relays to run in this host's guests
// (Assignments.Execs, from `vgrid workspace exec`). Each runs in its own
// goroutine, at most maxExecs at once: it is claimed first (so that it
// runs once, also across agent restarts), run through the driver, its
// output sent back in pieces as it comes, then its end.

const (
	// maxExecs bounds the commands the agent runs at once; more wait,
	// unclaimed (their users give up after control.ExecPickup).
	maxExecs = 16
	// execBacklogSoft: when more pieces than this wait for the user, the
	// agent slows down (the driver's output then waits, and so does the
	// command in the guest).
	execBacklogSoft = 16
	// execGrace is how long past its timeout the driver is given to say
	// how a command ended (the guest kills it at its timeout).
	execGrace = 30 * time.Second
)

// execRunner tracks the commands under way. Its zero value is ready.
type execRunner struct {
	mu   sync.Mutex
	seen map[string]bool // claimed or waiting for a slot, by command ID
	sem  chan struct{}
}

// startExecs starts the commands not seen yet.
func (a *Agent) startExecs(ctx context.Context, xs []api.ExecRequest) {
	r := &a.execs
	for _, x := range xs {
		r.mu.Lock()
		if r.seen == nil {
			r.seen, r.sem = map[string]bool{}, make(chan struct{}, maxExecs)
		}
		if r.seen[x.ID] {
			r.mu.Unlock()
			continue
		}
		r.seen[x.ID] = true
		sem := r.sem
		r.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() {
				// A later assignments answer may still list it: its claim
				// then fails, and it is not run again.
				r.mu.Lock()
				delete(r.seen, x.ID)
				r.mu.Unlock()
			}()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			a.runExec(ctx, x)
		}()
	}
}

// runExec claims one command, runs it and reports its output and end.
func (a *Agent) runExec(ctx context.Context, x api.ExecRequest) {
	log := a.log.With("exec", x.ID, "workspace", x.Project+"/"+x.Name)
	if _, err := a.client().ClaimExec(ctx, a.node, x.ID); err != nil {
		if ctx.Err() == nil {
			// Claimed already, or given up by its user: nothing to do.
			log.Info("exec not claimed", "err", err)
		}
		return
	}
	a.mu.Lock()
	w, ok := a.assigned[x.Workspace]
	a.mu.Unlock()
	if !ok || w.Project != x.Project || w.Spec.Name != x.Name {
		a.execExit(ctx, log, x.ID, api.ExecExit{ExitCode: -1, Error: fmt.Sprintf("workspace %q does not run on host %s", x.Name, a.node)})
		return
	}
	timeout := time.Duration(x.TimeoutS) * time.Second
	runCtx, cancel := context.WithTimeout(ctx, timeout+execGrace)
	defer cancel()
	s := newExecSender(a, x.ID, cancel)
	go s.run(runCtx)
	start := time.Now()
	res, err := a.drv.Exec(runCtx, x.Workspace, hypervisor.ExecRequest{Argv: x.Argv, Env: x.Env, Dir: x.Dir, Stdin: x.Stdin, Timeout: timeout}, s.out)
	s.close()
	<-s.done
	if s.gone {
		log.Info("exec given up by its user", "after", time.Since(start).Round(time.Millisecond))
		return
	}
	exit := api.ExecExit{ExitCode: res.ExitCode, Message: res.Message, Chunks: s.seq}
	if err != nil {
		exit.ExitCode = -1
		switch {
		case ctx.Err() != nil:
			exit.Error = "the host agent stopped before the command ended (it goes on in the guest until its timeout)"
		case s.err != nil:
			exit.Error = "the command's output could not be sent: " + s.err.Error()
		case errors.Is(err, hypervisor.ErrGuestNotReady):
			exit.Error = "guest agent not connected yet; the guest is still booting"
		case errors.Is(err, hypervisor.ErrNotRunning):
			exit.Error = fmt.Sprintf("the guest of workspace %q is not running on host %s", x.Name, a.node)
		case errors.Is(err, hypervisor.ErrNotFound):
			exit.Error = fmt.Sprintf("workspace %q has no guest on host %s", x.Name, a.node)
		case errors.Is(err, context.DeadlineExceeded):
			exit.Error = fmt.Sprintf("the guest did not say how the command ended within %s of its timeout (%s)", execGrace, timeout)
		default:
			exit.Error = err.Error()
		}
	}
	if exit.ExitCode < -1 || exit.ExitCode > 255 {
		exit.ExitCode = 255
	}
	log.Debug("exec ended", "exit_code", exit.ExitCode, "error", exit.Error, "pieces", s.seq, "took", time.Since(start).Round(time.Millisecond))
	a.execExit(ctx, log, x.ID, exit)
}

// execExit sends a command's end, a few times if need be; also while the
// agent stops.
func (a *Agent) execExit(ctx context.Context, log *slog.Logger, id string, x api.ExecExit) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := a.client().ExecExit(ctx, a.node, id, x)
		if err == nil || !retryable(err) || attempt == 4 || !sleepCtx(ctx, backoff(attempt)) {
			if err != nil {
				log.Warn("exec: send exit", "err", err)
			}
			return
		}
	}
}

// execPiece is output from the driver, waiting to be sent.
type execPiece struct {
	stream string
	data   []byte
}

// execSender sends one command's output, in order, each piece once the
// one before was stored, taking whatever came meanwhile (up to
// api.MaxExecChunk) in one. The driver's output waits while execBuffer
// bytes wait.
type execSender struct {
	a      *Agent
	id     string
	cancel context.CancelFunc // gives the command up

	mu     sync.Mutex
	cond   sync.Cond   // on mu: the queue changed
	queue  []execPiece // adjacent output of one stream merged
	queued int         // bytes in queue
	closed bool        // the command ended: send what is queued, then stop
	failed bool

	done chan struct{} // closed when run returns
	// Set by run, read after done: the next piece's number (the pieces
	// sent), the user gone (the command's record deleted), why sending
	// failed.
	seq  int64
	gone bool
	err  error
}

// execBuffer bounds the output the agent holds for one command.
const execBuffer = 1 << 20

func newExecSender(a *Agent, id string, cancel context.CancelFunc) *execSender {
	s := &execSender{a: a, id: id, cancel: cancel, done: make(chan struct{})}
	s.cond.L = &s.mu
	return s
}

// out is the driver's output callback.
func (s *execSender) out(stream string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.queued >= execBuffer && !s.failed {
		s.cond.Wait()
	}
	if s.failed {
		return errors.New("exec: output not relayed")
	}
	if n := len(s.queue); n > 0 && s.queue[n-1].stream == stream {
		s.queue[n-1].data = append(s.queue[n-1].data, data...)
	} else {
		s.queue = append(s.queue, execPiece{stream, bytes.Clone(data)})
	}
	s.queued += len(data)
	s.cond.Broadcast()
	return nil
}

// close says the command ended: run sends what is queued and returns.
func (s *execSender) close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// take waits for output and takes up to api.MaxExecChunk of one stream;
// false when the command ended and everything was taken.
func (s *execSender) take() (execPiece, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) == 0 && !s.closed {
		s.cond.Wait()
	}
	if len(s.queue) == 0 {
		return execPiece{}, false
	}
	head := &s.queue[0]
	n := min(len(head.data), api.MaxExecChunk)
	p := execPiece{head.stream, head.data[:n:n]}
	if head.data = head.data[n:]; len(head.data) == 0 {
		s.queue = s.queue[1:]
	}
	s.queued -= n
	s.cond.Broadcast()
	return p, true
}

func (s *execSender) run(ctx context.Context) {
	defer close(s.done)
	for {
		p, ok := s.take()
		if !ok {
			return
		}
		if err := s.send(ctx, p); err != nil {
			var ce *client.Error
			s.gone = errors.As(err, &ce) && ce.Status == 410
			s.err = err
			s.mu.Lock()
			s.failed, s.queue, s.queued = true, nil, 0
			s.cond.Broadcast()
			s.mu.Unlock()
			s.cancel()
			return
		}
	}
}

// send sends one piece, retrying what may pass later, and slows down
// while its user is behind.
func (s *execSender) send(ctx context.Context, p execPiece) error {
	o := api.ExecOutput{Seq: s.seq, Stream: p.stream, Data: p.data}
	for attempt := 0; ; attempt++ {
		ack, err := s.a.client().ExecOutput(ctx, s.a.node, s.id, o)
		if err == nil {
			s.seq++
			if over := ack.Backlog - execBacklogSoft; over > 0 {
				sleepCtx(ctx, min(time.Duration(over)*20*time.Millisecond, time.Second))
			}
			return nil
		}
		if !retryable(err) || attempt == 4 || !sleepCtx(ctx, backoff(attempt)) {
			return err
		}
	}
}

// retryable says whether a call may pass if made again: not an answer of
// the control plane refusing it (4xx other than 429).
func retryable(err error) bool {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status >= 500 || ce.Status == 429
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func backoff(attempt int) time.Duration { return 200 * time.Millisecond << attempt }

// sleepCtx sleeps for d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
