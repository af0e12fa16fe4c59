package image

import (
	"bytes"
	"fmt"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// readNewc parses a newc archive back into entries (test helper).
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: %v", off, err)
		}
		return uint32(v)
	}
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		if field(2) != 0 || field(3) != 0 || field(5) != 0 {
			t.Fatalf("uid/gid/mtime not zero at %d", off)
		}
		mode, size, major, minor, nameSize := field(1), int(field(6)), field(9), field(10), int(field(11))
		name := string(b[off+110 : off+110+nameSize-1])
		off += 110 + nameSize
		off += (4 - off%4) % 4
		data := b[off : off+size]
		off += size
		off += (4 - off%4) % 4
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{Name: name, Mode: mode, Data: append([]byte(nil), data...), RdevMajor: major, RdevMinor: minor})
	}
}

func TestWriteNewc(t *testing.T) {
	tests := []struct {
		name    string
		in      []cpioEntry
		want    []string // "name mode(octal) len"
		wantErr bool
	}{
		{
			name: "sorted, dirs first",
			in: []cpioEntry{
				fileEntry("bin/busybox", 0o755, []byte("abc")),
				symlinkEntry("bin/sh", "busybox"),
				dirEntry("bin", 0o755),
				fileEntry("init", 0o755, []byte("#!/bin/sh\n")),
				{Name: "dev/console", Mode: modeCharDev | 0o600, RdevMajor: 5, RdevMinor: 1},
				dirEntry("dev", 0o755),
			},
			want: []string{"bin 40755 0", "bin/busybox 100755 3", "bin/sh 120777 7",
				"dev 40755 0", "dev/console 20600 0 5:1", "init 100755 10"},
		},
		{name: "empty", in: nil, want: nil},
		{name: "duplicate", in: []cpioEntry{dirEntry("a", 0o755), dirEntry("a", 0o700)}, wantErr: true},
		{name: "absolute", in: []cpioEntry{dirEntry("/a", 0o755)}, wantErr: true},
		{name: "dir with data", in: []cpioEntry{{Name: "d", Mode: modeDir | 0o755, Data: []byte("x")}}, wantErr: true},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		err := writeNewc(&b, tt.in)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: err = %v", tt.name, err)
		}
		if err != nil {
			continue
		}
		if b.Len()%4 != 0 {
			t.Errorf("%s: length %d not aligned", tt.name, b.Len())
		}
		var got []string
		for _, e := range readNewc(t, b.Bytes()) {
			s := fmt.Sprintf("%s %o %d", e.Name, e.Mode, len(e.Data))
			if e.RdevMajor != 0 {
				s += fmt.Sprintf(" %d:%d", e.RdevMajor, e.RdevMinor)
			}
			got = append(got, s)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		// The system cpio agrees, when there is one.
		if cpio, err := exec.LookPath("cpio"); err == nil && len(tt.want) > 0 {
			cmd := exec.Command(cpio, "-it", "--quiet")
			cmd.Stdin = bytes.NewReader(b.Bytes())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: cpio -it: %v", tt.name, err)
			}
			var names []string
			for _, w := range tt.want {
				names = append(names, strings.Fields(w)[0])
			}
			if got := strings.Fields(string(out)); !reflect.DeepEqual(got, names) {
				t.Errorf("%s: cpio -it lists %q, want %q", tt.name, got, names)
			}
		}
	}
}
