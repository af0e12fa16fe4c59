package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"vgrid/internal/model"
)

func TestParseGood(t *testing.T) {
	want := model.WorkspaceSpec{
		Name:  "demo",
		Image: "vgrid-guest",
		Quantum: model.Quantum{
			VCPUs:  2,
			CPU:    0.5,
			Memory: 512 * model.MiB,
			Disk:   1 * model.GiB,
		},
		Duration: model.Duration(2 * time.Hour),
	}
	withContext := want
	withContext.Context = &model.Context{
		UserData: "#!/bin/sh\necho hello\n",
		SSHKeys:  []string{sshKey("ssh-ed25519", "me@laptop")},
		Env:      map[string]string{"GREETING": "hi", "_X1": ""},
		Hostname: "demo",
	}
	tests := []struct {
		name string
		in   string
		want model.WorkspaceSpec
	}{
		{"yaml", goodYAML, want},
		{"json", `{"name":"demo","image":"vgrid-guest","quantum":{"vcpus":2,"cpu":0.5,"memory":"512Mi","disk":"1Gi"},"duration":"2h"}`, want},
		{"json with spaces and BOM", "\ufeff \n\t{\"name\":\"demo\",\"image\":\"vgrid-guest\",\"quantum\":{\"vcpus\":2,\"cpu\":0.5,\"memory\":536870912,\"disk\":\"1073741824\"},\"duration\":7200}\n\n", want},
		{"yaml numbers", with("memory: 512Mi", "memory: 536870912"), want},
		{"yaml document markers", "---\n" + goodYAML + "...\n", want},
		{"yaml flow style", "name: demo\nimage: vgrid-guest\nquantum: {vcpus: 2, cpu: .5, memory: 512Mi, disk: 1Gi}\nduration: 120m\n", want},
		{"decimal size", with("memory: 512Mi", "memory: 0.5Gi"), want},
		{"size with exponent", with("disk: 1Gi", `disk: "1.073741824e+9"`), want},
		{"duration mixed units", with("duration: 2h", "duration: 1h60m"), want},
		{"context", goodYAML + "context:\n  hostname: demo\n  env:\n    GREETING: hi\n    _X1: \"\"\n  ssh_keys:\n    - " + sshKey("ssh-ed25519", "me@laptop") + "\n  user_data: |\n    #!/bin/sh\n    echo hello\n", withContext},
		{"empty context lists", goodYAML + "context:\n  ssh_keys: []\n  env: {}\n", func() model.WorkspaceSpec {
			s := want
			s.Context = &model.Context{}
			return s
		}()},
		{"null context", goodYAML + "context: null\n", want},
		{"reservation", goodYAML + "lease:\n  kind: reservation\n  start: \"2026-11-24T14:00:00+01:00\"\n", func() model.WorkspaceSpec {
			w := want
			w.Lease = &model.LeaseSpec{Kind: "reservation", Start: time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)}
			return w
		}()},
		{"best effort not preemptible", goodYAML + "lease: {kind: best-effort, preemptible: false}\n", func() model.WorkspaceSpec {
			w := want
			f := false
			w.Lease = &model.LeaseSpec{Kind: "best-effort", Preemptible: &f}
			return w
		}()},
		{"deadline", goodYAML + "lease: {kind: deadline, deadline: \"2026-11-24T18:30:00.5Z\"}\n", func() model.WorkspaceSpec {
			w := want
			w.Lease = &model.LeaseSpec{Kind: "deadline", Deadline: time.Date(2026, 11, 24, 18, 30, 0, 5e8, time.UTC)}
			return w
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: got error %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse: got %+v, want %+v", got, tt.want)
			}
			roundTrip(t, got)
		})
	}
}

// roundTrip checks that s survives JSON and YAML encoding and Parse.
func roundTrip(t *testing.T, s model.WorkspaceSpec) {
	t.Helper()
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	got, err := Parse(js)
	if err != nil {
		t.Fatalf("Parse(JSON %s): got error %v, want none", js, err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("JSON round trip: got %+v, want %+v", got, s)
	}
	ys, err := yaml.JSONToYAML(js)
	if err != nil {
		t.Fatalf("to yaml: %v", err)
	}
	got, err = Parse(ys)
	if err != nil {
		t.Fatalf("Parse(YAML %s): got error %v, want none", ys, err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("YAML round trip: got %+v, want %+v", got, s)
	}
}

func TestParseBad(t *testing.T) {
	envs := make([]string, 65)
	for i := range envs {
		envs[i] = fmt.Sprintf("    V%d: x\n", i)
	}
	tooManyEnv := goodYAML + "context:\n  env:\n" + strings.Join(envs, "")

	tests := []struct {
		name  string
		in    string
		field string // the path of a field error; "" for a document-level error
		want  string // a substring of that field's reason, or of the error
	}{
		{"unknown field", with("memory: 512Mi", "memroy: 512Mi"), "quantum.memroy", "unknown field"},
		{"unknown top-level field", with("name: demo", "name: demo\nnmae: x"), "nmae", "unknown field"},
		{"field names are case-sensitive", `{"Name":"demo"}`, "Name", "unknown field"},
		{"unknown context field", goodYAML + "context:\n  hostnme: x\n", "context.hostnme", "unknown field"},
		{"negative memory", with("memory: 512Mi", "memory: -1Gi"), "quantum.memory", "must not be negative, got -1Gi"},
		{"zero memory", with("memory: 512Mi", "memory: 0"), "quantum.memory", "required"},
		{"missing memory", with("  memory: 512Mi\n", ""), "quantum.memory", "required"},
		{"memory too small", with("memory: 512Mi", "memory: 1Mi"), "quantum.memory", "must be at least 64Mi, got 1Mi"},
		{"memory too large", with("memory: 512Mi", "memory: 2Ti"), "quantum.memory", "must be at most 1Ti, got 2Ti"},
		{"absurd memory number", with("memory: 512Mi", "memory: 1e30"), "quantum.memory", "too large"},
		{"absurd memory string", with("memory: 512Mi", `memory: "1e30"`), "quantum.memory", "too large"},
		{"absurd memory with unit", with("memory: 512Mi", "memory: 1e30Gi"), "quantum.memory", "too large"},
		{"memory overflowing float", with("memory: 512Mi", "memory: 1e999"), "quantum.memory", "too large"},
		{"unknown unit", with("memory: 512Mi", "memory: 5Zi"), "quantum.memory", `unknown unit "Zi"`},
		{"size of wrong type", with("memory: 512Mi", "memory: [1]"), "quantum.memory", "want a size"},
		{"cpu above vcpus", with("cpu: 0.5", "cpu: 3"), "quantum.cpu", "3 cores exceeds vcpus (2)"},
		{"cpu too small", with("cpu: 0.5", "cpu: 0.001"), "quantum.cpu", "at least 0.01"},
		{"negative cpu", with("cpu: 0.5", "cpu: -1"), "quantum.cpu", "must not be negative"},
		{"NaN cpu", with("cpu: 0.5", "cpu: .nan"), "quantum.cpu", "want a finite number, got .nan"},
		{"infinite cpu", with("cpu: 0.5", "cpu: -.inf"), "quantum.cpu", "want a finite number"},
		{"NaN memory", with("memory: 512Mi", "memory: .NaN"), "quantum.memory", "finite"},
		{"NaN in JSON", `{"name":"demo","quantum":{"cpu":NaN}}`, "", "line 1: invalid character 'N'"},
		{"cpu of wrong type", with("cpu: 0.5", "cpu: half"), "quantum.cpu", `want a number, got string "half"`},
		{"vcpus wrong type", with("vcpus: 2", "vcpus: two"), "quantum.vcpus", `want an integer, got string "two"`},
		{"vcpus fraction", with("vcpus: 2", "vcpus: 1.5"), "quantum.vcpus", "want an integer, got number 1.5"},
		{"vcpus bool", with("vcpus: 2", "vcpus: yes"), "quantum.vcpus", "want an integer, got bool true"},
		{"vcpus zero", with("vcpus: 2", "vcpus: 0"), "quantum.vcpus", "required"},
		{"vcpus too many", with("vcpus: 2", "vcpus: 65"), "quantum.vcpus", "between 1 and 64, got 65"},
		{"vcpus 1e12", with("vcpus: 2", "vcpus: 1e12"), "quantum.vcpus", "between 1 and 64, got 1000000000000"},
		{"vcpus beyond int64", with("vcpus: 2", "vcpus: 99999999999999999999"), "quantum.vcpus", "out of range"},
		{"vcpus beyond int64 in JSON", `{"quantum":{"vcpus":-99999999999999999999}}`, "quantum.vcpus", "out of range"},
		{"vcpus 1e300", `{"quantum":{"vcpus":1e300}}`, "quantum.vcpus", "out of range"},
		{"disk too small", with("disk: 1Gi", "disk: 1Mi"), "quantum.disk", "at least 64Mi"},
		{"disk too large", with("disk: 1Gi", "disk: 17Ti"), "quantum.disk", "at most 16Ti"},
		{"negative iops", with("disk: 1Gi", "disk: 1Gi\n  disk_iops: -5"), "quantum.disk_iops", "must not be negative"},
		{"huge iops", with("disk: 1Gi", "disk: 1Gi\n  disk_iops: 9223372036854775807"), "quantum.disk_iops", "at most 1000000"},
		{"negative bps", with("disk: 1Gi", "disk: 1Gi\n  disk_bps: -1Mi"), "quantum.disk_bps", "must not be negative"},
		{"quantum not an object", with("quantum:\n  vcpus: 2\n  cpu: 0.5\n  memory: 512Mi\n  disk: 1Gi\n", "quantum: 4\n"), "quantum", "want an object, got number 4"},
		{"empty name", with("name: demo", `name: ""`), "name", "required"},
		{"null name", with("name: demo", "name:"), "name", "want a string, got null"},
		{"missing name", with("name: demo\n", ""), "name", "required"},
		{"name with bad characters", with("name: demo", "name: Demo_1"), "name", "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter"},
		{"name starting with a digit", with("name: demo", "name: 1demo"), "name", "starting with a letter"},
		{"name ending with a dash", with("name: demo", "name: demo-"), "name", "must not end with '-'"},
		{"name too long", with("name: demo", "name: "+strings.Repeat("a", 64)), "name", "1-63 characters"},
		{"name of wrong type", with("name: demo", "name: 12"), "name", "want a string, got number 12"},
		{"missing image", with("image: vgrid-guest\n", ""), "image", "required"},
		{"image with a slash", with("image: vgrid-guest", "image: ../etc"), "image", "not an image name"},
		{"duration 0", with("duration: 2h", "duration: 0s"), "duration", "required"},
		{"missing duration", with("duration: 2h\n", ""), "duration", "required"},
		{"negative duration", with("duration: 2h", "duration: -1h"), "duration", "must be positive, got -1h0m0s"},
		{"duration too long", with("duration: 2h", "duration: 9000h"), "duration", "at most 366 days"},
		{"duration without unit", with("duration: 2h", `duration: "2"`), "duration", `"2" is not a duration`},
		{"duration overflowing", with("duration: 2h", "duration: 99999999999h"), "duration", "is not a duration"},
		{"duration seconds overflowing", with("duration: 2h", "duration: 1e300"), "duration", "too long"},
		{"duration days", with("duration: 2h", "duration: 2d"), "duration", "is not a duration"},
		{"too many env entries", tooManyEnv, "context.env", "at most 64 entries allowed, got 65"},
		{"bad env name", goodYAML + "context:\n  env:\n    1BAD: x\n", `context.env["1BAD"]`, "name must be"},
		{"env value of wrong type", goodYAML + "context:\n  env:\n    DEBUG: true\n", "context.env.DEBUG", "want a string, got bool true"},
		{"env key read as bool", goodYAML + "context:\n  env:\n    ON: x\n", "context.env", "quote the key"},
		{"env NUL", `{"name":"demo","image":"vgrid-guest","quantum":{"vcpus":2,"memory":"1Gi"},"duration":"1h","context":{"env":{"A":"x\u0000y"}}}`, "context.env.A", "NUL"},
		{"bad ssh key", goodYAML + "context:\n  ssh_keys:\n    - " + sshKey("ssh-ed25519", "") + "\n    - not-a-key\n", "context.ssh_keys[1]", "does not look like an SSH public key"},
		{"ssh key of another type", goodYAML + "context:\n  ssh_keys:\n    - \"ssh-rsa " + strings.Fields(sshKey("ssh-ed25519", ""))[1] + "\"\n", "context.ssh_keys[0]", `does not match its type "ssh-rsa"`},
		{"ssh key with a newline", `{"context":{"ssh_keys":["` + sshKey("ssh-ed25519", "a") + `\nssh-ed25519 AAAA"]},"name":"demo","image":"vgrid-guest","quantum":{"vcpus":2,"memory":"1Gi"},"duration":"1h"}`, "context.ssh_keys[0]", "single line"},
		{"ssh keys not a list", goodYAML + "context:\n  ssh_keys: abc\n", "context.ssh_keys", "want a list"},
		{"user data too large", goodYAML + "context:\n  user_data: " + strings.Repeat("x", 70000) + "\n", "context.user_data", "at most 65536"},
		{"user data binary", goodYAML + "context:\n  user_data: !!binary /w==\n", "context.user_data", "UTF-8"},
		{"bad hostname", goodYAML + "context:\n  hostname: -x\n", "context.hostname", "must be 1-63 characters"},
		{"duplicate YAML key", with("memory: 512Mi", "memory: 512Mi\n  memory: 1Gi"), "quantum.memory", "duplicate key (line 7)"},
		{"duplicate top-level YAML key", "name: a\nname: b\n", "name", "duplicate key (line 2)"},
		{"duplicate JSON key", "{\"name\": \"a\",\n \"quantum\": {\"vcpus\": 1, \"vcpus\": 2}}", "quantum.vcpus", "duplicate key (line 2)"},
		{"malformed YAML", "name: demo\nquantum:\n  vcpus: 2\n   memory: 1Gi\n", "", "line 4"},
		{"tab-indented YAML", "name: demo\nquantum:\n\tvcpus: 2\n", "", "line 3"},
		{"malformed JSON", "{\"name\": \"demo\",\n\"image\" \"x\"}", "", "line 2"},
		{"truncated JSON", "{\"name\": \"demo\",\n", "", "unexpected end of input"},
		{"JSON trailing garbage", "{\"name\": \"demo\"}\n{\"name\": \"x\"}", "", "line 2: unexpected data after the top-level object"},
		{"JSON trailing brace", "{\"name\": \"demo\"}}", "", "unexpected data after"},
		{"two YAML documents", goodYAML + "---\nname: other\n", "", "more than one document"},
		{"YAML garbage after the document", goodYAML + "--- [\n", "", "line 9"},
		{"top level is a list", "- name: demo\n", "", "want an object, got a list"},
		{"top level is a string", "hello\n", "", "want an object, got string"},
		{"empty", "   \n", "", "empty document"},
		{"only a comment", "# nothing\n", "", "empty document"},
		{"non-string key", with("name: demo", "name: demo\n[1, 2]: x"), "", "invalid map key"},
		{"too large", strings.Repeat(" ", MaxSize+1), "", "larger than"},
		{"nested too deep", `{"context":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}", "", "levels deep"},
		{"unknown lease kind", goodYAML + "lease: {kind: x}\n", "lease.kind", `unknown kind "x"`},
		{"lease kind of wrong type", goodYAML + "lease: {kind: 3}\n", "lease.kind", "want a string, got number 3"},
		{"reservation without start", goodYAML + "lease: {kind: reservation}\n", "lease.start", "required for a reservation"},
		{"start of another kind", goodYAML + "lease: {kind: best-effort, start: \"2026-11-24T13:00:00Z\"}\n", "lease.start", "only a reservation has a start"},
		{"start not RFC 3339", goodYAML + "lease: {kind: reservation, start: tomorrow}\n", "lease.start", `"tomorrow" is not an RFC 3339 time`},
		{"start without zone", goodYAML + "lease: {kind: reservation, start: \"2026-11-24T13:00:00\"}\n", "lease.start", "not an RFC 3339 time"},
		{"start of wrong type", goodYAML + "lease: {kind: reservation, start: 5}\n", "lease.start", "want an RFC 3339 time"},
		{"start in 2611", goodYAML + "lease: {kind: reservation, start: \"2611-01-01T00:00:00Z\"}\n", "lease.start", "is outside 1970..2200"},
		{"start in 1600", goodYAML + "lease: {kind: reservation, start: \"1600-01-01T00:00:00Z\"}\n", "lease.start", "is outside 1970..2200"},
		{"deadline in 2300", goodYAML + "lease: {kind: deadline, deadline: \"2300-06-01T00:00:00Z\"}\n", "lease.deadline", "is outside 1970..2200"},
		{"deadline lease without deadline", goodYAML + "lease: {kind: deadline}\n", "lease.deadline", "required for a deadline lease"},
		{"deadline of another kind", goodYAML + "lease: {deadline: \"2026-11-24T13:00:00Z\"}\n", "lease.deadline", "only a deadline lease has a deadline"},
		{"preemptible reservation", goodYAML + "lease: {kind: reservation, start: \"2026-11-24T13:00:00Z\", preemptible: true}\n", "lease.preemptible", "only best-effort leases can be preempted"},
		{"preemptible of wrong type", goodYAML + "lease: {kind: best-effort, preemptible: maybe}\n", "lease.preemptible", "want true or false"},
		{"unknown lease field", goodYAML + "lease: {kind: best-effort, priority: 3}\n", "lease.priority", "unknown field"},
		{"lease not an object", goodYAML + "lease: soon\n", "lease", "want an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse: got %+v and no error, want an error about %q", got, tt.field)
			}
			var fe *FieldErrors
			isField := errors.As(err, &fe)
			if tt.field == "" {
				if isField {
					t.Fatalf("Parse: got field errors %v, want a document error", err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Parse: got error %q, want it to contain %q", err, tt.want)
				}
				return
			}
			if !isField {
				t.Fatalf("Parse: got error %q (%T), want *FieldErrors", err, err)
			}
			for _, f := range fe.Fields() {
				if f.Field == tt.field {
					if !strings.Contains(f.Reason, tt.want) {
						t.Fatalf("Parse: got %s: %q, want reason containing %q", f.Field, f.Reason, tt.want)
					}
					if !strings.Contains(err.Error(), tt.field+": ") {
						t.Fatalf("Parse: got error %q, want it to name %q", err, tt.field)
					}
					return
				}
			}
			t.Fatalf("Parse: got error %q, want one for field %q", err, tt.field)
		})
	}
}

func TestParseExactMessages(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{with("memory: 512Mi", "memroy: 512Mi"), "quantum.memroy: unknown field"},
		{with("vcpus: 2", "vcpus: two"), `quantum.vcpus: want an integer, got string "two"`},
		{with("cpu: 0.5", "cpu: 3"), "quantum.cpu: 3 cores exceeds vcpus (2)"},
		{"name: Demo\nimage: vgrid-guest\nquantum:\n  vcpus: 2\n  cpu: 3\n  memory: 1Gi\nduration: 1h\n",
			"name: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter; quantum.cpu: 3 cores exceeds vcpus (2)"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse: got error %v, want %q", err, tt.want)
		}
	}
}

func TestParseCollectsAllDecodeErrors(t *testing.T) {
	in := "name: 1\nimage: [x]\nquantum:\n  vcpus: a\n  memroy: 1\nbogus: 2\n"
	_, err := Parse([]byte(in))
	var fe *FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Parse: got error %v, want *FieldErrors", err)
	}
	var got []string
	for _, f := range fe.Fields() {
		got = append(got, f.Field)
	}
	want := []string{"bogus", "image", "name", "quantum.memroy", "quantum.vcpus"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields: got %v, want %v", got, want)
	}
}

func TestFieldErrorsJSON(t *testing.T) {
	_, err := Parse([]byte(with("memory: 512Mi", "memory: 5Zi")))
	var fe *FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Parse: got error %v, want *FieldErrors", err)
	}
	js, err := json.Marshal(fe.Fields())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"field":"quantum.memory","reason":"unknown unit \"Zi\" in \"5Zi\" (use B, Ki, Mi, Gi, Ti, K, M, G, T)"}]`
	if string(js) != want {
		t.Fatalf("JSON: got %s, want %s", js, want)
	}
}

func TestFieldErrorsCap(t *testing.T) {
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "unknown%d: 1\n", i)
	}
	_, err := Parse([]byte(b.String()))
	var fe *FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Parse: got error %v, want *FieldErrors", err)
	}
	if got, want := len(fe.Fields()), maxFieldErrors; got != want {
		t.Fatalf("listed errors: got %d, want %d", got, want)
	}
	if got, want := fe.Len(), 200; got != want {
		t.Fatalf("Len: got %d, want %d", got, want)
	}
	if !strings.HasSuffix(err.Error(), "and 150 more problems") {
		t.Fatalf("Error: got %q, want it to end with the count of the rest", err)
	}
}

func TestExampleFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../examples/workspace.yaml")
	if len(files) < 3 {
		t.Fatalf("example files: got %d, want at least 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: got error %v, want none", err)
			}
			roundTrip(t, s)
		})
	}
}

func TestExampleWorkspace(t *testing.T) {
	data, err := os.ReadFile("../../examples/workspace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: got error %v, want none", err)
	}
	q := model.Quantum{VCPUs: 2, CPU: 0.5, Memory: 512 * model.MiB, Disk: model.GiB}
	if s.Name != "demo" || s.Image != "vgrid-guest" || s.Quantum != q || s.Duration.D() != 2*time.Hour {
		t.Fatalf("example: got %+v, want demo/vgrid-guest/%+v/2h", s, q)
	}
	if s.Context == nil || s.Context.Hostname != "demo" || len(s.Context.Env) == 0 || !strings.HasPrefix(s.Context.UserData, "#!") {
		t.Fatalf("example context: got %+v, want hostname, env and a user_data script", s.Context)
	}
}
