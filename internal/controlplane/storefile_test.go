package controlplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/store/bolt"
)

// run starts a control plane in dir and returns its stop.
func run(t *testing.T, dir string, allowFresh bool) (*ControlPlane, func(), error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp, err := Start(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)),
		Config{DataDir: dir, Listen: "127.0.0.1:0", AllowFreshStore: allowFresh})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return cp, func() { cancel(); _ = cp.Wait(ctx); cp.Close() }, nil
}

func mustRun(t *testing.T, dir string) (*ControlPlane, func()) {
	t.Helper()
	cp, stop, err := run(t, dir, false)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return cp, stop
}

func adminToken(t *testing.T, dir string) string {
	t.Helper()
	cfg, err := client.LoadConfigFile(filepath.Join(dir, "client.json"))
	if err != nil || cfg.Token == "" {
		t.Fatalf("client config: %v, token %q", err, cfg.Token)
	}
	return cfg.Token
}

// A store file emptied (0 bytes) where vgrid ran is damage: Start refuses,
// naming the file, the newest backup and the restore command, and neither
// writes a store nor makes a new admin token. Restoring the newest backup
// brings the same store back: the old admin token works again.
func TestStartRefusesEmptyStore(t *testing.T) {
	dir := t.TempDir()
	// Two runs: the second start's backup holds what the first wrote.
	for range 2 {
		_, stop := mustRun(t, dir)
		stop()
	}
	token := adminToken(t, dir)
	path := StorePath(dir)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, dir, false)
	if !errors.Is(err, bolt.ErrDamaged) {
		t.Fatalf("Start(empty store): got %v, want a refusal wrapping bolt.ErrDamaged", err)
	}
	list := backups(BackupDir(dir))
	if len(list) != 2 {
		t.Fatalf("backups: %v", list)
	}
	newest := list[1:]
	for _, want := range []string{path, "0 bytes", "vgrid store restore " + newest[0] + " --data-dir " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start: error %q does not say %q", err, want)
		}
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatal("the refused start wrote the store")
	}
	if got := adminToken(t, dir); got != token {
		t.Fatal("the refused start made a new admin token")
	}

	if _, err := RestoreStore(dir, newest[0]); err != nil {
		t.Fatal(err)
	}
	cp, stop := mustRun(t, dir)
	defer stop()
	if got := adminToken(t, dir); got != token || !cp.Server().TokenValid(context.Background(), token) {
		t.Fatal("after the restore the admin token changed or does not work")
	}
}

// A missing store where vgrid ran is refused with what shows the earlier
// install; AllowFreshStore starts anew (a new admin token).
func TestStartRefusesMissingStore(t *testing.T) {
	dir := t.TempDir()
	_, stop := mustRun(t, dir)
	stop()
	token := adminToken(t, dir)
	if err := os.Remove(StorePath(dir)); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, dir, false)
	var me *MissingStoreError
	if !errors.As(err, &me) {
		t.Fatalf("Start(missing store): got %v, want a *MissingStoreError", err)
	}
	for _, want := range []string{StorePath(dir), "store.id", "client.json", "tls/ca.crt", "backups/", "vgrid store restore", "vgrid store reset"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := os.Stat(StorePath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the refused start made a store file")
	}
	if got := adminToken(t, dir); got != token {
		t.Fatal("the refused start made a new admin token")
	}
	if _, _, err := CheckStore(context.Background(), dir); !errors.As(err, &me) {
		t.Fatalf("CheckStore(missing store): %v", err)
	}

	_, stop, err = run(t, dir, true)
	if err != nil {
		t.Fatalf("Start(AllowFreshStore): %v", err)
	}
	stop()
	if got := adminToken(t, dir); got == token {
		t.Fatal("a fresh store kept the old admin token")
	}
}

// A store other than the one recorded in store.id is refused; so is a
// damaged one, which AllowFreshStore sets aside.
func TestStartRefusesForeignAndDamagedStore(t *testing.T) {
	dir := t.TempDir()
	_, stop := mustRun(t, dir)
	stop()
	other := filepath.Join(t.TempDir(), "other.db")
	s, err := bolt.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, _ := os.ReadFile(other)
	if err := os.WriteFile(StorePath(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, dir, false)
	var fe *ForeignStoreError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "store.id") {
		t.Fatalf("Start(another store): got %v, want a *ForeignStoreError", err)
	}
	if _, _, err := CheckStore(context.Background(), dir); !errors.As(err, &fe) {
		t.Fatalf("CheckStore(another store): %v", err)
	}

	if err := os.WriteFile(StorePath(dir), []byte(strings.Repeat("junk", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, dir, false); !errors.Is(err, bolt.ErrDamaged) {
		t.Fatalf("Start(garbage): %v", err)
	}
	_, stop, err = run(t, dir, true)
	if err != nil {
		t.Fatalf("Start(garbage, AllowFreshStore): %v", err)
	}
	stop()
	aside, _ := filepath.Glob(StorePath(dir) + ".reset-*")
	if len(aside) != 1 {
		t.Fatalf("damaged store set aside as %v, want one file", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !strings.HasPrefix(string(b), "junk") {
		t.Fatal("the file set aside is not the damaged one")
	}
}

// Each start backs the store up before writing; the newest KeepBackups
// are kept, each a sound copy of the store.
func TestStartBacksUp(t *testing.T) {
	dir := t.TempDir()
	var ids []string
	for i := range 3 {
		cp, stop := mustRun(t, dir)
		ids = append(ids, cp.st.ID())
		stop()
		if got := len(backups(BackupDir(dir))); got != i+1 {
			t.Fatalf("after start %d: %d backups", i+1, got)
		}
	}
	var last int64
	for _, b := range backups(BackupDir(dir)) {
		rep, err := bolt.Check(b)
		if err != nil || rep.ID != ids[0] {
			t.Fatalf("backup %s: %v, ID %q want %q", b, err, rep.ID, ids[0])
		}
		if rep.Revision < last {
			t.Fatalf("backup %s at revision %d, before an older one's %d", b, rep.Revision, last)
		}
		last = rep.Revision
	}
	// The first start's backup is of the new, empty store: taken before
	// anything was written.
	if rep, _ := bolt.Check(backups(BackupDir(dir))[0]); rep.Revision != 0 {
		t.Fatalf("first backup at revision %d, want 0", rep.Revision)
	}
}

func TestPruneBackups(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for i := range 8 {
		n := filepath.Join(dir, "store-2025010"+string(rune('1'+i))+"T000000.000Z.db")
		names = append(names, n)
		if err := os.WriteFile(n, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keepMe := filepath.Join(dir, "mine.db")
	staleTmp := filepath.Join(dir, ".store-20250101T000000.000Z.db.tmp-1")
	for _, p := range []string{keepMe, staleTmp} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	_ = os.Chtimes(staleTmp, old, old)
	if err := pruneBackups(dir, KeepBackups); err != nil {
		t.Fatal(err)
	}
	if got := backups(dir); strings.Join(got, ",") != strings.Join(names[8-KeepBackups:], ",") {
		t.Fatalf("kept %v, want the newest %d", got, KeepBackups)
	}
	if _, err := os.Stat(keepMe); err != nil {
		t.Fatal("pruned a file that is not a backup")
	}
	if _, err := os.Stat(staleTmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("kept a stale temporary file")
	}
}

// While the control plane runs, `vgrid store backup` and `check` go
// through it (a consistent copy it takes), restore and reset refuse; once
// it is stopped they work on the file.
func TestStoreOperationsOnline(t *testing.T) {
	dir := t.TempDir()
	cp, stop := mustRun(t, dir)
	ctx := context.Background()
	id := cp.st.ID()
	rev, _ := cp.st.Revision(ctx)

	dst := filepath.Join(t.TempDir(), "copy.db")
	rep, online, err := BackupStore(ctx, dir, dst)
	if err != nil || !online || rep.ID != id || rep.Revision < rev {
		t.Fatalf("online BackupStore: %v (online %v), %+v", err, online, rep)
	}
	if _, err := bolt.Check(dst); err != nil {
		t.Fatal(err)
	}
	rep, copyPath, err := CheckStore(ctx, dir)
	if err != nil || copyPath == "" || rep.ID != id {
		t.Fatalf("online CheckStore: %v, copy %q, %+v", err, copyPath, rep)
	}
	if _, err := RestoreStore(dir, dst); !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("RestoreStore while running: %v", err)
	}
	if _, _, err := ResetStore(dir); !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("ResetStore while running: %v", err)
	}
	stop()
	if _, err := os.Stat(filepath.Join(dir, backupSocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the backup socket outlived the control plane")
	}

	rep, online, err = BackupStore(ctx, dir, dst)
	if err != nil || online || rep.ID != id {
		t.Fatalf("offline BackupStore: %v (online %v), %+v", err, online, rep)
	}
	if rep, copyPath, err = CheckStore(ctx, dir); err != nil || copyPath != "" || rep.ID != id {
		t.Fatalf("offline CheckStore: %v, %q, %+v", err, copyPath, rep)
	}
	// Reset starts a new store and records its ID; restoring the copy
	// brings the old one back, and records its ID again.
	aside, rep, err := ResetStore(dir)
	if err != nil || aside == "" || rep.Revision != 0 || rep.ID == id {
		t.Fatalf("ResetStore: %q, %+v, %v", aside, rep, err)
	}
	if rec, _ := readStoreID(dir); rec != rep.ID {
		t.Fatalf("store.id %q after reset, want %q", rec, rep.ID)
	}
	res, err := RestoreStore(dir, dst)
	if err != nil || res.Report.ID != id {
		t.Fatalf("RestoreStore: %+v, %v", res, err)
	}
	if rec, _ := readStoreID(dir); rec != id {
		t.Fatalf("store.id %q after restore, want %q", rec, id)
	}
	cp, stop = mustRun(t, dir)
	defer stop()
	if cp.st.ID() != id {
		t.Fatal("restored store has another ID")
	}
}

// A data directory that never held vgrid starts with a new store and no
// complaint; a fresh store is not "previous install" evidence by itself.
func TestStartFreshDataDir(t *testing.T) {
	dir := t.TempDir()
	// What may be there before the first start: a log, images.
	if err := os.MkdirAll(filepath.Join(dir, "images", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vgrid.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ev := previousInstall(dir); len(ev) != 0 {
		t.Fatalf("evidence in a new data dir: %v", ev)
	}
	_, stop := mustRun(t, dir)
	stop()
	if rec, _ := readStoreID(dir); rec == "" {
		t.Fatal("no store.id after the first start")
	}
}
