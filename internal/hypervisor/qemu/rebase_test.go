package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetQcow2Backing rebases overlays (ours, and ones qemu-img made,
// which carry a feature name table) that qemu-io wrote to, onto a copy of
// their base at another path, as Adopt does: qemu-img then names the new
// backing file and format, finds nothing wrong, and the data reads the
// same, the guest's writes and the base's; as qemu-img rebase -u does.
func TestSetQcow2Backing(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	dir := t.TempDir()
	base := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{0x11}, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldBase := base("old-base.raw")
	longDir := filepath.Join(dir, strings.Repeat("d", 200), strings.Repeat("e", 200))
	if err := os.MkdirAll(longDir, 0o755); err != nil {
		t.Fatal(err)
	}
	newBases := []string{
		base("b.raw"),
		filepath.Join(longDir, "new-base-with-a-much-longer-name.raw"),
	}
	if err := os.Link(newBases[0], newBases[1]); err != nil {
		t.Fatal(err)
	}
	qbase := filepath.Join(dir, "base.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", qbase, "4M")
	runTool(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x22 0 1M", qbase)
	qcopy := filepath.Join(dir, "base-copy.qcow2")
	runTool(t, "cp", qbase, qcopy)

	for _, tt := range []struct {
		name, made, base, format, newBase string
	}{
		{"ours-raw-short", "ours", oldBase, "raw", newBases[0]},
		{"ours-raw-long", "ours", oldBase, "raw", newBases[1]},
		{"qemu-img-raw", "qemu-img", oldBase, "raw", newBases[1]},
		{"qemu-img-raw-shorter", "qemu-img", newBases[1], "raw", newBases[0]},
		{"ours-qcow2", "ours", qbase, "qcow2", qcopy},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ov := filepath.Join(dir, tt.name+".qcow2")
			if tt.made == "ours" {
				if err := writeQcow2Overlay(ov, tt.base, tt.format, 0); err != nil {
					t.Fatal(err)
				}
			} else {
				runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", tt.base, "-F", tt.format, ov)
			}
			runTool(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 2M 64k", ov)
			if err := setQcow2Backing(ov, tt.newBase, tt.format); err != nil {
				t.Fatal(err)
			}
			imgCheck(t, ov)
			info := imgInfo(t, ov)
			if info.BackingFilename != tt.newBase || info.BackingFormat != tt.format {
				t.Errorf("backing: got %q, %q; want %q, %q", info.BackingFilename, info.BackingFormat, tt.newBase, tt.format)
			}
			want := "0x11"
			if tt.format == "qcow2" {
				want = "0x22" // the base's own write
			}
			for _, cmd := range []string{"read -P 0x33 2M 64k", "read -P " + want + " 0 64k", "read -P 0x11 3M 64k"} {
				if tt.format == "qcow2" && strings.HasSuffix(cmd, "3M 64k") {
					cmd = "read -P 0 3M 64k"
				}
				out := runTool(t, "qemu-io", "-f", "qcow2", "-r", "-c", cmd, ov)
				if strings.Contains(string(out), "Pattern verification failed") {
					t.Errorf("%s:\n%s", cmd, out)
				}
			}
			// qemu-img rebase -u of the same overlay gives the same answer.
			theirs := filepath.Join(dir, tt.name+"-theirs.qcow2")
			runTool(t, "cp", ov, theirs)
			runTool(t, "qemu-img", "rebase", "-u", "-b", tt.base, "-F", tt.format, theirs)
			runTool(t, "qemu-img", "rebase", "-u", "-b", tt.newBase, "-F", tt.format, theirs)
			if got := imgInfo(t, theirs); got.BackingFilename != info.BackingFilename || got.BackingFormat != info.BackingFormat ||
				got.VirtualSize != info.VirtualSize {
				t.Errorf("qemu-img rebase -u: got %+v, we got %+v", got, info)
			}
		})
	}
}

func TestSetQcow2BackingErrors(t *testing.T) {
	dir := t.TempDir()
	ov := filepath.Join(dir, "ov.qcow2")
	if err := writeQcow2Overlay(ov, "/base", "raw", 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := setQcow2Backing(ov, strings.Repeat("x", qcow2MaxBackingName+1), "raw"); err == nil {
		t.Error("a backing name over 1023 bytes: no error")
	}
	if err := setQcow2Backing(ov, "/b", "vmdk"); err == nil {
		t.Error("backing format vmdk: no error")
	}
	notQcow2 := filepath.Join(dir, "raw")
	if err := os.WriteFile(notQcow2, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setQcow2Backing(notQcow2, "/b", "raw"); err == nil {
		t.Error("a raw file: no error")
	}
	// A name of the longest length fits, and reads back.
	long := "/" + strings.Repeat("y", qcow2MaxBackingName-1)
	if err := setQcow2Backing(ov, long, "raw"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(ov)
	if !bytes.Contains(b[:qcow2ClusterSize], []byte(long)) {
		t.Error("the long name is not in the first cluster")
	}
}
