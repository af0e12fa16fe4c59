package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// waiter shows progress while the CLI waits: a spinner with the current
// status on a terminal, one line per change otherwise (logs, CI).
type waiter struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu   sync.Mutex // guards the fields below
	msg  string
	last string
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newWaiter(w io.Writer, msg string) *waiter {
	x := &waiter{w: w, msg: msg, start: time.Now(), stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		x.tty = true
		x.wg.Add(1)
		go x.spin()
	} else {
		fmt.Fprintf(w, "%s\n", msg)
		x.last = msg
	}
	return x
}

func (x *waiter) spin() {
	defer x.wg.Done()
	frames := `⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏`
	runes := []rune(frames)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		x.mu.Lock()
		fmt.Fprintf(x.w, "\r\033[K%c %s (%.1fs)", runes[i%len(runes)], x.msg, time.Since(x.start).Seconds())
		x.mu.Unlock()
		select {
		case <-x.stop:
			fmt.Fprint(x.w, "\r\033[K")
			return
		case <-t.C:
		}
	}
}

// status sets the message.
func (x *waiter) status(msg string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.msg = msg
	if !x.tty && msg != x.last {
		fmt.Fprintf(x.w, "  %s (%.1fs)\n", msg, time.Since(x.start).Seconds())
		x.last = msg
	}
}

// done stops the spinner; safe to call twice.
func (x *waiter) done() {
	x.once.Do(func() {
		close(x.stop)
		x.wg.Wait()
	})
}
