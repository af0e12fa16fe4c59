package image

import (
	"vgrid/internal/testenv"

	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// fakeBzImage wraps payload in a minimal bzImage setup header.
func fakeBzImage(payload []byte) []byte {
	const setupSects, payloadOffset = 4, 100
	img := make([]byte, (setupSects+1)*512+payloadOffset)
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x248:], payloadOffset)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, payload...)
	return append(img, []byte("trailing setup data that is not part of the payload")...)
}

func sizeAppend(stream []byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(append([]byte(nil), stream...), uint32(n))
}

func testKernelData() []byte {
	var b bytes.Buffer
	b.Write(magicELF)
	for i := 0; b.Len() < 12<<20; i++ { // > 8 MiB: more than one legacy block
		b.WriteString("kernel text block ")
		b.WriteByte(byte(i))
		b.WriteByte(byte(i >> 8))
	}
	return b.Bytes()
}

func TestDecompressKernel(t *testing.T) {
	data := testKernelData()

	var lz bytes.Buffer
	zw := lz4.NewWriter(&lz)
	if err := zw.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(data)
	gw.Close()

	tests := []struct {
		name    string
		img     []byte
		wantErr bool
	}{
		{"lz4 legacy", fakeBzImage(sizeAppend(lz.Bytes(), len(data))), false},
		{"gzip", fakeBzImage(gz.Bytes()), false},
		{"size mismatch", fakeBzImage(sizeAppend(lz.Bytes(), len(data)+1)), true},
		{"unknown compression", fakeBzImage(sizeAppend([]byte("BZh91AY&SY"), 10)), true},
		{"not a bzImage", []byte("hello, not a kernel"), true},
	}
	if xz, err := exec.LookPath("xz"); err == nil {
		out, err := exec.Command("sh", "-c", "head -c 2000000 /dev/zero | "+xz+" --check=crc32 -c").Output()
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name    string
			img     []byte
			wantErr bool
		}{"xz", fakeBzImage(sizeAppend(out, 2000000)), false})
	}
	for _, tt := range tests {
		got, err := decompressKernel(context.Background(), tt.img)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if err != nil {
			continue
		}
		want := data
		if tt.name == "xz" {
			want = make([]byte, 2000000)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes, want %d identical bytes", tt.name, len(got), len(want))
		}
	}
}

func TestExtractRealKernel(t *testing.T) {
	path, _, err := FindKernel(DefaultBootDir)
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	bz, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vmlinux, err := ExtractVmlinux(context.Background(), bz)
	if err != nil {
		t.Fatal(err)
	}
	if len(vmlinux) < len(bz) {
		t.Errorf("vmlinux %d bytes is smaller than the bzImage (%d)", len(vmlinux), len(bz))
	}
	if err := checkPVH(bz); err == nil {
		t.Error("checkPVH accepted a bzImage")
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64", 0},
		{"6.1.0-9-cloud-amd64", "6.1.0-56-cloud-amd64", -1},
		{"6.10.0-1-cloud-amd64", "6.9.0-5-cloud-amd64", 1},
		{"6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64+1", -1},
		{"5.10.0-30-cloud-amd64", "6.1.0-1-cloud-amd64", -1},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if (got < 0) != (tt.want < 0) || (got > 0) != (tt.want > 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign of %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestFindKernel(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		want    string
		wantErr bool
	}{
		{"newest", []string{"vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.1.0-56-cloud-amd64", "vmlinuz-6.1.0-60-amd64"}, "6.1.0-56-cloud-amd64", false},
		{"no cloud kernel", []string{"vmlinuz-6.1.0-60-amd64"}, "", true},
		{"empty", nil, "", true},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		for _, f := range tt.files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		path, release, err := FindKernel(dir)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if err == nil && (release != tt.want || path != filepath.Join(dir, "vmlinuz-"+tt.want)) {
			t.Errorf("%s: got %s %s, want %s", tt.name, path, release, tt.want)
		}
	}
}
