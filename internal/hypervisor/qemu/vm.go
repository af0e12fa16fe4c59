package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// vm is a running QEMU process the driver watches: one goroutine (watch)
// owns its guest-agent connection and notices when the process ends; a
// QMP connection is dialed when first needed and kept.
type vm struct {
	id   string
	p    Paths
	pid  int
	log  *slog.Logger
	ctx  context.Context // cancelled when the driver stops watching
	stop context.CancelFunc
	done chan struct{} // closed when watch returns
	// notify reports a change of the instance (Driver.Changes).
	notify func()

	// finished is set once the run's end has been (or is being) recorded.
	finished atomic.Bool
	// unwatched is the reason to record if the process is found dead
	// without anyone having seen it die.
	unwatched string

	qmpMu sync.Mutex // serializes dialing QMP (QEMU serves one client)

	mu         sync.Mutex // guards the fields below
	qmp        *qmpClient
	qmpTried   time.Time
	guest      *model.GuestInfo
	paused     bool
	stopReason string // set by Stop: why the process is going away
	shutdown   string // reason of QMP's SHUTDOWN event
	// suspended is set by Suspend once the state is saved: finish records
	// it with the exit. suspendStart is when that Suspend began.
	suspended    *savedState
	suspendStart time.Time
	migration    chan struct{} // MIGRATION events (migrationWake)
	// agentConn is the guest agent's connection while serveAgent reads
	// it; pending are the requests (Exec) waiting for replies, by ID.
	agentConn net.Conn
	pending   map[string]*waiter
	agentWMu  sync.Mutex // serializes writes to agentConn
	// heard is when the guest agent last sent a line (unix ns), or its
	// connection began.
	heard atomic.Int64
}

// waiter is a request waiting for the guest agent's replies: they come on
// ch (closed by serveAgent, whose goroutine alone sends on it, when the
// connection ends); gone is closed when the requester gives up.
type waiter struct {
	ch   chan proto.Message
	gone chan struct{}
}

// setSuspended makes the recording of the process's end record rec.
func (v *vm) setSuspended(rec *savedState, start time.Time) {
	v.mu.Lock()
	v.suspended, v.suspendStart = rec, start
	v.mu.Unlock()
}

// migrationWake returns the channel a MIGRATION event wakes.
func (v *vm) migrationWake() chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.migration == nil {
		v.migration = make(chan struct{}, 1)
	}
	return v.migration
}

func (v *vm) marker() string { return marker(v.p) }

func (v *vm) setStopReason(r string) {
	v.mu.Lock()
	v.stopReason = r
	v.mu.Unlock()
}

func (v *vm) guestInfo() *model.GuestInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.guest == nil {
		return nil
	}
	g := *v.guest
	g.Addresses = append([]string(nil), v.guest.Addresses...)
	return &g
}

func (v *vm) isPaused() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.paused
}

// errUnwatched is returned for QMP on a vm the driver no longer watches.
var errUnwatched = errors.New("instance no longer watched")

// qmpClient returns the QMP connection, dialing it if there is none.
func (v *vm) qmpClient(ctx context.Context) (*qmpClient, error) {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	if v.ctx.Err() != nil {
		// Nobody would close a new connection, and it would keep the
		// next driver off QEMU's one QMP slot.
		return nil, errUnwatched
	}
	v.mu.Lock()
	c := v.qmp
	v.qmpTried = time.Now()
	v.mu.Unlock()
	if c != nil {
		select {
		case <-c.Done():
		default:
			return c, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	defer context.AfterFunc(v.ctx, cancel)()
	onEvent := func(name string, data json.RawMessage) {
		v.mu.Lock()
		switch name {
		case "STOP":
			v.paused = true
		case "RESUME":
			v.paused = false
		case "SHUTDOWN":
			var d struct {
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal(data, &d)
			v.shutdown = d.Reason
		}
		v.mu.Unlock()
		if name == "STOP" || name == "RESUME" {
			v.notify()
		}
		// Migrations and block jobs (a live migration's disk mirror,
		// migrate.go) wake whoever waits for them.
		if name == "MIGRATION" || name == "JOB_STATUS_CHANGE" {
			select {
			case v.migrationWake() <- struct{}{}:
			default:
			}
		}
	}
	c, err := dialQMP(ctx, v.p.QMP, onEvent)
	if err != nil {
		return nil, fmt.Errorf("connect qmp: %w", err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		c.Close()
		return nil, err
	}
	v.mu.Lock()
	v.qmp = c
	// Not only "paused": after a save the status is "postmigrate", while
	// a resume loads "inmigrate"; in every one the guest does not run.
	v.paused = st.Status != "running"
	v.mu.Unlock()
	return c, nil
}

// closeQMP drops the QMP connection.
func (v *vm) closeQMP() {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	v.mu.Lock()
	c := v.qmp
	v.qmp = nil
	v.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// watch runs while the driver watches v: it keeps a connection to the
// guest agent (reconnecting while the process lives), records the latest
// guest report, and finishes the instance when the process is gone.
func (d *Driver) watch(v *vm) {
	defer d.wg.Done()
	defer close(v.done)
	defer v.closeQMP()
	backoff := 50 * time.Millisecond
	for v.ctx.Err() == nil {
		if !alive(v.pid, v.marker()) {
			d.finish(v)
			return
		}
		v.mu.Lock()
		retryQMP := v.qmp == nil && time.Since(v.qmpTried) > 5*time.Second
		v.mu.Unlock()
		if retryQMP {
			if _, err := v.qmpClient(v.ctx); err != nil {
				v.log.Debug("qmp not connected", "err", err)
			}
		}
		var dialer net.Dialer
		dctx, cancel := context.WithTimeout(v.ctx, time.Second)
		conn, err := dialer.DialContext(dctx, "unix", v.p.Agent)
		cancel()
		if err != nil {
			select {
			case <-v.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		d.serveAgent(v, conn)
	}
}

// serveAgent asks the guest agent for its facts and reads its messages
// until the connection ends.
func (d *Driver) serveAgent(v *vm, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(v.ctx, func() { conn.Close() })
	defer stop()
	// The connection is there for requests at once: Exec writes only to a
	// guest that runs here (Get says so), so nothing reaches a guest still
	// being loaded; a moved guest that runs here before FinishIncoming
	// (resumeOnArrival) takes commands at once.
	v.heard.Store(time.Now().UnixNano())
	v.mu.Lock()
	v.agentConn = conn
	v.mu.Unlock()
	defer func() {
		// Requests still waiting get no more replies.
		v.mu.Lock()
		v.agentConn = nil
		for id, w := range v.pending {
			close(w.ch)
			delete(v.pending, id)
		}
		v.mu.Unlock()
	}()
	quit := make(chan struct{})
	var asker sync.WaitGroup
	defer asker.Wait()
	defer close(quit)
	answered := make(chan struct{})
	var once sync.Once
	asker.Add(1)
	go func() {
		defer asker.Done()
		// A QEMU waiting for, or loading, an incoming guest: connected (so
		// that the guest finds its agent's port still open when it runs
		// here), but the driver asks nothing of its own until the guest
		// runs here (FinishIncoming removes the mark): a request written
		// meanwhile was lost now and then, and once the guest crashed
		// right after the move.
		for hasIncoming(v.p) {
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		if v.writeAgent(conn, proto.Message{Type: proto.TypeFacts}) != nil {
			return
		}
		// The guest may not see that first request (a moved guest, alive
		// and well, once stayed "starting" for good when its request was
		// lost): ask again, every agentAskAgain, until it answers on this
		// connection.
		t := time.NewTicker(agentAskAgain)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-answered:
				t.Stop()
				v.watchAgent(conn, quit)
				return
			case <-t.C:
				if v.writeAgent(conn, proto.Message{Type: proto.TypeFacts}) != nil {
					return
				}
			}
		}
	}()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		v.heard.Store(time.Now().UnixNano())
		var m proto.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			v.log.Debug("bad line from guest agent", "err", err)
			continue
		}
		switch m.Type {
		case proto.TypeReady, proto.TypeFacts:
			if m.Info == nil {
				continue
			}
			once.Do(func() { close(answered) })
			info := *m.Info
			if len(m.Volumes) > 0 {
				info.Volumes = m.Volumes
			}
			v.mu.Lock()
			first := v.guest == nil
			v.guest = &info
			v.mu.Unlock()
			if first {
				v.log.Info("guest ready", "vcpus", info.VCPUs, "memory_mib", info.MemoryMiB)
			}
			v.notify()
		case proto.TypeOutput, proto.TypeExit:
			v.deliver(m)
		case proto.TypeError:
			v.log.Warn("guest agent error", "message", m.Message)
		}
	}
}

// agentAskAgain is how often serveAgent asks a guest agent that has not
// answered yet for its facts again.
var agentAskAgain = 2 * time.Second

// agentPing is how long a guest agent may be silent while requests wait
// for it before it is pinged; agentSilent how long it may then stay
// silent before its connection is made anew (watchAgent).
var agentPing, agentSilent = 10 * time.Second, 20 * time.Second

// watchAgent watches the guest agent of conn, which has answered once,
// until quit: when it falls silent while requests wait for it, it is
// pinged (its agent answers a ping at once, whatever commands run); if it
// stays silent agentSilent after that, the connection is closed, so that
// watch makes a new one. A virtio-serial channel that stopped carrying
// messages is reset that way (the guest sees its host leave and come
// back); the requests waiting end with errAgentGone rather than at their
// timeouts, and the guest kills the commands it was running for the
// connection that ended. A paused guest (a suspension, a move) is not
// expected to answer.
func (v *vm) watchAgent(conn net.Conn, quit <-chan struct{}) {
	t := time.NewTicker(agentPing / 4)
	defer t.Stop()
	var pinged time.Time
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		now, heard := time.Now(), time.Unix(0, v.heard.Load())
		away := v.isPaused() || hasIncoming(v.p) // cannot answer
		if away || !heard.Before(pinged) {
			pinged = time.Time{}
		}
		switch {
		case !pinged.IsZero() && now.Sub(pinged) >= agentSilent:
			v.log.Warn("guest agent silent: connecting to it anew", "heard_ago", now.Sub(heard).Round(time.Millisecond),
				"pinged_ago", now.Sub(pinged).Round(time.Millisecond), "requests_waiting", v.waiting())
			conn.Close()
			return
		case pinged.IsZero() && now.Sub(heard) >= agentPing && v.waiting() > 0 && !away:
			if v.writeAgent(conn, proto.Message{Type: proto.TypePing, ID: "ping"}) != nil {
				return
			}
			pinged = now
		}
	}
}

// waiting is how many requests wait for the guest agent's replies.
func (v *vm) waiting() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pending)
}

// writeAgent writes one message to the guest agent's connection.
func (v *vm) writeAgent(conn net.Conn, m proto.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	v.agentWMu.Lock()
	defer v.agentWMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err = conn.Write(append(b, '\n'))
	return err
}

// deliver hands a reply to the request waiting for it (unknown IDs, a
// request given up, are dropped). It blocks while the waiter is behind:
// the guest's output is not dropped, and the guest agent, whose writes
// then wait, slows down.
func (v *vm) deliver(m proto.Message) {
	v.mu.Lock()
	w := v.pending[m.ID]
	v.mu.Unlock()
	if w == nil {
		return
	}
	select {
	case w.ch <- m:
	case <-w.gone:
	case <-v.ctx.Done():
	}
}

// request sends m to the guest agent and returns the channel its replies
// come on (closed when the connection ends) and a func that gives the
// request up.
func (v *vm) request(m proto.Message) (<-chan proto.Message, func(), error) {
	v.mu.Lock()
	conn := v.agentConn
	if conn == nil {
		v.mu.Unlock()
		return nil, nil, hypervisor.ErrGuestNotReady
	}
	if v.pending == nil {
		v.pending = map[string]*waiter{}
	}
	w := &waiter{ch: make(chan proto.Message, 64), gone: make(chan struct{})}
	v.pending[m.ID] = w
	v.mu.Unlock()
	var once sync.Once
	drop := func() {
		once.Do(func() {
			v.mu.Lock()
			if v.pending[m.ID] == w {
				delete(v.pending, m.ID)
			}
			v.mu.Unlock()
			close(w.gone)
		})
	}
	if err := v.writeAgent(conn, m); err != nil {
		drop()
		return nil, nil, fmt.Errorf("send to the guest agent: %w", err)
	}
	return w.ch, drop, nil
}
