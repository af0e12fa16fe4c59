package agent

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
)

func TestExt4Geometry(t *testing.T) {
	mk := func(magic uint16, logBS, lo, hi uint32, is64 bool) []byte {
		sb := make([]byte, 0x200)
		binary.LittleEndian.PutUint32(sb[0x4:], lo)
		binary.LittleEndian.PutUint32(sb[0x18:], logBS)
		binary.LittleEndian.PutUint16(sb[0x38:], magic)
		if is64 {
			binary.LittleEndian.PutUint32(sb[0x60:], 0x80)
		}
		binary.LittleEndian.PutUint32(sb[0x150:], hi)
		return sb
	}
	tests := []struct {
		name       string
		sb         []byte
		blocks, bs uint64
		wantErr    bool
	}{
		{"4k blocks", mk(0xEF53, 2, 65536, 0, false), 65536, 4096, false},
		{"1k blocks", mk(0xEF53, 0, 262144, 0, false), 262144, 1024, false},
		{"64bit high word", mk(0xEF53, 2, 5, 1, true), 1<<32 | 5, 4096, false},
		{"high word ignored without 64bit", mk(0xEF53, 2, 5, 1, false), 5, 4096, false},
		{"not ext4", mk(0x1234, 2, 1, 0, false), 0, 0, true},
		{"short", make([]byte, 16), 0, 0, true},
	}
	for _, tt := range tests {
		blocks, bs, err := ext4Geometry(tt.sb)
		if (err != nil) != tt.wantErr || blocks != tt.blocks || bs != tt.bs {
			t.Errorf("%s: got %d blocks of %d (%v), want %d of %d (error %v)", tt.name, blocks, bs, err, tt.blocks, tt.bs, tt.wantErr)
		}
	}
}

// growRootFiles is a fake guest whose /dev/vda holds an ext4 superblock of
// blocks 4 KiB blocks (32768 a group) and whose kernel sees the disk at
// sectors.
func growRootFiles(t *testing.T, blocks uint64, sectors int64) string {
	t.Helper()
	dev := make([]byte, 1024+0x200)
	sb := dev[1024:]
	binary.LittleEndian.PutUint32(sb[0x4:], uint32(blocks))
	binary.LittleEndian.PutUint32(sb[0x18:], 2)
	binary.LittleEndian.PutUint32(sb[0x20:], 32768)
	binary.LittleEndian.PutUint16(sb[0x38:], 0xEF53)
	root := fakeRoot(t, map[string]string{"sys/block/vda/size": strconv.FormatInt(sectors, 10) + "\n"})
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dev/vda"), dev, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestGrowFS(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name      string
		blocks    uint64 // the filesystem's, 4 KiB each
		sectors   int64  // the disk's as the kernel sees it at first
		later     int64  // the disk's after 50 ms (0: no change)
		size      int64  // asked for
		want      proto.GrowFSResult
		wantErr   string
		wantAfter time.Duration // at least this long
	}{
		{name: "already full", blocks: gib / 4096, sectors: gib / 512, size: gib,
			want: proto.GrowFSResult{DiskBytes: gib, FSBytes: gib}},
		{name: "waits for the kernel to see the size", blocks: 2 * gib / 4096, sectors: gib / 512, later: 2 * gib / 512, size: 2 * gib,
			want: proto.GrowFSResult{DiskBytes: 2 * gib, FSBytes: 2 * gib}, wantAfter: 50 * time.Millisecond},
		{name: "the size never comes", blocks: gib / 4096, sectors: gib / 512, size: 2 * gib,
			wantErr: "has not reached the guest", wantAfter: 300 * time.Millisecond},
		// A file is not a mounted ext4: the resize ioctl fails, and says so.
		{name: "grow fails", blocks: gib / 4096, sectors: 2 * gib / 512, size: 2 * gib,
			wantErr: "grow root filesystem from 262144 to 524288 blocks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := growRootFiles(t, tt.blocks, tt.sectors)
			if tt.later > 0 {
				go func() {
					time.Sleep(50 * time.Millisecond)
					replaceFile(t, filepath.Join(root, "sys/block/vda/size"), strconv.FormatInt(tt.later, 10))
				}()
			}
			start := time.Now()
			got, err := GrowFS(root, tt.size, 300*time.Millisecond)
			if took := time.Since(start); took < tt.wantAfter {
				t.Errorf("returned after %s, want at least %s", took, tt.wantAfter)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %+v, %v, want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}
