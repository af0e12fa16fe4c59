package qemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needTool skips the test when a program is not installed.
func needTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed", name)
	}
	return path
}

// runTool runs a program and returns its stdout, failing the test on error.
func runTool(t testing.TB, prog string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(prog, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", prog, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func TestQcow2OverlayLayout(t *testing.T) {
	const (
		MiB = int64(1) << 20
		GiB = MiB << 10
		TiB = GiB << 10
	)
	tests := []struct {
		size      int64
		wantSize  int64
		wantL1    uint32
		wantFile  int64 // clusters
		wantError string
	}{
		{size: 1, wantSize: 512, wantL1: 1, wantFile: 4},
		{size: 1000001, wantSize: 1000448, wantL1: 1, wantFile: 4},
		{size: MiB, wantSize: MiB, wantL1: 1, wantFile: 4},
		{size: 512 * MiB, wantSize: 512 * MiB, wantL1: 1, wantFile: 4},
		{size: 512*MiB + 512, wantSize: 512*MiB + 512, wantL1: 2, wantFile: 4},
		{size: 10 * GiB, wantSize: 10 * GiB, wantL1: 20, wantFile: 4},
		{size: TiB, wantSize: TiB, wantL1: 2048, wantFile: 4},
		{size: 4 * TiB, wantSize: 4 * TiB, wantL1: 8192, wantFile: 4},
		{size: 4*TiB + 1, wantSize: 4*TiB + 512, wantL1: 8193, wantFile: 5},
		{size: 2048 * TiB, wantSize: 2048 * TiB, wantL1: 4 << 20, wantFile: 3 + 512},
		{size: 2048*TiB + 1, wantError: "too large"},
		{size: 0, wantError: "virtual size"},
		{size: -1, wantError: "virtual size"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			l, err := qcow2Overlay("/img/base.raw", "raw", tt.size)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("got error %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			be := binary.BigEndian
			h := l.header
			if got := be.Uint64(h[24:]); got != uint64(tt.wantSize) {
				t.Errorf("size: got %d, want %d", got, tt.wantSize)
			}
			if got := be.Uint32(h[36:]); got != tt.wantL1 {
				t.Errorf("l1_size: got %d, want %d", got, tt.wantL1)
			}
			if l.fileSize != tt.wantFile*qcow2ClusterSize {
				t.Errorf("file size: got %d clusters, want %d", l.fileSize/qcow2ClusterSize, tt.wantFile)
			}
			if got := len(l.refBlock) / 2; int64(got) != tt.wantFile {
				t.Errorf("refcounted clusters: got %d, want %d", got, tt.wantFile)
			}
			off, n := be.Uint64(h[8:]), be.Uint32(h[16:])
			if got := string(h[off : off+uint64(n)]); got != "/img/base.raw" {
				t.Errorf("backing file: got %q", got)
			}
		})
	}
}

func TestQcow2OverlayErrors(t *testing.T) {
	tests := []struct {
		backing, format, want string
	}{
		{"", "raw", "no backing file"},
		{"/b", "vmdk", "backing format"},
		{"/b", "", "backing format"},
		{"/" + strings.Repeat("x", 1023), "raw", "backing file name"},
	}
	for _, tt := range tests {
		if _, err := qcow2Overlay(tt.backing, tt.format, 1<<20); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("qcow2Overlay(%.10q, %q): got %v, want %q", tt.backing, tt.format, err, tt.want)
		}
	}
	if _, err := qcow2Overlay("/"+strings.Repeat("x", 1022), "qcow2", 1<<20); err != nil {
		t.Errorf("backing name of 1023 bytes: %v", err)
	}
}

func TestImageVirtualSize(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	if err := os.WriteFile(raw, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := imageVirtualSize(raw, "raw"); err != nil || got != 1024 {
		t.Errorf("raw: got %d, %v, want 1024", got, err)
	}
	q := filepath.Join(dir, "q")
	if err := writeQcow2Overlay(q, raw, "raw", 5<<20); err != nil {
		t.Fatal(err)
	}
	if got, err := imageVirtualSize(q, "qcow2"); err != nil || got != 5<<20 {
		t.Errorf("qcow2: got %d, %v, want %d", got, err, 5<<20)
	}
	if _, err := imageVirtualSize(raw, "qcow2"); err == nil {
		t.Error("a raw file read as qcow2: no error")
	}
	if _, err := imageVirtualSize(filepath.Join(dir, "missing"), "raw"); err == nil {
		t.Error("missing file: no error")
	}
	// An overlay without a size takes the backing file's.
	q0 := filepath.Join(dir, "q0")
	if err := writeQcow2Overlay(q0, q, "qcow2", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := imageVirtualSize(q0, "qcow2"); err != nil || got != 5<<20 {
		t.Errorf("overlay of size 0: got %d, %v, want %d", got, err, 5<<20)
	}
	if err := writeQcow2Overlay(q0, q, "qcow2", 0); err == nil {
		t.Error("overwrote an existing file")
	}
}

type qemuImgInfo struct {
	VirtualSize       int64  `json:"virtual-size"`
	Format            string `json:"format"`
	ClusterSize       int64  `json:"cluster-size"`
	BackingFilename   string `json:"backing-filename"`
	BackingFormat     string `json:"backing-filename-format"`
	FullBackingName   string `json:"full-backing-filename"`
	DirtyFlag         bool   `json:"dirty-flag"`
	FormatSpecificRaw struct {
		Data struct {
			Compat      string `json:"compat"`
			RefcountBit int    `json:"refcount-bits"`
			Corrupt     bool   `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

func imgInfo(t *testing.T, path string) qemuImgInfo {
	t.Helper()
	var info qemuImgInfo
	out := runTool(t, "qemu-img", "info", "--output=json", path)
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	return info
}

// imgCheck runs qemu-img check and fails on any error, leak or corruption.
func imgCheck(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("qemu-img", "check", "--output=json", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img check %s: %v\n%s", filepath.Base(path), err, out)
	}
	var res struct {
		Corruptions int `json:"corruptions"`
		Leaks       int `json:"leaks"`
		CheckErrors int `json:"check-errors"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	if res.Corruptions != 0 || res.Leaks != 0 || res.CheckErrors != 0 {
		t.Fatalf("qemu-img check %s:\n%s", filepath.Base(path), out)
	}
}

// TestQcow2OverlayQemuImg has qemu-img check and describe overlays of many
// sizes on raw and qcow2 bases, and compares them with what qemu-img
// create makes.
func TestQcow2OverlayQemuImg(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte{0x11}, 1000001), 0o644); err != nil {
		t.Fatal(err)
	}
	qbase := filepath.Join(dir, "base.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", qbase, "3M")
	const (
		MiB = int64(1) << 20
		GiB = MiB << 10
		TiB = GiB << 10
	)
	sizes := []int64{0, 1, 1000001, MiB, 3*MiB + 512, 512*MiB - 512, 512 * MiB, 512*MiB + 65536 + 512,
		10 * GiB, 100*GiB + 3*MiB + 1536, TiB, 4*TiB + 512}
	for _, base := range []struct{ path, format string }{{raw, "raw"}, {qbase, "qcow2"}} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", base.format, size), func(t *testing.T) {
				ours := filepath.Join(dir, fmt.Sprintf("ours-%s-%d.qcow2", base.format, size))
				if err := writeQcow2Overlay(ours, base.path, base.format, size); err != nil {
					t.Fatal(err)
				}
				imgCheck(t, ours)
				theirs := filepath.Join(dir, fmt.Sprintf("theirs-%s-%d.qcow2", base.format, size))
				args := []string{"create", "-q", "-f", "qcow2", "-b", base.path, "-F", base.format, theirs}
				if size > 0 {
					args = append(args, fmt.Sprint(size))
				}
				runTool(t, "qemu-img", args...)
				got, want := imgInfo(t, ours), imgInfo(t, theirs)
				if got.VirtualSize != want.VirtualSize {
					t.Errorf("virtual size: got %d, qemu-img made %d", got.VirtualSize, want.VirtualSize)
				}
				if got.Format != "qcow2" || got.ClusterSize != 65536 || got.FormatSpecificRaw.Data.Compat != "1.1" ||
					got.FormatSpecificRaw.Data.RefcountBit != 16 || got.DirtyFlag || got.FormatSpecificRaw.Data.Corrupt {
					t.Errorf("info: got %+v", got)
				}
				if got.BackingFilename != base.path || got.FullBackingName != base.path || got.BackingFormat != base.format {
					t.Errorf("backing: got %q (%q), format %q; want %q, %q", got.BackingFilename, got.FullBackingName,
						got.BackingFormat, base.path, base.format)
				}
			})
		}
	}
}

// TestQcow2OverlayIO writes and reads through overlays with qemu-io: the
// base's data shows through, writes land in the overlay, the base stays
// as it was, and qemu-img check still finds nothing wrong.
func TestQcow2OverlayIO(t *testing.T) {
	needTool(t, "qemu-io")
	needTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte{0x11}, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := func() [32]byte {
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	tests := []struct {
		name string
		size int64
		cmds []string
	}{
		{"small", 4 << 20, []string{
			"read -P 0x11 0 64k",
			"write -P 0xab 0 64k",
			"read -P 0xab 0 64k",
			"read -P 0x11 64k 64k",
			"write -P 0xcd 100000 3000", // inside a cluster the base fills
			"read -P 0x11 65536 34464",
			"read -P 0xcd 100000 3000",
			"read -P 0x11 103000 28072",
		}},
		{"grown past the base", 3<<20 + 512 + 4<<20, []string{
			"read -P 0x11 0 4M",
			"read -P 0 4M 3M",
			"write -P 0xab 7M 512",
			"read -P 0xab 7M 512",
		}},
		{"1 TiB", 1 << 40, []string{
			"write -P 0xab 0 64k",
			"write -P 0xef 1023G 1M",
			"write -P 0x22 1099511562240 65536", // the last cluster
			"read -P 0xab 0 64k",
			"read -P 0x11 64k 64k",
			"read -P 0xef 1023G 1M",
			"read -P 0x22 1099511562240 65536",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ov := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".qcow2")
			if err := writeQcow2Overlay(ov, raw, "raw", tt.size); err != nil {
				t.Fatal(err)
			}
			args := []string{"-f", "qcow2"}
			for _, c := range tt.cmds {
				args = append(args, "-c", c)
			}
			out := runTool(t, "qemu-io", append(args, ov)...)
			// qemu-io reports a pattern mismatch on stdout and still exits 0.
			if bytes.Contains(out, []byte("failed")) || bytes.Contains(out, []byte("error")) {
				t.Fatalf("qemu-io:\n%s", out)
			}
			imgCheck(t, ov)
			// Open again: what was written is still there.
			out = runTool(t, "qemu-io", "-f", "qcow2", "-r", "-c", "read -P "+patternOf(tt.cmds)+" "+rangeOf(tt.cmds), ov)
			if bytes.Contains(out, []byte("Pattern verification failed")) {
				t.Fatalf("after reopening:\n%s", out)
			}
			if sum() != before {
				t.Fatal("the base changed")
			}
		})
	}
}

// patternOf and rangeOf return the pattern and range of the first write.
func patternOf(cmds []string) string {
	for _, c := range cmds {
		if f := strings.Fields(c); f[0] == "write" {
			return f[2]
		}
	}
	return ""
}

func rangeOf(cmds []string) string {
	for _, c := range cmds {
		if f := strings.Fields(c); f[0] == "write" {
			return f[3] + " " + f[4]
		}
	}
	return ""
}

// BenchmarkOverlay writes an overlay as the driver does; compare with
// BenchmarkOverlayQemuImg.
func BenchmarkOverlay(b *testing.B) {
	dir := b.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	ov := filepath.Join(dir, "disk.qcow2")
	for b.Loop() {
		if err := writeQcow2Overlay(ov, base, "raw", 10<<30); err != nil {
			b.Fatal(err)
		}
		os.Remove(ov)
	}
}

// BenchmarkOverlayQemuImg is the old start path: qemu-img create.
func BenchmarkOverlayQemuImg(b *testing.B) {
	qemuImg := needTool(b, "qemu-img")
	dir := b.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	ov := filepath.Join(dir, "disk.qcow2")
	for b.Loop() {
		runTool(b, qemuImg, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", ov, fmt.Sprint(10<<30))
		os.Remove(ov)
	}
}
