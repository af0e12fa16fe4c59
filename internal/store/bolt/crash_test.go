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

// crashChild writes key k0, k1, ... of the round, and after each write
// also moves a "last" marker; it prints the index once both are
// acknowledged.
func crashChild(path string, round int) {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		if _, err := s.Create(ctx, crashKey(round, i), crashValue(round, i)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		if _, err := s.Update(ctx, fmt.Sprintf("crash/%d/last", round), []byte(strconv.Itoa(i)), 0); err != nil {
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
