package fault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"vgrid/api"
	"vgrid/internal/control"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// storeState is what a dead server left in its store: the lease calendar's
// records, the projects' fair-share usage, the calendar's clock, the nodes
// and the workspaces.
type storeState struct {
	clock    time.Time
	leases   map[string]model.LeaseRecord // by lease ID (the key less "leases/")
	leaseRaw map[string][]byte
	usage    map[string]model.ProjectUsage // by project
	usageRaw map[string][]byte
	nodes    map[string]model.Node
	ws       map[string]model.Workspace // by project/name
}

// readStore reads the bbolt file of a server that is not running, read
// only. The layout is internal/store/bolt's: bucket "data", each value
// prefixed with the 8-byte revision of its last change.
func readStore(path string) (*storeState, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	defer db.Close()
	st := newStoreState()
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("data"))
		if b == nil {
			return fmt.Errorf("no bucket %q", "data")
		}
		return b.ForEach(func(k, v []byte) error {
			key := string(k)
			if len(v) < 8 {
				return fmt.Errorf("key %s: value of %d bytes has no revision prefix", key, len(v))
			}
			return st.add(key, bytes.Clone(v[8:]))
		})
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// readKVs makes the state of a store's keys, listed at one revision (the
// etcd backend's).
func readKVs(kvs []store.KV) (*storeState, error) {
	st := newStoreState()
	for _, kv := range kvs {
		if err := st.add(kv.Key, kv.Value); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func newStoreState() *storeState {
	return &storeState{leases: map[string]model.LeaseRecord{}, leaseRaw: map[string][]byte{},
		usage: map[string]model.ProjectUsage{}, usageRaw: map[string][]byte{},
		nodes: map[string]model.Node{}, ws: map[string]model.Workspace{}}
}

// add decodes one stored key into the state.
func (st *storeState) add(key string, val []byte) error {
	dec := func(out any) error {
		if err := json.Unmarshal(val, out); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		return nil
	}
	switch {
	case strings.HasPrefix(key, "leases/"):
		var r model.LeaseRecord
		if err := dec(&r); err != nil {
			return err
		}
		id := strings.TrimPrefix(key, "leases/")
		if r.ID != id {
			return fmt.Errorf("key %s holds the record of lease %q", key, r.ID)
		}
		st.leases[id], st.leaseRaw[id] = r, val
	case strings.HasPrefix(key, "usage/"):
		var u model.ProjectUsage
		if err := dec(&u); err != nil {
			return err
		}
		st.usage[strings.TrimPrefix(key, "usage/")], st.usageRaw[strings.TrimPrefix(key, "usage/")] = u, val
	case key == "calendar/state":
		var cs struct {
			Now time.Time `json:"now"`
		}
		if err := dec(&cs); err != nil {
			return err
		}
		st.clock = cs.Now
	case strings.HasPrefix(key, "nodes/"):
		var n model.Node
		if err := dec(&n); err != nil {
			return err
		}
		st.nodes[n.Name] = n
	case strings.HasPrefix(key, "ws/"):
		var w model.Workspace
		if err := dec(&w); err != nil {
			return err
		}
		st.ws[strings.TrimPrefix(key, "ws/")] = w
	}
	return nil
}

// wsOfLease is the workspace (project/name) a lease ID belongs to: the ID
// is project/name, then #gen for later runs.
func wsOfLease(id string) string {
	ws, _, _ := strings.Cut(id, "#")
	return ws
}

// recordView is a stored lease as GET /leases shows it at now: its current
// (or last) run and what is left of it. It mirrors the server's view of a
// record (internal/server: recordInfo) so that an answer after a restart
// can be compared with the record the dead server left.
func recordView(r model.LeaseRecord, now time.Time) api.Lease {
	out := api.Lease{ID: r.ID, Project: r.Project, Kind: string(r.Kind), State: string(r.State),
		Hosts: []string{}, Remaining: r.Remaining, Suspensions: r.Suspensions, Requeues: r.Requeues, Reason: control.MaskReason(r.Reason, r.Project)}
	switch {
	case r.Hold != nil:
		out.Start, out.End, out.Hosts = r.Hold.Start, r.Hold.RunEnd, r.Hold.Hosts
		if r.Hold.Started && now.After(r.Hold.Start) {
			upto := now
			if upto.After(r.Hold.RunEnd) {
				upto = r.Hold.RunEnd
			}
			out.Remaining = model.Duration(max(r.Remaining.D()-upto.Sub(r.Hold.Start), 0))
		}
	case r.State.Over():
		out.Remaining = 0
		if n := len(r.Segments); n > 0 {
			out.Start, out.End = r.Segments[n-1].RunFrom, r.Segments[n-1].RunTo
			out.Hosts = []string{r.Segments[n-1].Host}
		}
	}
	return out
}

// viewDiff lists how got (an API view) differs from want in every field
// but the remaining time; remaining must lie in [remLo, remHi].
func viewDiff(got, want api.Lease, remLo, remHi time.Duration) []string {
	var d []string
	f := func(name string, g, w any) { d = append(d, fmt.Sprintf("%s %v, want %v", name, g, w)) }
	if got.Kind != want.Kind {
		f("kind", got.Kind, want.Kind)
	}
	if got.State != want.State {
		f("state", got.State, want.State)
	}
	if !got.Start.Equal(want.Start) {
		f("start", fmtT(got.Start), fmtT(want.Start))
	}
	if !got.End.Equal(want.End) {
		f("end", fmtT(got.End), fmtT(want.End))
	}
	if !slices.Equal(got.Hosts, want.Hosts) {
		f("hosts", got.Hosts, want.Hosts)
	}
	if got.Suspensions != want.Suspensions {
		f("suspensions", got.Suspensions, want.Suspensions)
	}
	if got.Requeues != want.Requeues {
		f("requeues", got.Requeues, want.Requeues)
	}
	if got.Reason != want.Reason {
		f("reason", fmt.Sprintf("%q", got.Reason), fmt.Sprintf("%q", want.Reason))
	}
	if r := got.Remaining.D(); r < remLo || r > remHi {
		if remLo == remHi {
			f("remaining", r, remLo)
		} else {
			f("remaining", r, fmt.Sprintf("%v..%v", remLo, remHi))
		}
	}
	return d
}

// remainingRange is the remaining time a view of r answered at some
// instant in [from, to] may show.
func remainingRange(r model.LeaseRecord, from, to time.Time) (lo, hi time.Duration) {
	return recordView(r, to).Remaining.D(), recordView(r, from).Remaining.D()
}

// eventTimes are the times at which a lease's current hold makes the
// calendar act (stage or start, suspend, end or release).
func eventTimes(r model.LeaseRecord) []time.Time {
	if r.Hold == nil || r.State.Over() {
		return nil
	}
	h := r.Hold
	return []time.Time{h.From, h.Start, h.RunEnd, h.To}
}

// eventIn reports whether one of r's events falls in (lo, hi].
func eventIn(r model.LeaseRecord, lo, hi time.Time) bool {
	for _, t := range eventTimes(r) {
		if t.After(lo) && !t.After(hi) {
			return true
		}
	}
	return false
}

// waiting reports whether a lease waits for capacity (queued, or suspended
// and not yet given slots to resume in): any release may start it.
func waiting(r model.LeaseRecord) bool {
	return r.Hold == nil && !r.State.Over()
}

func fmtT(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05.000000000")
}

// recordDiff names the top-level fields in which two raw lease records
// differ.
func recordDiff(a, b []byte) string {
	var ma, mb map[string]json.RawMessage
	_ = json.Unmarshal(a, &ma)
	_ = json.Unmarshal(b, &mb)
	var d []string
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !bytes.Equal(ma[k], mb[k]) {
			d = append(d, fmt.Sprintf("%s: %s -> %s", k, orNone(ma[k]), orNone(mb[k])))
		}
	}
	return strings.Join(d, "; ")
}

func orNone(b []byte) string {
	if b == nil {
		return "(absent)"
	}
	return string(b)
}
