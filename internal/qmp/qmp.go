package qmp

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

// ErrClosed is returned for commands on a closed connection.
var ErrClosed = errors.New("qmp connection closed")

// Error is an error reply.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// message is any message from QEMU.
type message struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	ID     string          `json:"id,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *Error          `json:"error,omitempty"`
	Event  string          `json:"event,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Client is a connection to a QMP socket (QEMU or qemu-storage-daemon).
type Client struct {
	conn    net.Conn
	onEvent func(name string, data json.RawMessage)
	done    chan struct{} // closed when the reader stops

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex // guards the fields below
	next    int
	pending map[string]chan message
	err     error
}

// Dial connects to a QMP socket and negotiates capabilities; onEvent, if
// set, is given every event (in the reader's goroutine: it must not block).
func Dial(ctx context.Context, path string, onEvent func(string, json.RawMessage)) (*Client, error) {
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
	var greeting message
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
		var m message
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
	c := &Client{
		conn:    conn,
		onEvent: onEvent,
		done:    make(chan struct{}),
		pending: map[string]chan message{},
	}
	go c.read(dec)
	return c, nil
}

func (c *Client) read(dec *json.Decoder) {
	defer close(c.done)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			c.mu.Lock()
			c.err = ErrClosed
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
func (c *Client) Execute(ctx context.Context, cmd string, args, out any) error {
	return c.execute(ctx, cmd, args, out, -1)
}

// ExecuteFD is Execute with the file descriptor fd passed along with the
// command (SCM_RIGHTS), as getfd wants it.
func (c *Client) ExecuteFD(ctx context.Context, cmd string, args, out any, fd int) error {
	return c.execute(ctx, cmd, args, out, fd)
}

func (c *Client) execute(ctx context.Context, cmd string, args, out any, fd int) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", cmd, c.err)
	}
	c.next++
	id := strconv.Itoa(c.next)
	ch := make(chan message, 1)
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
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
			// The other end is gone (QEMU exited): closed, as for a reply
			// that never comes, so that callers who retry on a new
			// connection do.
			return fmt.Errorf("qmp %s: %w (%v)", cmd, ErrClosed, err)
		}
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp %s: %w", cmd, ErrClosed)
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
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the connection and waits for the reader.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
