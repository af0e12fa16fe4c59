package agent

import (
	"encoding/binary"
	"testing"
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
