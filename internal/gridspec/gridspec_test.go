package gridspec

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"vgrid/internal/model"
	"vgrid/internal/spec"
)

// knownImages knows vgrid-guest only.
func knownImages(name string) (bool, []string) {
	return name == "vgrid-guest", []string{"vgrid-guest"}
}

// baseGrid is a small valid grid; tests derive others from it.
const baseGrid = `name: g
params: {num: 1, mem: 128Mi, need: ~}
duration: 1h
networks: [{name: net}]
volumes: [{name: vol, size: 64Mi}]
clusters:
  - name: c
    networks: [{name: net}]
    roles:
      - {name: w, count: ${num}, image: vgrid-guest, quantum: {vcpus: 1, cpu: 0.25, memory: ${mem}}}
workspaces:
  - name: solo
    image: vgrid-guest
    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}
`

// with replaces old by new in baseGrid once; it panics if old is missing,
// so that a test cannot silently test the base grid.
func with(old, new string) string {
	if !strings.Contains(baseGrid, old) {
		panic("baseGrid has no " + old)
	}
	return strings.Replace(baseGrid, old, new, 1)
}

// rep replaces old by new in s once; it panics if old is missing.
func rep(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("no " + old + " in " + s)
	}
	return strings.Replace(s, old, new, 1)
}

// fieldsOf returns "field: reason" of each problem of err, or nil when err
// is not a *spec.FieldErrors.
func fieldsOf(err error) []string {
	var fe *spec.FieldErrors
	if !errors.As(err, &fe) {
		return nil
	}
	var out []string
	for _, f := range fe.Fields() {
		out = append(out, f.Field+": "+f.Reason)
	}
	return out
}

// hasField reports whether err has a problem at field whose reason
// contains every one of want.
func hasField(err error, field string, want ...string) bool {
	for _, f := range fieldsOf(err) {
		reason, ok := strings.CutPrefix(f, field+": ")
		if !ok {
			continue
		}
		all := true
		for _, w := range want {
			all = all && strings.Contains(reason, w)
		}
		if all {
			return true
		}
	}
	return false
}

func TestExample(t *testing.T) {
	data, err := os.ReadFile("../../examples/grid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(data, nil, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := Validate(g, knownImages); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	wantParams := map[string]string{"workers": "2", "memory": "128Mi", "duration": "1h", "source": "notes"}
	if !reflect.DeepEqual(g.Params, wantParams) {
		t.Errorf("Params = %v, want %v", g.Params, wantParams)
	}
	if g.Duration != model.Duration(time.Hour) || g.Clusters[1].Roles[0].Count != 2 || g.Clusters[0].Roles[0].Quantum.Memory != 128*model.MiB {
		t.Errorf("parameters not applied: duration %v, workers %d, memory %v", g.Duration, g.Clusters[1].Roles[0].Count, g.Clusters[0].Roles[0].Quantum.Memory)
	}
	if ud := g.Workspaces[0].Context.UserData; !strings.Contains(ud, "${HOSTNAME}") || strings.Contains(ud, "$${") {
		t.Errorf("user_data = %q, want the escaped ${HOSTNAME} literal", ud)
	}
	if nets, vols := Refs(g); nets != nil || !reflect.DeepEqual(vols, []string{"notes"}) {
		t.Errorf("Refs = %v, %v; the example makes all it uses but the dataset's source, notes", nets, vols)
	}
	// An unknown image is named at its part.
	none := func(string) (bool, []string) { return false, []string{"other"} }
	if err := Validate(g, none); !hasField(err, "clusters[1].roles[0].image", "vgrid-guest") || !hasField(err, "workspaces[0].image") {
		t.Errorf("Validate with no images: %v", err)
	}
}

func TestParams(t *testing.T) {
	count := func(g model.GridSpec) int { return g.Clusters[0].Roles[0].Count }
	for _, tc := range []struct {
		name   string
		doc    string
		values map[string]string
		sets   []string
		check  func(t *testing.T, g model.GridSpec)
		field  string // the error's field ("" and plain: a plain error)
		want   []string
		plain  bool
	}{
		{name: "defaults", doc: baseGrid, check: func(t *testing.T, g model.GridSpec) {
			if count(g) != 1 || !reflect.DeepEqual(g.Params, map[string]string{"num": "1", "mem": "128Mi"}) {
				t.Errorf("count %d, params %v", count(g), g.Params)
			}
		}},
		{name: "values override defaults", doc: baseGrid, values: map[string]string{"num": "3"}, check: func(t *testing.T, g model.GridSpec) {
			if count(g) != 3 || g.Params["num"] != "3" {
				t.Errorf("count %d, params %v", count(g), g.Params)
			}
		}},
		{name: "sets override values, last wins", doc: baseGrid, values: map[string]string{"num": "3"}, sets: []string{"num=4", "mem=256Mi", "num=5"}, check: func(t *testing.T, g model.GridSpec) {
			if count(g) != 5 || g.Clusters[0].Roles[0].Quantum.Memory != 256*model.MiB || g.Params["num"] != "5" || g.Params["mem"] != "256Mi" {
				t.Errorf("count %d, params %v", count(g), g.Params)
			}
		}},
		{name: "a number stays a number", doc: with("count: ${num}", `count: "${num}"`), field: "clusters[0].roles[0].count", want: []string{"want an integer"}},
		{name: "required param given", doc: with("solo", "solo-${need}"), sets: []string{"need=x"}, check: func(t *testing.T, g model.GridSpec) {
			if g.Workspaces[0].Name != "solo-x" || g.Params["need"] != "x" {
				t.Errorf("name %q, params %v", g.Workspaces[0].Name, g.Params)
			}
		}},
		{name: "required param missing", doc: with("solo", "solo-${need}"), field: "params.need", want: []string{"required", "line 12", "--set need=VALUE"}},
		{name: "undeclared value", doc: baseGrid, values: map[string]string{"workers": "2"}, field: "values.workers", want: []string{"no parameter", "mem, need, num"}},
		{name: "undeclared set", doc: baseGrid, sets: []string{"nn=2"}, field: "--set nn=2", want: []string{`no parameter "nn"`}},
		{name: "set without =", doc: baseGrid, sets: []string{"num"}, field: "--set num", want: []string{"NAME=VALUE"}},
		{name: "undeclared reference", doc: with("image: vgrid-guest\n    quantum", "image: ${img}\n    quantum"), field: "params.img", want: []string{"not declared", "line 13"}},
		{name: "reference used twice", doc: with("solo", "${zz}-${zz}"), field: "params.zz", want: []string{"line 12 and 1 more"}},
		{name: "value with a newline", doc: baseGrid, sets: []string{"mem=1\n2"}, field: "--set mem=1\n2", want: []string{"one line"}},
		{name: "value with a flow character", doc: baseGrid, values: map[string]string{"mem": "{a: 1}"}, field: "values.mem", want: []string{"may not contain"}},
		{name: "value with a colon and space", doc: baseGrid, sets: []string{"mem=a: b"}, field: "--set mem=a: b", want: []string{`": "`}},
		{name: "value with an indicator", doc: baseGrid, sets: []string{"mem=*x"}, field: "--set mem=*x", want: []string{"YAML indicator"}},
		{name: "bad default", doc: with("mem: 128Mi", "mem: '[x]'"), field: "params.mem", want: []string{"may not contain"}},
		{name: "bad param name", doc: with("num: 1,", "N: 1, num: 1,"), field: "params.N", want: []string{"not a parameter name"}},
		{name: "a boolean name", doc: with("num: 1,", "num: 1, n: 2,"), field: "params", want: []string{"quote the key"}},
		{name: "reference inside params", doc: with("mem: 128Mi", "mem: ${num}Mi"), field: "params.mem", want: []string{"may not contain ${...}"}},
		{name: "params not an object", doc: with("params: {num: 1, mem: 128Mi, need: ~}", "params: [n]"), field: "params", want: []string{"want an object"}},
		{name: "escape", doc: with("solo\n", "solo\n    context: {user_data: \"echo $${HOME} $$$${x}\"}\n"), check: func(t *testing.T, g model.GridSpec) {
			if ud := g.Workspaces[0].Context.UserData; ud != "echo ${HOME} $$${x}" {
				t.Errorf("user_data = %q", ud)
			}
		}},
		{name: "malformed reference", doc: with("solo\n", "solo\n    context: {user_data: \"${HOME:-x}\"}\n"), plain: true, want: []string{"line 13", "not a parameter reference", "$${"}},
		{name: "too large once replaced", doc: with("need: ~}", "need: ~, pad: "+strings.Repeat("a", 1000)+"}") + "# " + strings.Repeat("${pad}", 2000) + "\n",
			sets: []string{"need=x"}, plain: true, want: []string{"more than the 1048576 bytes"}},
		{name: "unterminated reference", doc: baseGrid + "# ${n", plain: true, want: []string{"line 15", "not a parameter reference"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Parse([]byte(tc.doc), tc.values, tc.sets)
			switch {
			case tc.check != nil:
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				tc.check(t, g)
			case tc.plain:
				if err == nil || fieldsOf(err) != nil {
					t.Fatalf("Parse: %v, want a plain error", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			default:
				if !hasField(err, tc.field, tc.want...) {
					t.Fatalf("Parse: %v\nwant a problem at %s saying %q", err, tc.field, tc.want)
				}
			}
		})
	}
}

// TestReservationParam: a time given by --set goes through (colons not
// followed by a space are plain YAML).
func TestReservationParam(t *testing.T) {
	doc := with("need: ~}", "need: ~, at: ~}")
	doc = strings.Replace(doc, "duration: 1h\n", "duration: 1h\nlease: {kind: reservation, start: ${at}}\n", 1)
	g, err := Parse([]byte(doc), nil, []string{"at=2027-01-01T10:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2027, 1, 1, 10, 0, 0, 0, time.UTC); g.Lease == nil || !g.Lease.Start.Equal(want) {
		t.Errorf("lease = %+v, want a reservation at %v", g.Lease, want)
	}
}

func TestErrors(t *testing.T) {
	sixtyFive := "clusters:\n"
	for i := range 65 {
		sixtyFive += "  - {name: c" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ", roles: [{name: w, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}]}\n"
	}
	for _, tc := range []struct {
		name  string
		doc   string
		field string
		want  []string
		plain bool
	}{
		{name: "bad yaml", doc: baseGrid + "  - [\n", plain: true, want: []string{"yaml", "line"}},
		{name: "empty", doc: "", plain: true, want: []string{"empty"}},
		{name: "unknown field", doc: with("count: ${num}", "cout: ${num}"), field: "clusters[0].roles[0].cout", want: []string{"unknown field", "did you mean count"}},
		{name: "unknown grid field", doc: baseGrid + "volume: []\n", field: "volume", want: []string{"unknown field", "volumes"}},
		{name: "duplicate key", doc: baseGrid + "name: h\n", field: "name", want: []string{"duplicate key"}},
		{name: "member name clash", doc: with("name: solo", "name: c-w-0"), field: "workspaces[0].name", want: []string{`"c-w-0"`, "clusters[0] (c, role w)"}},
		{name: "member clash between clusters", doc: with("workspaces:", "  - name: a-b\n    roles: [{name: c, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}]\n  - name: a\n    roles: [{name: b-c, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}]\nworkspaces:"),
			field: "clusters[2].roles[0].name", want: []string{"member a-b-c-0 would have the name of a member of clusters[1] (a-b, role c)"}},
		{name: "duplicate cluster", doc: with("workspaces:", "  - name: c\n    roles: [{name: z, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}]\nworkspaces:"), field: "clusters[1].name", want: []string{`"c" is used by clusters[0]`}},
		{name: "two writers", doc: with("memory: ${mem}}}", "memory: ${mem}}, volumes: [{name: vol, mount: /v}]}") + "    volumes: [{name: vol, mount: /v}]\n",
			field: "workspaces[0].volumes[0].read_only", want: []string{`"vol"`, "also attached writable by clusters[0].roles[0].volumes[0]"}},
		{name: "writer and reader", doc: with("memory: ${mem}}}", "memory: ${mem}}, volumes: [{name: vol, mount: /v}]}") + "    volumes: [{name: vol, mount: /v, read_only: true}]\n",
			field: "clusters[0].roles[0].volumes[0].read_only", want: []string{"writable here and read-only by workspaces[0].volumes[0]"}},
		{name: "readers only", doc: with("memory: ${mem}}}", "memory: ${mem}}, volumes: [{name: vol, mount: /v, read_only: true}]}") + "    volumes: [{name: vol, mount: /v, read_only: true}]\n"},
		{name: "scaled-down writer is no writer", doc: rep(with("count: ${num}", "count: 0"), "memory: ${mem}}}", "memory: ${mem}}, volumes: [{name: vol, mount: /v}]}") + "    volumes: [{name: vol, mount: /v}]\n"},
		{name: "too many clusters", doc: "name: g\nduration: 1h\n" + sixtyFive, field: "clusters", want: []string{"at most 64 clusters"}},
		{name: "no parts", doc: "name: g\n", field: "clusters", want: []string{"at least one"}},
		{name: "duration required", doc: with("duration: 1h\n", ""), field: "duration", want: []string{"required", "clusters[0], workspaces[0] have no lease"}},
		{name: "own lease, no duration anywhere", doc: rep(rep(with("duration: 1h\n", ""), "  - name: solo\n", "  - name: solo\n    lease: {kind: best-effort}\n    duration: 1h\n"), "  - name: c\n", "  - name: c\n    lease: {kind: best-effort}\n"),
			field: "clusters[0].duration", want: []string{"required"}},
		{name: "linked part with another duration", doc: with("  - name: solo\n", "  - name: solo\n    duration: 2h\n"), field: "workspaces[0].duration", want: []string{"differs from the grid's duration (1h0m0s)"}},
		{name: "grid lease checked once", doc: with("duration: 1h\n", "duration: 1h\nlease: {kind: reservation}\n"), field: "lease.start", want: []string{"required"}},
		{name: "bad subnet", doc: with("[{name: net}]\nvolumes", "[{name: net, subnet: 8.8.8.0/24}]\nvolumes"), field: "networks[0].subnet", want: []string{"private"}},
		{name: "duplicate network", doc: with("[{name: net}]\nvolumes", "[{name: net}, {name: net}]\nvolumes"), field: "networks[1].name", want: []string{"used by networks[0]"}},
		{name: "bad volume size", doc: with("size: 64Mi", "size: 1Mi"), field: "volumes[0].size", want: []string{"at least"}},
		{name: "snapshot of a grid volume", doc: with("size: 64Mi}", "size: 64Mi}, {name: v2, size: 64Mi, snapshot_of: vol}"), field: "volumes[1].snapshot_of", want: []string{"this grid makes"}},
		{name: "bad grid name", doc: with("name: g\n", "name: G\n"), field: "name", want: []string{"a-z"}},
		{name: "scratch named like a grid volume", doc: rep(with("size: 64Mi}", "size: 64Mi}, {name: c-w-0-scratch, size: 64Mi}"), "memory: ${mem}}}", "memory: ${mem}}, scratch: {size: 64Mi, mount: /s}}"),
			field: "clusters[0].roles[0].scratch", want: []string{"c-w-0-scratch", "volumes[1]"}},
		{name: "part errors prefixed", doc: with("vcpus: 1, cpu: 0.25, memory: 128Mi}", "vcpus: 0, memory: 128Mi}"), field: "workspaces[0].quantum.vcpus", want: []string{"required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sets []string
			if strings.Contains(tc.doc, "need:") {
				sets = []string{"need=x"}
			}
			_, err := Parse([]byte(tc.doc), nil, sets)
			switch {
			case tc.plain:
				if err == nil || fieldsOf(err) != nil {
					t.Fatalf("Parse: %v, want a plain error", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			case tc.field == "":
				if err != nil {
					t.Fatalf("Parse: %v, want no error", err)
				}
			default:
				if !hasField(err, tc.field, tc.want...) {
					t.Fatalf("Parse: %v\nwant a problem at %s saying %q", err, tc.field, tc.want)
				}
			}
		})
	}
}

func TestPartsLinking(t *testing.T) {
	doc := with("duration: 1h\n", "duration: 3h\nlease: {kind: reservation, start: \"2027-01-01T10:00:00Z\"}\n")
	doc = strings.Replace(doc, "  - name: c\n", "  - name: c\n    lease: {kind: best-effort}\n", 1)
	doc += "  - name: own\n    lease: {kind: best-effort}\n    duration: 30m\n    image: vgrid-guest\n    quantum: {vcpus: 1, memory: 64Mi}\n"
	g, err := Parse([]byte(doc), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := Parts(g)
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	c, solo, own := parts[0], parts[1], parts[2]
	if c.Kind != KindCluster || c.Name != "c" || c.Linked || c.Cluster.Lease.Kind != model.LeaseBestEffort || c.Cluster.Duration != model.Duration(3*time.Hour) {
		t.Errorf("cluster part %+v (%+v): want its own best-effort lease, the grid's 3h, not linked", c, c.Cluster)
	}
	if solo.Kind != KindWorkspace || !solo.Linked || solo.Workspace.Lease == nil || solo.Workspace.Lease.Kind != model.LeaseReservation ||
		!solo.Workspace.Lease.Start.Equal(g.Lease.Start) || solo.Workspace.Duration != model.Duration(3*time.Hour) {
		t.Errorf("solo part %+v (%+v): want linked, the grid's reservation and 3h", solo, solo.Workspace)
	}
	if own.Linked || own.Workspace.Duration != model.Duration(30*time.Minute) {
		t.Errorf("own part %+v: want not linked, its own 30m", own)
	}
	// Every part is a valid spec of its kind.
	for _, p := range parts[:1] {
		if err := spec.ValidateCluster(*p.Cluster, knownImages); err != nil {
			t.Errorf("part %s: %v", p.Name, err)
		}
	}
	for _, p := range parts[1:] {
		if err := spec.Validate(*p.Workspace, knownImages); err != nil {
			t.Errorf("part %s: %v", p.Name, err)
		}
	}
	// The parts share nothing with the grid.
	solo.Workspace.Lease.Kind = model.LeaseDeadline
	c.Cluster.Roles[0].Count = 99
	if g.Lease.Kind != model.LeaseReservation || g.Clusters[0].Roles[0].Count != 1 || g.Workspaces[0].Lease != nil {
		t.Errorf("changing the parts changed the grid: %+v", g)
	}
}

func TestRefs(t *testing.T) {
	doc := with("networks: [{name: net}]\n  ", "networks: [{name: net}, {name: lab}, {}]\n  ")
	doc = strings.Replace(doc, "size: 64Mi}", "size: 64Mi}, {name: copy, size: 64Mi, snapshot_of: base}", 1)
	doc = strings.Replace(doc, "memory: ${mem}}}", "memory: ${mem}}, volumes: [{name: vol, mount: /v, read_only: true}, {name: data, mount: /d, read_only: true}]}", 1)
	doc += "    volumes: [{name: data, mount: /d, read_only: true}, {name: home, mount: /home}]\n"
	g, err := Parse([]byte(doc), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	nets, vols := Refs(g)
	if want := []string{"lab"}; !reflect.DeepEqual(nets, want) {
		t.Errorf("networks %v, want %v", nets, want)
	}
	if want := []string{"base", "data", "home"}; !reflect.DeepEqual(vols, want) {
		t.Errorf("volumes %v, want %v", vols, want)
	}
}

func TestExportRoundTrip(t *testing.T) {
	example, err := os.ReadFile("../../examples/grid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		doc  string
		sets []string
	}{
		{"example", string(example), []string{"workers=5", "memory=256Mi"}},
		{"base", baseGrid, []string{"need=x", "num=0"}},
		{"tricky values", `name: t
params: {a: "yes", b: 0x10, c: -5, d: 1.50, e: "", f: ~}
duration: 1h
workspaces:
  - name: w
    image: i
    quantum: {vcpus: 1, memory: 64Mi}
    context:
      env: {A: "${a}", B: "${b}", C: "${c}", D: "${d}", E: "x${e}", F: "${f}"}
      user_data: "` + strings.Repeat("many words here ", 12) + `$${HOME} $$$${x}"
`, []string{"f=a b:c@d"}},
		{"json", `{"name": "j", "params": {"d": "2h"}, "duration": "${d}", "workspaces": [{"name": "w", "image": "i", "quantum": {"vcpus": 1, "memory": "64Mi"}, "context": {"user_data": "$${X} $$${Y}", "env": {"A": "b"}}}]}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Parse([]byte(tc.doc), nil, tc.sets)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Export(g)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out, nil, nil)
			if err != nil {
				t.Fatalf("Parse(Export): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, g) {
				t.Fatalf("round trip changed the grid:\n%+v\n%+v\n%s", g, back, out)
			}
			if tc.name == "tricky values" {
				env := g.Workspaces[0].Context.Env
				want := map[string]string{"A": "yes", "B": "0x10", "C": "-5", "D": "1.50", "E": "x", "F": "a b:c@d"}
				if !reflect.DeepEqual(env, want) {
					t.Errorf("env = %v, want the values as written %v", env, want)
				}
			}
			for _, s := range tc.sets {
				name, value, _ := strings.Cut(s, "=")
				if back.Params[name] != value {
					t.Errorf("exported params[%s] = %q, want the value used %q", name, back.Params[name], value)
				}
			}
		})
	}
}
