package storage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// A QMP client for qemu-storage-daemon: greeting and capabilities
// negotiation, then commands tagged with ids whose replies a reader
// goroutine hands back. Events are ignored (jobs and export removals are
// polled). A command whose context ends stops waiting; its late reply is
// dropped by id, so the connection stays usable.

var errQMPClosed = errors.New("qmp: connection closed")

// QMPError is an error reply of the daemon.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return e.Class + ": " + e.Desc }

type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	Event  string          `json:"event"`
}

type qmpClient struct {
	conn net.Conn
	done chan struct{}

	wmu sync.Mutex

	mu      sync.Mutex
	seq     int
	waiting map[string]chan qmpReply
	closed  bool
}

// maxQMPLine bounds one QMP message (the daemon's replies are small).
const maxQMPLine = 16 << 20

func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	_ = conn.SetDeadline(deadline)
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), maxQMPLine)
	readMsg := func() (qmpReply, error) {
		for sc.Scan() {
			var m qmpReply
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				return m, fmt.Errorf("qmp: bad message: %w", err)
			}
			if m.Event != "" {
				continue
			}
			return m, nil
		}
		if sc.Err() != nil {
			return qmpReply{}, sc.Err()
		}
		return qmpReply{}, errQMPClosed
	}
	fail := func(err error) (*qmpClient, error) {
		conn.Close()
		return nil, err
	}
	greet, err := readMsg()
	if err != nil {
		return fail(fmt.Errorf("qmp greeting: %w", err))
	}
	if greet.QMP == nil {
		return fail(errors.New("qmp greeting: the socket does not speak QMP"))
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		return fail(fmt.Errorf("qmp capabilities: %w", err))
	}
	rep, err := readMsg()
	if err != nil {
		return fail(fmt.Errorf("qmp capabilities: %w", err))
	}
	if rep.Error != nil {
		return fail(fmt.Errorf("qmp capabilities: %w", rep.Error))
	}
	_ = conn.SetDeadline(time.Time{})
	c := &qmpClient{conn: conn, done: make(chan struct{}), waiting: map[string]chan qmpReply{}}
	go c.readLoop(sc)
	return c, nil
}

func (c *qmpClient) readLoop(sc *bufio.Scanner) {
	defer close(c.done)
	for sc.Scan() {
		var m qmpReply
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.Event != "" {
			continue
		}
		var id string
		if err := json.Unmarshal(m.ID, &id); err != nil {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[id]
		delete(c.waiting, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered
		}
	}
	c.mu.Lock()
	c.closed = true
	for id, ch := range c.waiting {
		close(ch)
		delete(c.waiting, id)
	}
	c.mu.Unlock()
}

// execute runs cmd with args (nil: none) and decodes the reply's return
// value into out (nil: ignored).
func (c *qmpClient) execute(ctx context.Context, cmd string, args, out any) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, errQMPClosed)
	}
	c.seq++
	id := strconv.Itoa(c.seq)
	ch := make(chan qmpReply, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	drop := func() {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
	}
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		drop()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.wmu.Lock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.conn.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		drop()
		return fmt.Errorf("qmp %s: %w (%v)", cmd, errQMPClosed, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp %s: %w", cmd, errQMPClosed)
		}
		if m.Error != nil {
			return fmt.Errorf("qmp %s: %w", cmd, m.Error)
		}
		if out != nil && m.Return != nil {
			if err := json.Unmarshal(m.Return, out); err != nil {
				return fmt.Errorf("qmp %s: reply: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		drop()
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

// close ends the connection and waits for the reader.
func (c *qmpClient) close() {
	c.conn.Close()
	<-c.done
}
