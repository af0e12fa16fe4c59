package hypervisor

import "sync"

// Notifier implements Driver.Changes for drivers: Notify never blocks, an
// ID that is already waiting to be delivered is not queued twice, and IDs
// come out in the order they were first notified.
type Notifier struct {
	out  chan string
	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex // guards the fields below
	pending []string
	queued  map[string]bool
	closed  bool
}

// NewNotifier starts a notifier; Close stops it and closes C.
func NewNotifier() *Notifier {
	n := &Notifier{
		out:    make(chan string),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		queued: map[string]bool{},
	}
	go n.run()
	return n
}

// C delivers the IDs.
func (n *Notifier) C() <-chan string { return n.out }

// Notify queues id for delivery.
func (n *Notifier) Notify(id string) {
	n.mu.Lock()
	if n.closed || n.queued[id] {
		n.mu.Unlock()
		return
	}
	n.queued[id] = true
	n.pending = append(n.pending, id)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Close stops delivery and closes C. Undelivered IDs are dropped.
func (n *Notifier) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		<-n.done
		return
	}
	n.closed = true
	n.mu.Unlock()
	close(n.quit)
	<-n.done
}

func (n *Notifier) run() {
	defer close(n.done)
	defer close(n.out)
	for {
		n.mu.Lock()
		var id string
		if len(n.pending) > 0 {
			id = n.pending[0]
			n.pending = n.pending[1:]
			delete(n.queued, id)
		}
		n.mu.Unlock()
		if id == "" {
			select {
			case <-n.wake:
				continue
			case <-n.quit:
				return
			}
		}
		select {
		case n.out <- id:
		case <-n.quit:
			return
		}
	}
}
