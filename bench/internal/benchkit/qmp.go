package benchkit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// QMP is a minimal QMP client for the harnesses' bare guests: one command
// at a time, the statuses of the MIGRATION event queued for WaitMigration
// (the oldest kept when the queue is full).
type QMP struct {
	conn    *net.UnixConn
	replies chan map[string]json.RawMessage
	events  chan string
	once    sync.Once
}

// qmpEvents is how many MIGRATION statuses the queue holds.
const qmpEvents = 64

// DialQMP connects to the QMP socket at path and leaves the capabilities
// negotiation mode.
func DialQMP(path string) (*QMP, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	c := &QMP{conn: conn, replies: make(chan map[string]json.RawMessage, 1), events: make(chan string, qmpEvents)}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, fmt.Errorf("qmp %s: greeting: %w", path, err)
	}
	go c.read(r)
	if err := c.Run("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *QMP) read(r *bufio.Reader) {
	defer close(c.replies)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if ev, ok := m["event"]; ok {
			if string(ev) == `"MIGRATION"` {
				var d struct {
					Status string `json:"status"`
				}
				_ = json.Unmarshal(m["data"], &d)
				select {
				case c.events <- d.Status:
				default:
				}
			}
			continue
		}
		c.replies <- m
	}
}

// Run runs cmd with args (nil: none). A "quit" whose reply is lost as
// QEMU exits succeeds.
func (c *QMP) Run(cmd string, args any) error { return c.do(cmd, args, -1, nil) }

// RunFD runs cmd with args and passes the file descriptor fd along with
// it (for getfd).
func (c *QMP) RunFD(cmd string, args any, fd int) error { return c.do(cmd, args, fd, nil) }

// Query runs cmd without arguments and decodes its return into out.
func (c *QMP) Query(cmd string, out any) error { return c.do(cmd, nil, -1, out) }

// Status returns the guest's run state (query-status): "running",
// "paused", "inmigrate", ...
func (c *QMP) Status() (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	err := c.Query("query-status", &st)
	return st.Status, err
}

// EnableMigrationEvents turns the MIGRATION event on.
func (c *QMP) EnableMigrationEvents() error {
	return c.Run("migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}}})
}

func (c *QMP) do(cmd string, args any, fd int, out any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: arguments: %w", cmd, err)
	}
	b = append(b, '\n')
	if fd >= 0 {
		_, _, err = c.conn.WriteMsgUnix(b, unix.UnixRights(fd), nil)
	} else {
		_, err = c.conn.Write(b)
	}
	if err != nil {
		return err
	}
	m, ok := <-c.replies
	if !ok {
		if cmd == "quit" {
			return nil
		}
		return fmt.Errorf("%s: qmp connection closed: %w", cmd, io.ErrUnexpectedEOF)
	}
	if e, ok := m["error"]; ok {
		return fmt.Errorf("%s: %s", cmd, e)
	}
	if out != nil {
		return json.Unmarshal(m["return"], out)
	}
	return nil
}

// DrainEvents drops the queued MIGRATION statuses (those of an earlier
// migration).
func (c *QMP) DrainEvents() {
	for {
		select {
		case <-c.events:
		default:
			return
		}
	}
}

// WaitMigration waits for the MIGRATION status "completed"; "failed" or
// "cancelled", timeout or the end of ctx is an error.
func (c *QMP) WaitMigration(ctx context.Context, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case s := <-c.events:
			switch s {
			case "completed":
				return nil
			case "failed", "cancelled":
				return errors.New("migration " + s)
			}
		case <-timer.C:
			return errors.New("migration did not complete")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close closes the connection; later calls do nothing.
func (c *QMP) Close() { c.once.Do(func() { c.conn.Close() }) }
