package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/controlplane"
)

// storeCLI runs `vgrid store args... --data-dir dir`.
func storeCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(append([]string{"store"}, args...), "--data-dir", dir))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// `vgrid store` through a real control plane: check and backup while it
// runs, restore refused; then, stopped, a damaged store is reported and
// restored from the online backup.
func TestStoreCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	cp, err := controlplane.Start(ctx, newLogger(), controlplane.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := storeCLI(t, dir, "check")
	if err != nil || !strings.Contains(out, ": sound") || !strings.Contains(out, "a copy the running vgrid took") {
		t.Fatalf("check (running): %v\n%s", err, out)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	out, err = storeCLI(t, dir, "backup", copyPath)
	if err != nil || !strings.Contains(out, "taken by the running vgrid") {
		t.Fatalf("backup (running): %v\n%s", err, out)
	}
	if _, err := storeCLI(t, dir, "restore", copyPath); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("restore (running): %v", err)
	}
	cancel()
	_ = cp.Wait(ctx)
	cp.Close()

	if err := os.Truncate(controlplane.StorePath(dir), 0); err != nil {
		t.Fatal(err)
	}
	out, err = storeCLI(t, dir, "check")
	if err == nil || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, "0 bytes") {
		t.Fatalf("check (damaged): %v\n%s", err, out)
	}
	out, err = storeCLI(t, dir, "check", copyPath)
	if err != nil || !strings.Contains(out, copyPath+": sound") {
		t.Fatalf("check FILE: %v\n%s", err, out)
	}
	out, err = storeCLI(t, dir, "restore", copyPath)
	if err != nil || !strings.Contains(out, "restored from "+copyPath) || !strings.Contains(out, ".before-restore-") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if out, err = storeCLI(t, dir, "check"); err != nil {
		t.Fatalf("check (restored): %v\n%s", err, out)
	}
	if _, err := storeCLI(t, dir, "reset"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("reset without --yes: %v", err)
	}
	out, err = storeCLI(t, dir, "reset", "--yes")
	if err != nil || !strings.Contains(out, "a new, empty store") {
		t.Fatalf("reset --yes: %v\n%s", err, out)
	}
}
