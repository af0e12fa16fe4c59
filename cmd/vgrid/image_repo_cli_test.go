package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/controlplane"
	"vgrid/internal/model"
	"vgrid/internal/testenv"
)

// `vgrid image push|list|get|pull|delete` through a real control plane.
func TestImageRepoCLI(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img not found: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	cp, err := controlplane.Start(ctx, newLogger(), controlplane.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cp.Wait(ctx); cp.Close() }()
	cfg := filepath.Join(dir, "client.json")
	disk := bytes.Repeat([]byte("vgrid "), 200000) // 1.2 MB
	disk = disk[:len(disk)/512*512]
	file := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(disk)
	digest := "sha256:" + hex.EncodeToString(h[:])

	// The format is detected (raw); the progress ends in one line (not a
	// terminal) and the digest is printed.
	out, err := cli(t, cfg, "image", "push", "mine", file, "--tag", "v1", "--tag", "base")
	if err != nil || !strings.Contains(out, digest) || !strings.Contains(out, "push mine [########################]") || !strings.Contains(out, "100.0%") {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if strings.Count(out, "push mine") != 1 {
		t.Errorf("progress drawn more than once off a terminal:\n%s", out)
	}
	// A qcow2 declared raw is refused, naming the field.
	qcow := filepath.Join(dir, "d.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", qcow, "4M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	if out, err := cli(t, cfg, "image", "push", "other", qcow, "--format", "raw"); err == nil || !strings.Contains(err.Error(), "format") {
		t.Errorf("qcow2 as raw: %v\n%s", err, out)
	}
	out, err = cli(t, cfg, "image", "list")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "mine ") {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if want := "mine default raw 1.1Mi " + digest[7:19] + " v1,base"; row != want {
		t.Errorf("list row %q, want %q\n%s", row, want, out)
	}
	out, err = cli(t, cfg, "image", "get", "mine", "-o", "json")
	var img model.Image
	if err != nil || json.Unmarshal([]byte(out), &img) != nil || img.Digest != digest || img.Size != int64(len(disk)) || img.Project != "default" {
		t.Fatalf("get: %v %+v\n%s", err, img, out)
	}
	pulled := filepath.Join(dir, "pulled.img")
	if out, err := cli(t, cfg, "image", "pull", "mine", pulled); err != nil || !strings.Contains(out, "verified") {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(pulled); err != nil || !bytes.Equal(b, disk) {
		t.Fatalf("pulled file differs: %v", err)
	}
	if out, err := cli(t, cfg, "image", "delete", "mine"); err != nil || !strings.Contains(out, "image mine deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if _, err := cli(t, cfg, "image", "get", "mine"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("get after delete: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*")); len(left) != 0 {
		t.Errorf("blobs left after the delete: %v", left)
	}
}
