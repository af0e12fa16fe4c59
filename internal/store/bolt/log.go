package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"vgrid/internal/store"
)

// The watch log: each committed transaction's events, in one entry per
// revision, trimmed to the last history revisions.

// trimLog deletes log entries at or below rev-history.
func trimLog(lb *bbolt.Bucket, rev int64, history int) error {
	cutoff := rev - int64(history)
	for {
		k, _ := lb.Cursor().First()
		if k == nil || int64(binary.BigEndian.Uint64(k)) > cutoff {
			return nil
		}
		if err := lb.Delete(k); err != nil {
			return err
		}
	}
}

// The log holds one entry per revision. The entry of a single change is:
// type (1 byte), key length (uvarint), key, value. A Txn that changes
// several keys at one revision is logged as a batch: logBatch (1 byte),
// count (uvarint), then per change: type (1 byte), key length (uvarint),
// key, value length (uvarint), value.
const logBatch = 3

func encodeLog(evs []store.Event) []byte {
	if len(evs) == 1 {
		return encodeEvent(evs[0])
	}
	size := 1 + binary.MaxVarintLen64
	for _, ev := range evs {
		size += 1 + 2*binary.MaxVarintLen64 + len(ev.KV.Key) + len(ev.KV.Value)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, logBatch)
	buf = binary.AppendUvarint(buf, uint64(len(evs)))
	for _, ev := range evs {
		buf = append(buf, byte(ev.Type))
		buf = binary.AppendUvarint(buf, uint64(len(ev.KV.Key)))
		buf = append(buf, ev.KV.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(ev.KV.Value)))
		buf = append(buf, ev.KV.Value...)
	}
	return buf
}

func encodeEvent(ev store.Event) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+len(ev.KV.Key)+len(ev.KV.Value))
	buf = append(buf, byte(ev.Type))
	buf = binary.AppendUvarint(buf, uint64(len(ev.KV.Key)))
	buf = append(buf, ev.KV.Key...)
	return append(buf, ev.KV.Value...)
}

// decodeLog returns the events of the log entry of revision rev.
func decodeLog(rev int64, b []byte) ([]store.Event, error) {
	if len(b) == 0 || b[0] != logBatch {
		ev, err := decodeEvent(rev, b)
		if err != nil {
			return nil, err
		}
		return []store.Event{ev}, nil
	}
	evs, ok := decodeBatch(rev, b[1:])
	if !ok {
		return nil, fmt.Errorf("corrupt log entry at revision %d", rev)
	}
	return evs, nil
}

// decodeBatch decodes a batch entry after its first byte.
func decodeBatch(rev int64, b []byte) ([]store.Event, bool) {
	field := func() ([]byte, bool) { // a length-prefixed field at the start of b
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, false
		}
		f := b[w : w+int(n)]
		b = b[w+int(n):]
		return f, true
	}
	count, w := binary.Uvarint(b)
	if w <= 0 || count > uint64(len(b)) {
		return nil, false
	}
	b = b[w:]
	evs := make([]store.Event, 0, count)
	for range count {
		if len(b) == 0 {
			return nil, false
		}
		typ := store.EventType(b[0])
		b = b[1:]
		key, ok := field()
		if !ok {
			return nil, false
		}
		val, ok := field()
		if !ok {
			return nil, false
		}
		ev := store.Event{Type: typ, KV: store.KV{Key: string(key), Revision: rev}}
		switch typ {
		case store.EventPut:
			ev.KV.Value = append([]byte{}, val...)
		case store.EventDelete:
		default:
			return nil, false
		}
		evs = append(evs, ev)
	}
	return evs, len(b) == 0
}

func decodeEvent(rev int64, b []byte) (store.Event, error) {
	if len(b) < 2 {
		return store.Event{}, fmt.Errorf("corrupt log entry at revision %d", rev)
	}
	typ := store.EventType(b[0])
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)-1-w) < n || (typ != store.EventPut && typ != store.EventDelete) {
		return store.Event{}, fmt.Errorf("corrupt log entry at revision %d", rev)
	}
	key := string(b[1+w : 1+w+int(n)])
	ev := store.Event{Type: typ, KV: store.KV{Key: key, Revision: rev}}
	if typ == store.EventPut {
		ev.KV.Value = bytes.Clone(b[1+w+int(n):])
		if ev.KV.Value == nil {
			ev.KV.Value = []byte{}
		}
	}
	return ev, nil
}
