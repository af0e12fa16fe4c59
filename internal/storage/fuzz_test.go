package storage

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDecodeExports: exports.json is read back at every Start; whatever
// is in the file, decoding never panics, and what it accepts holds only
// valid names and survives a round trip.
func FuzzDecodeExports(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeExports(data)
		if err != nil {
			return
		}
		for name := range m {
			if ValidateName("name", name) != nil {
				t.Fatalf("accepted invalid name %q", name)
			}
		}
		enc := encodeExports(m)
		back, err := decodeExports(enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if !bytes.Equal(encodeExports(back), enc) {
			t.Fatalf("round trip changed %s", enc)
		}
	})
}

// FuzzParseQcow2Size: a volume file's header never panics the parser,
// and an accepted size is not negative.
func FuzzParseQcow2Size(f *testing.F) {
	f.Fuzz(func(t *testing.T, hdr []byte) {
		size, err := parseQcow2Size(hdr)
		if err == nil && size < 0 {
			t.Fatalf("size %d", size)
		}
	})
}

// FuzzValidateName: an accepted name is safe as a file name and an
// export name.
func FuzzValidateName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName("name", name) != nil {
			return
		}
		if name == "" || len(name) > MaxNameLen || strings.ContainsAny(name, "/.,= \x00") || strings.ToLower(name) != name {
			t.Fatalf("accepted %q", name)
		}
	})
}
