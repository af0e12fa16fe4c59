package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pierrec/lz4/v4"
)

// Compressed payload magics.
var (
	magicLZ4Legacy = []byte{0x02, 0x21, 0x4c, 0x18}
	magicXZ        = []byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}
	magicGzip      = []byte{0x1f, 0x8b, 0x08}
	magicELF       = []byte{0x7f, 'E', 'L', 'F'}
)

// FindKernel returns the newest /boot/vmlinuz-*-cloud-amd64 (under bootDir)
// and its release string (the part after "vmlinuz-").
func FindKernel(bootDir string) (path, release string, err error) {
	matches, err := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*-cloud-amd64"))
	if err != nil {
		return "", "", fmt.Errorf("find kernel: %w", err)
	}
	if len(matches) == 0 {
		return "", "", fmt.Errorf("find kernel: no %s/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)", bootDir)
	}
	sort.Slice(matches, func(i, j int) bool {
		return compareVersions(KernelRelease(matches[i]), KernelRelease(matches[j])) < 0
	})
	path = matches[len(matches)-1]
	return path, KernelRelease(path), nil
}

// KernelRelease returns the release of a kernel image named vmlinuz-<release>.
func KernelRelease(path string) string {
	return strings.TrimPrefix(filepath.Base(path), "vmlinuz-")
}

// compareVersions compares release strings such as "6.1.0-56-cloud-amd64"
// chunk by chunk, numbers numerically.
func compareVersions(a, b string) int {
	ca, cb := versionChunks(a), versionChunks(b)
	for i := 0; i < len(ca) && i < len(cb); i++ {
		x, errx := strconv.Atoi(ca[i])
		y, erry := strconv.Atoi(cb[i])
		switch {
		case errx == nil && erry == nil:
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
		case ca[i] != cb[i]:
			return strings.Compare(ca[i], cb[i])
		}
	}
	return len(ca) - len(cb)
}

func versionChunks(s string) []string {
	var out []string
	cur := ""
	digit := false
	for i, r := range s {
		d := r >= '0' && r <= '9'
		if i > 0 && d != digit {
			out = append(out, cur)
			cur = ""
		}
		cur += string(r)
		digit = d
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// bzPayload returns the compressed kernel inside a bzImage, using the
// setup header (boot protocol 2.08+: payload_offset and payload_length),
// and the uncompressed size that the build appends as its last 4 bytes.
func bzPayload(img []byte) (payload []byte, size uint32, err error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, 0, errors.New("not a bzImage (no HdrS header)")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, 0, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if n < 8 || start < 0 || start+n > len(img) {
		return nil, 0, fmt.Errorf("payload %d+%d outside the %d-byte image", start, n, len(img))
	}
	payload = img[start : start+n]
	return payload, binary.LittleEndian.Uint32(payload[n-4:]), nil
}

// ExtractVmlinux returns the uncompressed ELF kernel (vmlinux) inside a
// bzImage. LZ4 (legacy frame, as the Debian cloud kernel uses) and gzip are
// decoded in Go; xz is decoded with "xz -dc". The result must be an ELF
// file with a PVH entry note so that QEMU can boot it directly.
func ExtractVmlinux(ctx context.Context, bzImage []byte) ([]byte, error) {
	out, err := decompressKernel(ctx, bzImage)
	if err != nil {
		return nil, fmt.Errorf("extract vmlinux: %w", err)
	}
	if err := checkPVH(out); err != nil {
		return nil, fmt.Errorf("extract vmlinux: %w", err)
	}
	return out, nil
}

func decompressKernel(ctx context.Context, img []byte) ([]byte, error) {
	payload, size, err := bzPayload(img)
	if err != nil {
		// Not a parseable bzImage: look for a known magic anywhere and let
		// the external tool stop at the end of the stream.
		return scanAndDecompress(ctx, img, err)
	}
	var out []byte
	switch {
	case bytes.HasPrefix(payload, magicLZ4Legacy):
		stream := payload[:len(payload)-4]
		out, err = io.ReadAll(lz4.NewReader(bytes.NewReader(stream)))
		if err != nil || uint32(len(out)) != size {
			out, err = runFilter(ctx, stream, "lz4", "-dc")
		}
	case bytes.HasPrefix(payload, magicXZ):
		out, err = runFilter(ctx, payload[:len(payload)-4], "xz", "-dc")
	case bytes.HasPrefix(payload, magicGzip):
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(payload)); err == nil {
			out, err = io.ReadAll(zr)
		}
	default:
		return nil, fmt.Errorf("unsupported kernel compression (payload starts % x)", payload[:min(6, len(payload))])
	}
	if err != nil {
		return nil, err
	}
	if uint32(len(out)) != size {
		return nil, fmt.Errorf("decompressed %d bytes, the image says %d", len(out), size)
	}
	return out, nil
}

func scanAndDecompress(ctx context.Context, img []byte, why error) ([]byte, error) {
	for _, c := range []struct {
		magic []byte
		tool  string
	}{{magicLZ4Legacy, "lz4"}, {magicXZ, "xz"}} {
		i := bytes.Index(img, c.magic)
		if i < 0 {
			continue
		}
		out, _ := runFilter(ctx, img[i:], c.tool, "-dc") // trailing bytes make the tool fail
		if bytes.HasPrefix(out, magicELF) {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%v, and no lz4 or xz stream found", why)
}

// runFilter pipes in through an external decompressor.
func runFilter(ctx context.Context, in []byte, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// checkPVH verifies that b is an x86-64 ELF kernel with the Xen PVH entry
// note (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU needs to boot it directly.
func checkPVH(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF kernel: %w", err)
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("kernel is %v, want x86-64", f.Machine)
	}
	const physEntry = 18 // XEN_ELFNOTE_PHYS32_ENTRY
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(notes) >= 12 {
			nameSz := int(binary.LittleEndian.Uint32(notes[0:]))
			descSz := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + align4(nameSz)
			end := nameEnd + align4(descSz)
			if end > len(notes) || nameSz > nameEnd-12 {
				break
			}
			if typ == physEntry && strings.TrimRight(string(notes[12:12+nameSz]), "\x00") == "Xen" {
				return nil
			}
			notes = notes[end:]
		}
	}
	return errors.New("kernel has no PVH entry note (needs CONFIG_PVH=y)")
}

func align4(n int) int { return (n + 3) &^ 3 }
