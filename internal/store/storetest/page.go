package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"vgrid/internal/store"
)

// fill creates the keys, each with the value "v-"+key, in Txns of at most
// 100 ops (etcd allows 128 by default), in the order given, and returns
// their revisions.
func fill(t *testing.T, s store.Store, keys []string) map[string]int64 {
	t.Helper()
	revs := map[string]int64{}
	for chunk := range slices.Chunk(keys, 100) {
		ops := make([]store.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = putOp(k, "v-"+k, store.OpMustNotExist)
		}
		rev := txn(t, s, ops...)
		for _, k := range chunk {
			revs[k] = rev
		}
	}
	return revs
}

func listPage(t *testing.T, s store.Store, prefix, after string, limit int) ([]store.KV, bool) {
	t.Helper()
	kvs, more, err := s.ListPage(context.Background(), prefix, after, limit)
	if err != nil {
		t.Fatalf("ListPage(%q, after %q, limit %d): got error %v, want none", prefix, after, limit, err)
	}
	return kvs, more
}

func keysOf(kvs []store.KV) []string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.Key
	}
	return keys
}

func testListPageWalk(t *testing.T, open Open) {
	s := fresh(t, open)
	var keys []string
	const n = 250
	for i := range n {
		keys = append(keys, fmt.Sprintf("ws/a/%03d", (i*97)%n)) // not in key order
	}
	// Neighbours of "ws/a/" on both sides: "." sorts just before "/" and
	// "0" just after it.
	keys = append(keys, "ws/a", "ws/a.x", "ws/a0", "ws/", "ws/b/1", "a", "z")
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("ws/ab/%03d", 19-i))
	}
	revs := fill(t, s, keys)
	slices.Sort(keys)

	tests := []struct {
		prefix string
		limit  int
		pages  []int // the sizes of the pages of the walk
	}{
		{"ws/a/", 100, []int{100, 100, 50}},
		{"ws/a/", 50, []int{50, 50, 50, 50, 50}}, // the last page is full and has no more
		{"ws/a/", 1, slices.Repeat([]int{1}, n)},
		{"ws/a/", 249, []int{249, 1}},
		{"ws/a/", 250, []int{250}},
		{"ws/a/", 251, []int{250}},
		{"ws/a/", 0, []int{250}}, // no limit
		{"ws/a/", -1, []int{250}},
		{"ws/ab/", 7, []int{7, 7, 6}},
		{"ws/a", 100, []int{100, 100, 73}}, // a plain string prefix, as in List: ws/a, ws/a.x, ws/a/..., ws/a0, ws/ab/...
		{"ws/", 1000, []int{275}},
		{"", 100, []int{100, 100, 77}},
		{"nope/", 10, []int{0}},
		{"ws/a/1", 10, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}},
	}
	for _, tt := range tests {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, tt.prefix) {
				want = append(want, k)
			}
		}
		var got []string
		var pages []int
		after := ""
		for {
			kvs, more := listPage(t, s, tt.prefix, after, tt.limit)
			pages = append(pages, len(kvs))
			if tt.limit > 0 && len(kvs) > tt.limit {
				t.Fatalf("ListPage(%q, after %q, limit %d): got %d keys, want at most %d", tt.prefix, after, tt.limit, len(kvs), tt.limit)
			}
			for _, kv := range kvs {
				if string(kv.Value) != "v-"+kv.Key || kv.Revision != revs[kv.Key] {
					t.Fatalf("ListPage(%q): got %q=%q@%d, want value %q at %d", tt.prefix, kv.Key, kv.Value, kv.Revision, "v-"+kv.Key, revs[kv.Key])
				}
			}
			got = append(got, keysOf(kvs)...)
			if !more {
				break
			}
			if len(kvs) == 0 {
				t.Fatalf("ListPage(%q, after %q, limit %d): got an empty page with more, want keys", tt.prefix, after, tt.limit)
			}
			if len(pages) > len(keys)+1 {
				t.Fatalf("ListPage(%q, limit %d): got %d pages, want the walk to end", tt.prefix, tt.limit, len(pages))
			}
			after = kvs[len(kvs)-1].Key
		}
		if !slices.Equal(got, want) {
			t.Fatalf("walk of %q in pages of %d: got %d keys %v, want each of the %d keys %v once, in order", tt.prefix, tt.limit, len(got), got, len(want), want)
		}
		if !slices.Equal(pages, tt.pages) {
			t.Fatalf("walk of %q in pages of %d: got pages of %v, want %v", tt.prefix, tt.limit, pages, tt.pages)
		}
	}
}

func testListPageAfter(t *testing.T, open Open) {
	s := fresh(t, open)
	fill(t, s, []string{"p/", "p/1", "p/2", "p/3", "p/5", "o/9", "q/0", "p", "p0"})
	tests := []struct {
		prefix, after string
		limit         int
		want          []string
		more          bool
	}{
		{"p/", "", 2, []string{"p/", "p/1"}, true},      // "" is the start: the key equal to the prefix comes first
		{"p/", "p/", 2, []string{"p/1", "p/2"}, true},   // after a key: that key is not returned
		{"p/", "p/2", 2, []string{"p/3", "p/5"}, false}, // the last page is full and nothing follows
		{"p/", "p/2", 1, []string{"p/3"}, true},
		{"p/", "p/4", 5, []string{"p/5"}, false},      // after need not exist
		{"p/", "p/5", 5, nil, false},                  // after the last key
		{"p/", "p/9", 5, nil, false},                  // after every key of the prefix
		{"p/", "o/9", 2, []string{"p/", "p/1"}, true}, // before the prefix: from the start
		{"p/", "a", 0, []string{"p/", "p/1", "p/2", "p/3", "p/5"}, false},
		{"p/", "p", 1, []string{"p/"}, true}, // a key that is a prefix of the prefix
		{"p/", "q/0", 5, nil, false},         // beyond the prefix
		{"p/", "p/1", 0, []string{"p/2", "p/3", "p/5"}, false},
		{"p/", "p/1", -5, []string{"p/2", "p/3", "p/5"}, false},
		{"p/", "p/1\x00", 1, []string{"p/2"}, true}, // just after p/1
		{"", "p/5", 1, []string{"p0"}, true},
		{"", "p0", 1, []string{"q/0"}, false},
		{"x/", "", 10, nil, false},
	}
	for _, tt := range tests {
		kvs, more := listPage(t, s, tt.prefix, tt.after, tt.limit)
		if got := keysOf(kvs); !slices.Equal(got, tt.want) || more != tt.more {
			t.Fatalf("ListPage(%q, after %q, limit %d): got %v more=%v, want %v more=%v", tt.prefix, tt.after, tt.limit, got, more, tt.want, tt.more)
		}
	}
}

// testListPageChanges checks that a walk goes on from the last key of a
// page when that key and others change between pages.
func testListPageChanges(t *testing.T, open Open) {
	s := fresh(t, open)
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("c/%02d", i))
	}
	revs := fill(t, s, keys)
	kvs, more := listPage(t, s, "c/", "", 10)
	if got := keysOf(kvs); !more || !slices.Equal(got, keys[:10]) {
		t.Fatalf("first page: got %v more=%v, want %v more=true", got, more, keys[:10])
	}
	del(t, s, "c/09", revs["c/09"]) // the last key of the page
	del(t, s, "c/12", 0)            // a key of the next page
	create(t, s, "c/05x", "v")      // a key in the page already read
	create(t, s, "c/09x", "v")      // a key after the page
	kvs, more = listPage(t, s, "c/", "c/09", 10)
	want := []string{"c/09x", "c/10", "c/11", "c/13", "c/14", "c/15", "c/16", "c/17", "c/18", "c/19"}
	if got := keysOf(kvs); !more || !slices.Equal(got, want) {
		t.Fatalf("second page after changes: got %v more=%v, want %v more=true", got, more, want)
	}
	// Values are copies.
	copy(kvs[1].Value, "XXXXX")
	wantKV(t, s, "c/10", "v-c/10", revs["c/10"])
}
