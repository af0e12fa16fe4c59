package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is
// valid, stays valid, and survives a round trip through JSON and YAML.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(goodYAML))
	for _, lease := range []string{
		"lease: {kind: best-effort}\n",
		"lease: {kind: best-effort, preemptible: false}\n",
		"lease: {kind: deadline, deadline: \"2026-11-24T18:00:00+02:00\"}\n",
		"lease: {kind: reservation}\n",
		"lease: {kind: reservation, start: \"2026-13-45T99:00:00Z\"}\n",
		"lease: {kind: x, start: 12}\n",
		"lease: {kind: immediate, preemptible: true, deadline: \"0000-01-01T00:00:00Z\"}\n",
		"lease: []\n",
	} {
		f.Add([]byte(goodYAML + lease))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Parse: got an error with an empty message")
			}
			return
		}
		for range 2 {
			if err := Validate(s, nil); err != nil {
				t.Fatalf("Validate after a successful Parse: got %v, want nil", err)
			}
		}
		known := func(name string) (bool, []string) { return name == s.Image, nil }
		if err := Validate(s, known); err != nil {
			t.Fatalf("Validate with the image known: got %v, want nil", err)
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal %+v: %v", s, err)
		}
		again, err := Parse(js)
		if err != nil {
			t.Fatalf("Parse(%s) after a round trip: got error %v, want none", js, err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("JSON round trip: got %+v, want %+v", again, s)
		}
		ys, err := yaml.JSONToYAML(js)
		if err != nil {
			t.Fatalf("to yaml: %v", err)
		}
		again, err = Parse(ys)
		if err != nil {
			t.Fatalf("Parse(%s) after a YAML round trip: got error %v, want none", ys, err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("YAML round trip: got %+v, want %+v", again, s)
		}
	})
}
