package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"vgrid/api"
)

// What a push is checked for before it is kept: its bytes received and
// hashed, its header read in Go (no backing file, data file or
// encryption), then qemu-img info for its format and virtual size.

// receiveBlob copies exactly size bytes of body into a new temporary file
// of dir while hashing them. It returns the file's path and its hex
// SHA-256; on error the file is removed. A body shorter or longer than
// size is refused.
func receiveBlob(dir string, body io.Reader, size int64) (string, string, error) {
	f, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return "", "", fmt.Errorf("blob directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for n < size {
		want := int64(len(buf))
		if size-n < want {
			want = size - n
		}
		k, rerr := body.Read(buf[:want])
		if k > 0 {
			h.Write(buf[:k])
			if _, werr := f.Write(buf[:k]); werr != nil {
				return "", "", fmt.Errorf("write upload: %w", werr)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if errors.Is(rerr, context.Canceled) {
				return "", "", rerr
			}
			return "", "", invalid("invalid image push", api.FieldError{Field: "body",
				Reason: fmt.Sprintf("reading failed after %d of %d bytes: %v", n, size, rerr)})
		}
	}
	if n < size {
		return "", "", invalid("invalid image push", api.FieldError{Field: "body",
			Reason: fmt.Sprintf("ended after %d bytes, %d announced", n, size)})
	}
	var one [1]byte
	if k, _ := io.ReadFull(body, one[:]); k > 0 {
		return "", "", invalid("invalid image push", api.FieldError{Field: "body",
			Reason: fmt.Sprintf("longer than the %d bytes announced", size)})
	}
	if err := f.Sync(); err != nil {
		return "", "", fmt.Errorf("write upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("write upload: %w", err)
	}
	ok = true
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// imageInfo is what the control plane takes from qemu-img info.
type imageInfo struct {
	Format      string
	VirtualSize int64
	Backing     string // backing file, "" when none
	DataFile    string // a qcow2's external data file, "" when none
}

// parseImageInfo decodes the JSON of `qemu-img info --output=json`.
func parseImageInfo(b []byte) (imageInfo, error) {
	var raw struct {
		Format          string `json:"format"`
		VirtualSize     *int64 `json:"virtual-size"`
		BackingFilename string `json:"backing-filename"`
		FullBacking     string `json:"full-backing-filename"`
		FormatSpecific  *struct {
			Type string `json:"type"`
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return imageInfo{}, fmt.Errorf("qemu-img info: %w", err)
	}
	if raw.Format == "" {
		return imageInfo{}, errors.New("qemu-img info: no format")
	}
	if raw.VirtualSize == nil || *raw.VirtualSize < 0 {
		return imageInfo{}, errors.New("qemu-img info: no virtual size")
	}
	out := imageInfo{Format: raw.Format, VirtualSize: *raw.VirtualSize, Backing: raw.BackingFilename}
	if out.Backing == "" {
		out.Backing = raw.FullBacking
	}
	if fs := raw.FormatSpecific; fs != nil {
		out.DataFile = fs.Data.DataFile
	}
	return out, nil
}

// inspectImage checks an uploaded file's header itself (formats that
// would make qemu-img open other files are refused before it runs), then
// asks qemu-img what the file is.
func inspectImage(ctx context.Context, path string) (imageInfo, error) {
	head := make([]byte, 4096)
	f, err := os.Open(path)
	if err != nil {
		return imageInfo{}, err
	}
	k, _ := io.ReadFull(f, head)
	f.Close()
	if fe := sniffHeader(head[:k]); len(fe) > 0 {
		return imageInfo{}, invalid("invalid image push", fe...)
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuImg, "info", "--output=json", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limitedBuffer{b: &stdout, max: 1 << 20}
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	if err := cmd.Run(); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return imageInfo{}, ctx.Err()
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return imageInfo{}, invalid("invalid image push", api.FieldError{Field: "body",
				Reason: fmt.Sprintf("qemu-img info took longer than %s on it", inspectTimeout)})
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return imageInfo{}, fmt.Errorf("run %s: %w", qemuImg, err)
		}
		msg := strings.TrimSpace(strings.ReplaceAll(stderr.String(), path, "the upload"))
		return imageInfo{}, invalid("invalid image push", api.FieldError{Field: "body",
			Reason: "not a readable disk image: qemu-img: " + msg})
	}
	info, err := parseImageInfo(stdout.Bytes())
	if err != nil {
		return imageInfo{}, invalid("invalid image push", api.FieldError{Field: "body", Reason: "not a readable disk image: " + err.Error()})
	}
	return info, nil
}

// checkImageInfo compares what qemu-img found with what was declared.
func checkImageInfo(info imageInfo, format string, size int64) []api.FieldError {
	var f fieldErrs
	if info.Format != format {
		f.add("format", "the file is a %s image, not %s", quoteShort(info.Format), format)
	}
	if info.Backing != "" {
		f.add("body", "an image with a backing file (%s) is refused: it could read files of the hosts; flatten it first (qemu-img convert)", quoteShort(info.Backing))
	}
	if info.DataFile != "" {
		f.add("body", "an image with an external data file (%s) is refused: it could read files of the hosts", quoteShort(info.DataFile))
	}
	switch {
	case info.VirtualSize <= 0:
		f.add("body", "the image's virtual size is 0")
	case info.VirtualSize > int64(MaxImageMinDisk):
		f.add("body", "the image's virtual size %d is more than 1024Ti", info.VirtualSize)
	case format == "raw" && info.Format == "raw" && info.VirtualSize != size:
		f.add("body", "a raw image of %d bytes has a virtual size of %d", size, info.VirtualSize)
	}
	return f
}

// sniffHeader refuses, from its first bytes alone, a file that qemu-img
// would open together with other files: a qcow2 with a backing file, an
// external data file or encryption; and the formats whose headers or
// descriptors name other files (QED, VMDK, VHDX). It is pure.
func sniffHeader(h []byte) []api.FieldError {
	var f fieldErrs
	be32 := func(off int) uint32 {
		if len(h) < off+4 {
			return 0
		}
		return uint32(h[off])<<24 | uint32(h[off+1])<<16 | uint32(h[off+2])<<8 | uint32(h[off+3])
	}
	be64 := func(off int) uint64 { return uint64(be32(off))<<32 | uint64(be32(off+4)) }
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")):
		version := be32(4)
		if version < 2 {
			f.add("format", "a qcow (version %d) image is not accepted: convert it to qcow2 or raw", version)
			break
		}
		if len(h) < 72 {
			f.add("body", "a qcow2 header cut short (%d bytes)", len(h))
			break
		}
		if be64(8) != 0 || be32(16) != 0 {
			f.add("body", "a qcow2 image with a backing file is refused: it could read files of the hosts; flatten it first (qemu-img convert)")
		}
		if be32(32) != 0 {
			f.add("body", "an encrypted qcow2 image is not accepted")
		}
		if version >= 3 && len(h) >= 80 && be64(72)&(1<<2) != 0 {
			f.add("body", "a qcow2 image with an external data file is refused: it could read files of the hosts")
		}
	case bytes.HasPrefix(h, []byte("QED\x00")):
		f.add("format", "the file is a qed image, not accepted (raw or qcow2)")
	case bytes.HasPrefix(h, []byte("KDMV")), bytes.HasPrefix(h, []byte("COWD")),
		bytes.Contains(h[:min(len(h), 512)], []byte("# Disk DescriptorFile")):
		f.add("format", "the file is a vmdk image, not accepted (raw or qcow2)")
	case bytes.HasPrefix(h, []byte("vhdxfile")):
		f.add("format", "the file is a vhdx image, not accepted (raw or qcow2)")
	}
	return f
}

// limitedBuffer keeps at most max bytes written to it and drops the rest.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
