package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vgrid/internal/agent"
	"vgrid/internal/client"
	"vgrid/internal/controlplane"
	"vgrid/internal/hypervisor/fake"
	"vgrid/internal/model"
)

// `vgrid workspace exec` through a real control plane and an agent with
// the fake driver: output, exit codes, refusals.
func TestWorkspaceExecCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cp, err := controlplane.Start(ctx, quiet, controlplane.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cp.Wait(ctx); cp.Close() }()
	// An image whose files the agent fetches (from <data-dir>/images).
	imgDir := filepath.Join(dir, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := func(n string) *model.ImageFile {
		p := filepath.Join(imgDir, n)
		data := []byte(strings.Repeat(n, 100))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		return &model.ImageFile{Path: p, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))}
	}
	img := model.Image{Name: "vgrid-guest", Boot: "direct", Disk: *file("rootfs.img"), DiskFormat: "raw",
		Kernel: file("vmlinux"), MinDisk: 256 * model.MiB}
	if err := cp.Server().RegisterImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	drv := fake.New(t.TempDir())
	defer drv.Close()
	ag, err := agent.New(agent.Config{
		Server:  client.Config{Server: cp.URL, Token: cp.JoinToken, CACert: cp.CAPEM},
		DataDir: t.TempDir(), Driver: drv, Logger: quiet, Resync: 200 * time.Millisecond,
		Node: model.Node{Name: "n1", Accel: "tcg", Capacity: model.Resources{MilliCPU: 4000, Memory: 8 * model.GiB, Disk: 100 * model.GiB}},
	})
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { defer close(agentDone); _ = ag.Run(ctx) }()
	defer func() { cancel(); <-agentDone }()

	cfg := filepath.Join(dir, "client.json")
	spec := filepath.Join(dir, "w1.yaml")
	os.WriteFile(spec, []byte("name: w1\nimage: vgrid-guest\nquantum: {vcpus: 1, cpu: 1, memory: 512Mi, disk: 1Gi}\nduration: 1h\n"), 0o644)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The host registers: then the workspace is placed on it.
		out, err := cli(t, cfg, "workspace", "create", "--timeout", "20s", "-f", spec)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	out, err := cli(t, cfg, "workspace", "exec", "w1", "--", "echo", "hello", "world")
	if err != nil || out != "hello world\n" {
		t.Fatalf("exec echo: %v, output %q", err, out)
	}
	out, err = cli(t, cfg, "workspace", "exec", "w1", "--timeout", "5s", "--", "exit", "3")
	var st exitStatus
	if !errors.As(err, &st) || st != 3 || out != "" {
		t.Fatalf("exec exit 3: %v, output %q; want exit status 3", err, out)
	}
	out, err = cli(t, cfg, "workspace", "exec", "w1", "--", "nope")
	if !errors.As(err, &st) || st != 127 || !strings.Contains(out, "nope: not found") {
		t.Fatalf("exec nope: %v, output %q; want exit status 127 and the guest's words", err, out)
	}
	var ce *client.Error
	if _, err := cli(t, cfg, "workspace", "exec", "missing", "--", "true"); !errors.As(err, &ce) || ce.Status != 404 {
		t.Fatalf("exec in a missing workspace: %v, want a 404", err)
	}
	if _, err := cli(t, cfg, "workspace", "exec", "w1", "x", "--", "true"); err == nil || !strings.Contains(err.Error(), "one workspace name before --") {
		t.Fatalf("two names before --: %v", err)
	}
	if _, err := cli(t, cfg, "workspace", "exec", "w1", "--timeout", "2h", "--", "true"); err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Fatalf("--timeout 2h: %v", err)
	}
	if _, err := cli(t, cfg, "workspace", "exec", "w1", "-e", "NOEQUALS", "--", "true"); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
		t.Fatalf("-e without =: %v", err)
	}
}
