package gridspec

import (
	"reflect"
	"testing"

	"vgrid/internal/spec"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// is valid, expands into parts that are valid specs of their kinds, and
// survives Export and Parse (without values) unchanged. The seed corpus
// is in testdata/fuzz/FuzzParse (the example among them).
func FuzzParse(f *testing.F) {
	f.Add([]byte(baseGrid), "need=x")
	f.Add([]byte(baseGrid), "num=0")
	f.Add([]byte(`{"name": "j", "params": {"d": "2h"}, "duration": "${d}", "workspaces": [{"name": "w", "image": "i", "quantum": {"vcpus": 1, "memory": "64Mi"}, "context": {"user_data": "$${X} $$${Y}"}}]}`), "")
	f.Fuzz(func(t *testing.T, data []byte, set string) {
		var sets []string
		if set != "" {
			sets = []string{set}
		}
		g, err := Parse(data, nil, sets)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("Parse: an error with an empty message")
			}
			return
		}
		if err := Validate(g, nil); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		Refs(g)
		for _, p := range Parts(g) {
			var err error
			switch p.Kind {
			case KindCluster:
				err = spec.ValidateCluster(*p.Cluster, nil)
			case KindWorkspace:
				err = spec.Validate(*p.Workspace, nil)
			default:
				t.Fatalf("part %s of kind %q", p.Name, p.Kind)
			}
			if err != nil {
				t.Fatalf("part %s is not a valid %s: %v", p.Name, p.Kind, err)
			}
		}
		out, err := Export(g)
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		back, err := Parse(out, nil, nil)
		if err != nil {
			t.Fatalf("Parse(Export): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, g) {
			t.Fatalf("round trip changed the grid:\n%#v\n%#v\n%s", g, back, out)
		}
	})
}
