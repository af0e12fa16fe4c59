package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// A small QMP client: the handshake, commands matched to replies by id,
// and events handed to a callback. Every blocking step has a deadline or
// follows a context, so a wedged QEMU cannot hang the driver. (QEMU serves
// one QMP client at a time on a socket; a second one waits unanswered.)

// errQMPClosed is returned for commands on a closed connection.
var errQMPClosed = errors.New("qmp connection closed")

// qmpError is an error reply.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

// qmpMessage is any message from QEMU.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	ID     string          `json:"id,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *qmpError       `json:"error,omitempty"`
	Event  string          `json:"event,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

type qmpClient struct {
	conn    net.Conn
	onEvent func(name string, data json.RawMessage)
	done    chan struct{} // closed when the reader stops

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex // guards the fields below
	next    int
	pending map[string]chan qmpMessage
	err     error
}

// dialQMP connects to a QMP socket and negotiates capabilities.
func dialQMP(ctx context.Context, path string, onEvent func(string, json.RawMessage)) (*qmpClient, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	_ = conn.SetDeadline(deadline)
	dec := json.NewDecoder(conn)
	var greeting qmpMessage
	if err := dec.Decode(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, errors.New("qmp greeting: not a QMP server")
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities","id":"cap"}` + "\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp capabilities: %w", err)
	}
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp capabilities: %w", err)
		}
		if m.Error != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp capabilities: %w", m.Error)
		}
		if m.Return != nil {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	c := &qmpClient{
		conn:    conn,
		onEvent: onEvent,
		done:    make(chan struct{}),
		pending: map[string]chan qmpMessage{},
	}
	go c.read(dec)
	return c, nil
}

func (c *qmpClient) read(dec *json.Decoder) {
	defer close(c.done)
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			c.mu.Lock()
			c.err = errQMPClosed
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		if m.Event != "" {
			if c.onEvent != nil {
				c.onEvent(m.Event, m.Data)
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered
		}
	}
}

// Execute runs a command and decodes its "return" into out (if not nil).
func (c *qmpClient) Execute(ctx context.Context, cmd string, args, out any) error {
	return c.execute(ctx, cmd, args, out, -1)
}

// ExecuteFD is Execute with the file descriptor fd passed along with the
// command (SCM_RIGHTS), as getfd wants it.
func (c *qmpClient) ExecuteFD(ctx context.Context, cmd string, args, out any, fd int) error {
	return c.execute(ctx, cmd, args, out, fd)
}

func (c *qmpClient) execute(ctx context.Context, cmd string, args, out any, fd int) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, c.err)
	}
	c.next++
	id := strconv.Itoa(c.next)
	ch := make(chan qmpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	c.wmu.Lock()
	if d, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(d)
	} else {
		_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	}
	if fd < 0 {
		_, err = c.conn.Write(append(b, '\n'))
	} else if uc, ok := c.conn.(*net.UnixConn); ok {
		_, _, err = uc.WriteMsgUnix(append(b, '\n'), syscall.UnixRights(fd), nil)
	} else {
		err = errors.New("file descriptors pass only over a unix socket")
	}
	c.wmu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
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
				return fmt.Errorf("qmp %s: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

// Done is closed when the connection ends (QEMU exited or Close).
func (c *qmpClient) Done() <-chan struct{} { return c.done }

// Close ends the connection and waits for the reader.
func (c *qmpClient) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
