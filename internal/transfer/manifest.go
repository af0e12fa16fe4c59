package transfer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// entry is a file of a manifest, as on the wire.
type entry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type manifest struct {
	Files *[]entry `json:"files"`
}

const (
	maxManifestBytes = 1 << 20
	maxFiles         = 4096
	maxFileSize      = 1 << 50
)

// decodeManifest decodes and validates a manifest: a JSON object whose
// "files" is a list of {name, size, sha256}. Unknown fields are ignored
// (a newer source may add some); everything else is checked: names
// (checkNames), sizes, sums, the number of files, no trailing data.
func decodeManifest(data []byte) ([]entry, error) {
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("manifest: larger than %d bytes", maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var m manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("manifest: trailing data after the JSON object")
	}
	if m.Files == nil {
		return nil, errors.New(`manifest: no "files" list`)
	}
	files := *m.Files
	if len(files) > maxFiles {
		return nil, fmt.Errorf("manifest: %d files, more than %d", len(files), maxFiles)
	}
	names := make([]string, len(files))
	for i, e := range files {
		if err := ValidName(e.Name); err != nil {
			return nil, fmt.Errorf("manifest: files[%d]: %w", i, err)
		}
		if e.Size < 0 || e.Size > maxFileSize {
			return nil, fmt.Errorf("manifest: file %q: size %d out of range", e.Name, e.Size)
		}
		if !validSum(e.SHA256) {
			return nil, fmt.Errorf("manifest: file %q: sha256 %.80q is not 64 lowercase hex digits", e.Name, e.SHA256)
		}
		names[i] = e.Name
	}
	if err := checkNames(names); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return files, nil
}

func encodeManifest(files []entry) ([]byte, error) {
	if files == nil {
		files = []entry{}
	}
	return json.Marshal(manifest{Files: &files})
}

func validSum(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
