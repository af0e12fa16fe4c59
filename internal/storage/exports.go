package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// exportsVersion is the version of exports.json this package writes.
const exportsVersion = 1

// exportsFile is exports.json: the exports a Daemon serves.
type exportsFile struct {
	Version int            `json:"version"`
	Exports []exportRecord `json:"exports"`
}

type exportRecord struct {
	Name     string `json:"name"`
	ReadOnly bool   `json:"read_only"`
}

// decodeExports parses exports.json strictly (unknown fields, trailing
// data, invalid or repeated names are errors) into name → read-only.
func decodeExports(data []byte) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f exportsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("exports file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("exports file: data after the JSON object")
	}
	if f.Version != exportsVersion {
		return nil, fmt.Errorf("exports file: version: %d, want %d", f.Version, exportsVersion)
	}
	out := make(map[string]bool, len(f.Exports))
	for i, e := range f.Exports {
		if err := ValidateName(fmt.Sprintf("exports file: exports[%d].name", i), e.Name); err != nil {
			return nil, err
		}
		if _, dup := out[e.Name]; dup {
			return nil, fmt.Errorf("exports file: exports[%d].name: %q is listed twice", i, e.Name)
		}
		out[e.Name] = e.ReadOnly
	}
	return out, nil
}

// encodeExports is the inverse of decodeExports (names sorted).
func encodeExports(m map[string]bool) []byte {
	f := exportsFile{Version: exportsVersion, Exports: []exportRecord{}}
	for name, ro := range m {
		f.Exports = append(f.Exports, exportRecord{Name: name, ReadOnly: ro})
	}
	sort.Slice(f.Exports, func(i, j int) bool { return f.Exports[i].Name < f.Exports[j].Name })
	b, _ := json.MarshalIndent(f, "", "  ") // plain structs: cannot fail
	return append(b, '\n')
}

// loadExports reads path; a missing file is no exports.
func loadExports(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := decodeExports(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// writeFileAtomic writes data to path through a synced temporary file in
// the same directory and a rename, then syncs the directory: after a
// crash path holds either the old content or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	return syncDir(dir)
}

// syncDir makes a directory's entries (a rename, a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
