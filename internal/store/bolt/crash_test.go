package bolt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"vgrid/internal/store"
)

// crashChildEnv, when set, makes TestCrashRecovery act as the child: it
// writes to the store named by the variable until it is killed.
const crashChildEnv = "VGRID_BOLT_CRASH_CHILD"

// crashValue is the value of key i of a crash round: sizes vary so that
// pages split and values overflow pages.
func crashValue(round, i int) []byte {
	n := 16 + (i*7919)%6000
	pat := []byte(fmt.Sprintf("%d/%d;", round, i))
	return bytes.Repeat(pat, n/len(pat)+1)[:n]
}

func crashKey(round, i int) string { return fmt.Sprintf("crash/%d/k%06d", round, i) }

// crashTxnKeys is how many keys each crash Txn creates.
const crashTxnKeys = 5

// crashTxnKey is key j of the Txn i of a round; key j = crashTxnKeys is
// the one that the next Txn deletes.
func crashTxnKey(round, i, j int) string { return fmt.Sprintf("crash/%d/t%06d/%d", round, i, j) }

// crashTxn is the Txn i of a round: it creates crashTxnKeys keys of varied
// sizes and one to be deleted by the next, deletes the previous Txn's (made
// at revision prev), and moves a "tlast" marker.
func crashTxn(round, i int, prev int64) []store.Op {
	var ops []store.Op
	for j := range crashTxnKeys {
		ops = append(ops, store.Op{Key: crashTxnKey(round, i, j), Value: crashValue(round, 1_000_000+i*crashTxnKeys+j), Rev: store.OpMustNotExist})
	}
	ops = append(ops,
		store.Op{Key: crashTxnKey(round, i, crashTxnKeys), Value: []byte("next deletes me"), Rev: store.OpMustNotExist},
		store.Op{Key: fmt.Sprintf("crash/%d/tlast", round), Value: []byte(strconv.Itoa(i))})
	if i > 0 {
		ops = append(ops, store.Op{Key: crashTxnKey(round, i-1, crashTxnKeys), Delete: true, Rev: prev})
	}
	return ops
}

// crashChild writes key k0, k1, ... of the round, and after each write
// also moves a "last" marker and writes Txn i; it prints the index once
// all three are acknowledged.
func crashChild(path string, round int) {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	var prev int64 // the revision of the last Txn
	for i := 0; ; i++ {
		if _, err := s.Create(ctx, crashKey(round, i), crashValue(round, i)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		if _, err := s.Update(ctx, fmt.Sprintf("crash/%d/last", round), []byte(strconv.Itoa(i)), 0); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		if prev, err = s.Txn(ctx, crashTxn(round, i, prev)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		fmt.Fprintln(out, i)
		out.Flush()
	}
}

func TestCrashRecovery(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		round, _ := strconv.Atoi(os.Getenv(crashChildEnv + "_ROUND"))
		crashChild(path, round)
		return
	}
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	const rounds = 5
	for round := range rounds {
		// Kill after 20 to 200 acknowledgements, plus a random delay.
		killAt := 20 + rand.IntN(180)
		delay := time.Duration(rand.IntN(3000)) * time.Microsecond

		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashChildEnv+"_ROUND="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lastAck := -1
		killed := false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			i, err := strconv.Atoi(sc.Text())
			if err != nil {
				continue // not an acknowledgement
			}
			if i != lastAck+1 {
				t.Fatalf("round %d: acknowledgement %d after %d", round, i, lastAck)
			}
			lastAck = i
			if !killed && i+1 >= killAt {
				time.Sleep(delay)
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child exited early (%v): %s", round, err, stderr.Bytes())
		}
		t.Logf("round %d: killed after %d acknowledged writes (target %d, delay %v)", round, lastAck+1, killAt, delay)

		checkFile(t, path)

		s, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		ctx := context.Background()
		for i := 0; i <= lastAck; i++ {
			kv, err := s.Get(ctx, crashKey(round, i))
			if err != nil {
				t.Fatalf("round %d: acknowledged key %d: got error %v, want it present", round, i, err)
			}
			if !bytes.Equal(kv.Value, crashValue(round, i)) {
				t.Fatalf("round %d: key %d: got a %d-byte value, want the %d bytes written", round, i, len(kv.Value), len(crashValue(round, i)))
			}
		}
		// Writes are sequential: what survived is a prefix of them, and the
		// marker is at its end or one write behind.
		kvs, err := s.List(ctx, fmt.Sprintf("crash/%d/k", round))
		if err != nil {
			t.Fatal(err)
		}
		for i, kv := range kvs {
			if kv.Key != crashKey(round, i) {
				t.Fatalf("round %d: surviving key %d is %q, want %q", round, i, kv.Key, crashKey(round, i))
			}
		}
		if len(kvs) > lastAck+2 {
			t.Fatalf("round %d: %d keys survived, but only %d were acknowledged and one more may have been under way", round, len(kvs), lastAck+1)
		}
		last, err := s.Get(ctx, fmt.Sprintf("crash/%d/last", round))
		if err != nil {
			t.Fatalf("round %d: marker: %v", round, err)
		}
		if n, _ := strconv.Atoi(string(last.Value)); n < lastAck || n >= len(kvs) {
			t.Fatalf("round %d: marker at %d, want between %d and %d", round, n, lastAck, len(kvs)-1)
		}
		checkCrashTxns(t, s, round, lastAck, len(kvs))
		// The store keeps working after the crash, at higher revisions.
		rev, err := s.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rev < last.Revision {
			t.Fatalf("round %d: revision %d is below the marker's %d", round, rev, last.Revision)
		}
		newRev, err := s.Create(ctx, fmt.Sprintf("crash/%d/after", round), nil)
		if err != nil || newRev <= rev {
			t.Fatalf("round %d: write after recovery: got revision %d (error %v), want > %d", round, newRev, err, rev)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFile runs bbolt's consistency check on the file.
func checkFile(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("open for check: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%d consistency errors, first: %v", len(errs), errs[0])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
}

// checkCrashTxns checks that every Txn of the round is either all there or
// not at all: Txns 0..n-1 survived whole, for n between the acknowledged
// count and the number of surviving single-key writes.
func checkCrashTxns(t *testing.T, s *Store, round, lastAck, keys int) {
	t.Helper()
	ctx := context.Background()
	kvs, err := s.List(ctx, fmt.Sprintf("crash/%d/t", round))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.KV{}
	for _, kv := range kvs {
		got[kv.Key] = kv
	}
	tlast, hasLast := got[fmt.Sprintf("crash/%d/tlast", round)]
	delete(got, tlast.Key)
	n := 0 // Txns that survived
	for ; ; n++ {
		kv, ok := got[crashTxnKey(round, n, 0)]
		if !ok {
			break
		}
		for j := range crashTxnKeys {
			k := crashTxnKey(round, n, j)
			if got[k].Revision != kv.Revision || !bytes.Equal(got[k].Value, crashValue(round, 1_000_000+n*crashTxnKeys+j)) {
				t.Fatalf("round %d: Txn %d: key %d is %d bytes at revision %d, want the bytes written at revision %d with its other keys",
					round, n, j, len(got[k].Value), got[k].Revision, kv.Revision)
			}
			delete(got, k)
		}
	}
	if n < lastAck+1 || n > keys {
		t.Fatalf("round %d: %d Txns survived, want between %d acknowledged and %d (one per surviving Create)", round, n, lastAck+1, keys)
	}
	// Only the last Txn's to-be-deleted key is left: each Txn deleted the
	// one of the Txn before it.
	if n > 0 {
		k := crashTxnKey(round, n-1, crashTxnKeys)
		if kv, ok := got[k]; !ok || kv.Revision != tlast.Revision {
			t.Fatalf("round %d: %s: got revision %d (present %v), want it at the last Txn's revision %d", round, k, kv.Revision, ok, tlast.Revision)
		}
		delete(got, k)
		if m, _ := strconv.Atoi(string(tlast.Value)); !hasLast || m != n-1 {
			t.Fatalf("round %d: Txn marker at %q (present %v), want %d", round, tlast.Value, hasLast, n-1)
		}
	}
	for k := range got {
		t.Fatalf("round %d: key %s of a partial Txn survived (%d whole Txns)", round, k, n)
	}
	t.Logf("round %d: %d whole Txns survived, %d acknowledged", round, n, lastAck+1)
}
