package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"vgrid/internal/store"
)

// buildStore makes a store with data at path: small values and values that
// overflow pages, updates, deletes (so that pages are freed) and Txns, so
// that the file has branch, leaf, overflow and freelist pages. It returns
// every key as stored.
func buildStore(t testing.TB, path string) []store.KV {
	t.Helper()
	s, err := Open(path, WithHistory(50))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 400 {
		n := 40 + i%200
		if i%40 == 7 {
			n = 6000 // spans pages
		}
		if _, err := s.Create(ctx, fmt.Sprintf("ws/%04d", i), bytes.Repeat([]byte{byte('a' + i%26)}, n)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 400; i += 3 {
		if err := s.Delete(ctx, fmt.Sprintf("ws/%04d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if _, err := s.Txn(ctx, []store.Op{
			{Key: fmt.Sprintf("lease/%02d", i), Value: []byte("lease")},
			{Key: fmt.Sprintf("ws/%04d", 3*i+1), Value: []byte("updated")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	kvs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	return kvs
}

// layout is where the pages of a sound store file are.
type layout struct {
	ps                              int64
	pages                           int64 // high-water mark
	leaf, branch, freelist, overflw int64 // a page of each kind in use
}

func pageLayout(t *testing.T, path string) layout {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := layout{ps: int64(db.Info().PageSize)}
	err = db.View(func(tx *bbolt.Tx) error {
		l.pages = tx.Size() / l.ps
		for id := 2; int64(id) < l.pages; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return fmt.Errorf("page %d: %v", id, err)
			}
			switch {
			case p.Type == "leaf" && p.OverflowCount > 0 && l.overflw == 0:
				l.overflw = int64(id)
			case p.Type == "leaf" && l.leaf == 0:
				l.leaf = int64(id)
			case p.Type == "branch" && l.branch == 0:
				l.branch = int64(id)
			case p.Type == "freelist":
				l.freelist = int64(id)
			}
			id += p.OverflowCount
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.leaf == 0 || l.branch == 0 || l.freelist == 0 || l.overflw == 0 {
		t.Fatalf("test store lacks a page kind: %+v", l)
	}
	return l
}

// writeAt overwrites the file at off.
func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// rawUpdate changes the file through bbolt itself: damage a page check
// cannot see, only the store's decoding.
func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// The kinds of damage a store file can suffer. For each, Open must not
// panic: it refuses with a *DamagedError naming the file and the way out
// (and leaves the file as it is), and Check lists the damage. Damage that
// bbolt is designed to survive (one meta page lost, as an interrupted
// write leaves it) opens, and Check warns of it.
func TestDamagedStore(t *testing.T) {
	zeros := func(n int64) []byte { return make([]byte, n) }
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, l layout)
		warn   bool // the store still opens; Check warns
	}{
		{"empty file (0 bytes)", func(t *testing.T, p string, l layout) { truncate(t, p, 0) }, false},
		{"truncated to half a page", func(t *testing.T, p string, l layout) { truncate(t, p, l.ps/2) }, false},
		{"truncated to the meta pages", func(t *testing.T, p string, l layout) { truncate(t, p, 2*l.ps) }, false},
		{"truncated in the middle", func(t *testing.T, p string, l layout) { truncate(t, p, l.pages/2*l.ps+100) }, false},
		{"truncated by the last page", func(t *testing.T, p string, l layout) { truncate(t, p, (l.pages-1)*l.ps) }, false},
		{"both meta pages zeroed", func(t *testing.T, p string, l layout) { writeAt(t, p, 0, zeros(2*l.ps)) }, false},
		{"wrong magic", func(t *testing.T, p string, l layout) {
			writeAt(t, p, 16, u32(0xdeadbeef))
			writeAt(t, p, l.ps+16, u32(0xdeadbeef))
		}, false},
		{"meta page 0 zeroed", func(t *testing.T, p string, l layout) { writeAt(t, p, 0, zeros(l.ps)) }, true},
		{"meta page 1 flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.ps+16+40, []byte{0x5a}) }, true},
		{"freelist page zeroed", func(t *testing.T, p string, l layout) { writeAt(t, p, l.freelist*l.ps, zeros(l.ps)) }, false},
		{"freelist count flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.freelist*l.ps+10, []byte{0xfe, 0xff}) }, false},
		{"leaf page zeroed", func(t *testing.T, p string, l layout) { writeAt(t, p, l.leaf*l.ps, zeros(l.ps)) }, false},
		{"leaf page type flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.leaf*l.ps+8, []byte{0x42}) }, false},
		{"leaf page id flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.leaf*l.ps, []byte{0x77}) }, false},
		{"leaf key size flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.leaf*l.ps+16+8+3, []byte{0x40}) }, false},
		{"leaf count flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.leaf*l.ps+10, []byte{0xff, 0x7f}) }, false},
		{"overflow count flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.overflw*l.ps+12, u32(1<<20)) }, false},
		{"branch child out of range", func(t *testing.T, p string, l layout) { writeAt(t, p, l.branch*l.ps+16+8, u64(uint64(l.pages)+1000)) }, false},
		{"branch child points at a meta page", func(t *testing.T, p string, l layout) { writeAt(t, p, l.branch*l.ps+16+8, u64(1)) }, false},
		{"branch points at itself", func(t *testing.T, p string, l layout) { writeAt(t, p, l.branch*l.ps+16+8, u64(uint64(l.branch))) }, false},
		{"branch key offset flipped", func(t *testing.T, p string, l layout) { writeAt(t, p, l.branch*l.ps+16+3, []byte{0x7f}) }, false},
		{"garbage text", func(t *testing.T, p string, l layout) {
			if err := os.WriteFile(p, []byte(strings.Repeat("not a store ", 4000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"random bytes", func(t *testing.T, p string, l layout) {
			b := make([]byte, l.pages*l.ps)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"random bytes over the data pages", func(t *testing.T, p string, l layout) {
			b := make([]byte, (l.pages-2)*l.ps)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			writeAt(t, p, 2*l.ps, b)
		}, false},
		{"a directory", func(t *testing.T, p string, l layout) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a value shorter than its revision", func(t *testing.T, p string, l layout) {
			rawUpdate(t, p, func(tx *bbolt.Tx) error { return tx.Bucket(dataBucket).Put([]byte("ws/0001"), []byte{1, 2, 3}) })
		}, false},
		{"a corrupt log entry", func(t *testing.T, p string, l layout) {
			rawUpdate(t, p, func(tx *bbolt.Tx) error {
				k, _ := tx.Bucket(logBucket).Cursor().Last()
				return tx.Bucket(logBucket).Put(k, []byte{9, 9, 9})
			})
		}, false},
		{"revision counter behind the keys", func(t *testing.T, p string, l layout) {
			rawUpdate(t, p, func(tx *bbolt.Tx) error { return tx.Bucket(metaBucket).Put(revKey, revBytes(3)) })
		}, false},
		{"another program's bbolt file", func(t *testing.T, p string, l layout) {
			rawUpdate(t, p, func(tx *bbolt.Tx) error {
				for _, b := range [][]byte{dataBucket, metaBucket, logBucket} {
					if err := tx.DeleteBucket(b); err != nil {
						return err
					}
				}
				_, err := tx.CreateBucket([]byte("other"))
				return err
			})
		}, false},
	}
	base := filepath.Join(t.TempDir(), "base.db")
	buildStore(t, base)
	l := pageLayout(t, base)
	orig, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(base); err != nil || !rep.OK() || len(rep.Warnings) > 0 {
		t.Fatalf("Check(sound store): %v, %+v", err, rep)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, path, l)
			before, _ := os.ReadFile(path)

			s, err := openNoPanic(t, path)
			if tc.warn {
				if err != nil {
					t.Fatalf("Open: %v, want the store opened from the other meta page", err)
				}
				if len(s.Report().Warnings) == 0 {
					t.Errorf("Open: no warning in %+v", s.Report())
				}
				if _, err := s.List(context.Background(), ""); err != nil {
					t.Errorf("List: %v", err)
				}
				s.Close()
			} else {
				if err == nil {
					s.Close()
					t.Fatal("Open: got a store, want a *DamagedError")
				}
				var de *DamagedError
				if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
					t.Fatalf("Open: got %T %v, want a *DamagedError", err, err)
				}
				for _, want := range []string{"open store " + path, "damaged", "vgrid store check", "vgrid store restore", BackupDir(path)} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Open: error %q does not say %q", err, want)
					}
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Errorf("Open changed the damaged file")
				}
			}

			rep, err := Check(path)
			if tc.warn {
				if err != nil || !rep.OK() || len(rep.Warnings) == 0 {
					t.Fatalf("Check: %v, %+v; want warnings and no problems", err, rep)
				}
				t.Logf("warnings: %q", rep.Warnings)
				return
			}
			if !errors.Is(err, ErrDamaged) || rep.OK() {
				t.Fatalf("Check: %v, %+v; want the damage reported", err, rep)
			}
			if !strings.Contains(err.Error(), "check store "+path) {
				t.Errorf("Check: error %q does not name the file", err)
			}
			t.Logf("problems: %q", rep.Problems)
		})
	}
}

// bbolt itself panics on a page whose header names another page; guard,
// which Open puts around bbolt should the checker miss something, turns
// that into an error.
func TestGuardRecoversBboltPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	buildStore(t, path)
	l := pageLayout(t, path)
	writeAt(t, path, l.leaf*l.ps, []byte{0x77})
	var db *bbolt.DB
	err := guard(func() error {
		var err error
		if db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second}); err != nil {
			return err
		}
		return db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(dataBucket).ForEach(func(k, v []byte) error { return nil })
		})
	})
	var pe *panicError
	if !errors.As(err, &pe) {
		t.Fatalf("guard: got %v, want the panic as an error", err)
	}
	t.Logf("bbolt panicked: %v", pe)
	_ = db.Close() // the panic was in a read transaction, which View ended
}

// openNoPanic is Open, failing the test (not crashing it) on a panic.
func openNoPanic(t *testing.T, path string) (s *Store, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Open panicked: %v", p)
		}
	}()
	return Open(path)
}

func TestOpenUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := filepath.Join(t.TempDir(), "store.db")
	buildStore(t, path)
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"Open":  func() error { _, err := Open(path); return err },
		"Check": func() error { _, err := Check(path); return err },
	} {
		err := f()
		if err == nil || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s(unreadable): got %v, want a permission error naming the file", name, err)
		}
	}
}

// A new store file is made whole and then linked into place: no temporary
// file is left, and the store has an ID that a reopen keeps.
func TestOpenCreates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "store.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	if !validID([]byte(id)) {
		t.Fatalf("ID %q", id)
	}
	s.Close()
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 || ents[0].Name() != "store.db" {
		t.Fatalf("directory holds %v, want only store.db", ents)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ID() != id {
		t.Fatalf("reopened ID %q, want %q", s.ID(), id)
	}
	rep, err := Check(path + ".missing")
	if err == nil || errors.Is(err, ErrDamaged) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check(missing): %v, %+v", err, rep)
	}
}

// A store made before stores had IDs gets one at its next Open.
func TestOpenAddsID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	buildStore(t, path)
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.Bucket(metaBucket).Delete(idKey) })
	rep, err := Check(path)
	if err != nil || rep.ID != "" {
		t.Fatalf("Check: %v, ID %q", err, rep.ID)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	s.Close()
	if rep, err := Check(path); err != nil || rep.ID != id || id == "" {
		t.Fatalf("Check after Open: %v, ID %q, want %q", err, rep.ID, id)
	}
}

// A backup taken while writers write is a consistent store; one taken at
// rest holds exactly the store's keys; Restore puts it back over a
// damaged store and keeps the damaged file aside.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	want := buildStore(t, path)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Online, under writes.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Update(ctx, fmt.Sprintf("busy/%d", i%50), bytes.Repeat([]byte("x"), i%3000), 0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range 5 {
		rep, err := s.BackupTo(ctx, filepath.Join(dir, "backups", fmt.Sprintf("online-%d.db", i)))
		if err != nil || !rep.OK() || rep.ID != s.ID() {
			t.Fatalf("online backup %d: %v, %+v", i, err, rep)
		}
	}
	close(stop)
	wg.Wait()
	for i := range 5 {
		b := filepath.Join(dir, "backups", fmt.Sprintf("online-%d.db", i))
		bs, err := Open(b)
		if err != nil {
			t.Fatalf("open online backup %d: %v", i, err)
		}
		rev, _ := bs.Revision(ctx)
		kvs, _ := bs.List(ctx, "")
		for _, kv := range kvs {
			if kv.Revision > rev {
				t.Fatalf("backup %d at revision %d holds %s at %d", i, rev, kv.Key, kv.Revision)
			}
		}
		bs.Close()
	}

	// At rest: the same keys, values and revisions, and the same ID.
	for _, kv := range mustList(t, s) {
		if strings.HasPrefix(kv.Key, "busy/") {
			if err := s.Delete(ctx, kv.Key, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	want = mustList(t, s)
	id := s.ID()
	backup := filepath.Join(dir, "backups", "rest.db")
	if _, err := s.BackupTo(ctx, backup); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if n, err := s.Backup(ctx, &buf); err != nil || n != int64(buf.Len()) {
		t.Fatalf("Backup: %d, %v", n, err)
	}

	// Neither an offline backup, a check nor a restore while it is open.
	if _, err := BackupFile(ctx, path, filepath.Join(dir, "x.db")); !errors.Is(err, ErrLocked) {
		t.Fatalf("BackupFile(open store): %v, want ErrLocked", err)
	}
	if _, err := Check(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("Check(open store): %v, want ErrLocked", err)
	}
	if _, err := Restore(backup, path); !errors.Is(err, ErrLocked) {
		t.Fatalf("Restore(open store): %v, want ErrLocked", err)
	}
	s.Close()

	// Offline backup.
	off := filepath.Join(dir, "offline.db")
	if rep, err := BackupFile(ctx, path, off); err != nil || rep.Keys != len(want) {
		t.Fatalf("BackupFile: %v, %+v", err, rep)
	}

	// Damage the store, then restore.
	truncate(t, path, 0)
	if _, err := BackupFile(ctx, path, filepath.Join(dir, "y.db")); !errors.Is(err, ErrDamaged) {
		t.Fatalf("BackupFile(damaged): %v, want ErrDamaged", err)
	}
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bad, path); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Restore(damaged backup): %v, want a refusal", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatal("a refused restore changed the store")
	}
	for _, b := range []string{backup, off} {
		res, err := Restore(b, path)
		if err != nil {
			t.Fatal(err)
		}
		if res.Aside == "" || !strings.HasPrefix(res.Aside, path+".before-restore-") {
			t.Fatalf("Restore: aside %q", res.Aside)
		}
		if _, err := os.Stat(res.Aside); err != nil {
			t.Fatal(err)
		}
		if res.Report.Keys != len(want) || res.Report.ID != id {
			t.Fatalf("Restore: report %+v", res.Report)
		}
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustList(t, r); !equalKVs(got, want) {
			t.Fatalf("restored store from %s: %d keys, want %d", b, len(got), len(want))
		}
		if r.ID() != id {
			t.Fatalf("restored ID %q, want %q", r.ID(), id)
		}
		r.Close()
	}
	// Restore into a data directory that lost its store.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if res, err := Restore(backup, path); err != nil || res.Aside != "" {
		t.Fatalf("Restore(no store): %+v, %v", res, err)
	}
	if _, err := Restore(path, path); err == nil {
		t.Fatal("Restore(store onto itself): no error")
	}
}

func mustList(t *testing.T, s *Store) []store.KV {
	t.Helper()
	kvs, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return kvs
}

func equalKVs(a, b []store.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Revision != b[i].Revision || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// FuzzCheck feeds the checker and Open arbitrary files, seeded with a
// sound store and damaged ones: neither may panic, and a file Open takes
// must read without panicking.
func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	s, err := Open(path, WithHistory(5))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	// Small, so that the fuzzer's minimizing of a new input is quick, but
	// with a branch page and a value over several pages.
	for i := range 60 {
		n := 60
		if i == 30 {
			n = 5000
		}
		if _, err := s.Create(ctx, fmt.Sprintf("k%02d", i), bytes.Repeat([]byte{byte(i)}, n)); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	flipped := bytes.Clone(seed)
	flipped[len(flipped)/3] ^= 0xff
	f.Add(flipped)
	f.Add([]byte{})
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rep Report
		scanFile(bytes.NewReader(b), int64(len(b)), &rep)
		p := filepath.Join(t.TempDir(), "store.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(p)
		if err != nil {
			if rep.OK() && len(b) > 0 && !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		defer s.Close()
		if !rep.OK() {
			t.Fatalf("Open took a file the checker refused: %q", rep.Problems)
		}
		if _, err := s.List(ctx, ""); err != nil {
			t.Logf("List: %v", err)
		}
		if ch, err := s.Watch(ctx, "", 1); err == nil {
			_ = ch
		}
	})
}

// decodeLog and decodeValue are the store's own parsers of what it keeps:
// a damaged value must be an error, never a panic.
func FuzzDecodeLog(f *testing.F) {
	f.Add(encodeLog([]store.Event{{Type: store.EventPut, KV: store.KV{Key: "a", Value: []byte("v")}}}))
	f.Add(encodeLog([]store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "a", Value: []byte("v")}},
		{Type: store.EventDelete, KV: store.KV{Key: "b"}},
	}))
	f.Add([]byte{logBatch, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := decodeLog(7, b)
		if err == nil {
			for _, ev := range evs {
				if ev.Type != store.EventPut && ev.Type != store.EventDelete {
					t.Fatalf("decoded event type %d", ev.Type)
				}
			}
		}
		_, _, _ = decodeValue(b)
	})
}
