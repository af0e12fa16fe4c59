package transfer

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzManifest decodes arbitrary manifests: a manifest accepted names only
// files inside the staging directory, without collisions, and survives a
// round trip.
func FuzzManifest(f *testing.F) {
	const sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for _, s := range []string{
		`{"files":[]}`,
		`{"files":[{"name":"memory.bin","size":0,"sha256":"` + sum + `"}]}`,
		`{"files":[{"name":"disk/overlay.qcow2","size":67108864,"sha256":"` + sum + `"},{"name":"memory.bin","size":8388608,"sha256":"` + sum + `"}],"extra":1}`,
		`{"files":[{"name":"../x","size":1,"sha256":"` + sum + `"}]}`,
		`{"files":[{"name":"a","size":1,"sha256":"` + sum + `"},{"name":"a/b","size":1,"sha256":"` + sum + `"}]}`,
		`{"files":null}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeManifest(data)
		if err != nil {
			return
		}
		dir := filepath.FromSlash("/staging/dir")
		names := make([]string, len(entries))
		for i, e := range entries {
			if err := ValidName(e.Name); err != nil {
				t.Fatalf("accepted a bad name: %v", err)
			}
			for _, p := range []string{e.Name, e.Name + partSuffix} {
				full := filepath.Join(dir, filepath.FromSlash(p))
				if !strings.HasPrefix(full, dir+string(filepath.Separator)) || filepath.Clean(full) != full {
					t.Fatalf("name %q lands at %s", e.Name, full)
				}
			}
			if e.Size < 0 || !validSum(e.SHA256) {
				t.Fatalf("accepted %+v", e)
			}
			names[i] = e.Name
		}
		if err := checkNames(names); err != nil {
			t.Fatalf("accepted colliding names: %v", err)
		}
		enc, err := encodeManifest(entries)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeManifest(enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if len(entries) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(entries, again) {
			t.Fatalf("round trip: %+v != %+v", entries, again)
		}
	})
}
