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

	"vgrid/internal/model"
)

// clusterYAML is a valid cluster spec; tests derive others from it.
const clusterYAML = `name: mpi
lease: {kind: best-effort}
duration: 1h
context:
  env: {APP: demo}
roles:
  - name: head
    count: 1
    image: vgrid-guest
    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi, disk: 512Mi, bandwidth: 100Mbit}
    context: {user_data: "#!/bin/sh\necho head\n"}
    placement: spread
  - name: worker
    count: 2
    image: vgrid-guest
    quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}
`

// withC replaces old by new in clusterYAML, once; it panics if old is
// missing, so that a test cannot silently test the good spec.
func withC(old, new string) string {
	if !strings.Contains(clusterYAML, old) {
		panic("clusterYAML has no " + old)
	}
	return strings.Replace(clusterYAML, old, new, 1)
}

// clusterSpec is what clusterYAML reads as.
func clusterSpec() model.ClusterSpec {
	return model.ClusterSpec{
		Name:     "mpi",
		Lease:    &model.LeaseSpec{Kind: model.LeaseBestEffort},
		Duration: model.Duration(time.Hour),
		Context:  &model.Context{Env: map[string]string{"APP": "demo"}},
		Roles: []model.ClusterRole{
			{
				Name: "head", Count: 1, Image: "vgrid-guest",
				Quantum:   model.Quantum{VCPUs: 1, CPU: 0.25, Memory: 128 * model.MiB, Disk: 512 * model.MiB, Bandwidth: 100 * model.Mbit},
				Context:   &model.Context{UserData: "#!/bin/sh\necho head\n"},
				Placement: model.PlacementSpread,
			},
			{Name: "worker", Count: 2, Image: "vgrid-guest", Quantum: model.Quantum{VCPUs: 1, CPU: 0.25, Memory: 128 * model.MiB}},
		},
	}
}

func TestParseClusterGood(t *testing.T) {
	edit := func(f func(*model.ClusterSpec)) model.ClusterSpec {
		s := clusterSpec()
		f(&s)
		return s
	}
	tests := []struct {
		name string
		in   string
		want model.ClusterSpec
	}{
		{"yaml", clusterYAML, clusterSpec()},
		{"json", `{"name":"mpi","lease":{"kind":"best-effort"},"duration":"1h","context":{"env":{"APP":"demo"}},"roles":[
			{"name":"head","count":1,"image":"vgrid-guest","quantum":{"vcpus":1,"cpu":0.25,"memory":"128Mi","disk":"512Mi","bandwidth":"100Mbit"},"context":{"user_data":"#!/bin/sh\necho head\n"},"placement":"spread"},
			{"name":"worker","count":2,"image":"vgrid-guest","quantum":{"vcpus":1,"cpu":0.25,"memory":134217728}}]}`, clusterSpec()},
		{"count defaults to 1", withC("    count: 2\n", ""), edit(func(s *model.ClusterSpec) { s.Roles[1].Count = 1 })},
		{"count 0", withC("count: 2", "count: 0"), edit(func(s *model.ClusterSpec) { s.Roles[1].Count = 0 })},
		{"bandwidth forms", withC("bandwidth: 100Mbit", "bandwidth: 0.1Gbit/s"), clusterSpec()},
		{"bandwidth in Mbps", withC("bandwidth: 100Mbit", "bandwidth: 100Mbps"), clusterSpec()},
		{"bandwidth 0 is no cap", withC("bandwidth: 100Mbit", "bandwidth: 0"), edit(func(s *model.ClusterSpec) { s.Roles[0].Quantum.Bandwidth = 0 })},
		{"no lease", withC("lease: {kind: best-effort}\n", ""), edit(func(s *model.ClusterSpec) { s.Lease = nil })},
		{"reservation", withC("lease: {kind: best-effort}", `lease: {kind: reservation, start: "2026-11-24T14:00:00+01:00"}`), edit(func(s *model.ClusterSpec) {
			s.Lease = &model.LeaseSpec{Kind: model.LeaseReservation, Start: time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)}
		})},
		{"empty contexts are dropped", withC(`context: {user_data: "#!/bin/sh\necho head\n"}`, "context: {env: {}, ssh_keys: []}") + "    context: {}\n",
			edit(func(s *model.ClusterSpec) { s.Roles[0].Context = nil })},
		{"networks", clusterYAML + "networks:\n  - name: lab\n  - subnet: 10.10.0.0/24\n", edit(func(s *model.ClusterSpec) {
			s.Networks = []model.ClusterNetwork{{Name: "lab"}, {Subnet: "10.10.0.0/24"}}
		})},
		{"own network without subnet", clusterYAML + "networks: [{name: lab}, {}]\n", edit(func(s *model.ClusterSpec) {
			s.Networks = []model.ClusterNetwork{{Name: "lab"}, {}}
		})},
		{"empty networks", clusterYAML + "networks: []\n", clusterSpec()},
		{"pack", withC("placement: spread", "placement: pack"), edit(func(s *model.ClusterSpec) { s.Roles[0].Placement = model.PlacementPack })},
		{"names of 58 characters together", withC("name: mpi", "name: "+strings.Repeat("c", 52)), edit(func(s *model.ClusterSpec) { s.Name = strings.Repeat("c", 52) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCluster([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseCluster: got error %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseCluster:\ngot  %s\nwant %s", dump(got), dump(tt.want))
			}
			clusterRoundTrip(t, got)
		})
	}
}

func dump(s model.ClusterSpec) string {
	js, _ := json.Marshal(s)
	return string(js)
}

// clusterRoundTrip checks that s survives ExportCluster, JSON and
// ApplySets without sets unchanged.
func clusterRoundTrip(t *testing.T, s model.ClusterSpec) {
	t.Helper()
	y, err := ExportCluster(s)
	if err != nil {
		t.Fatalf("ExportCluster: %v", err)
	}
	got, err := ParseCluster(y)
	if err != nil {
		t.Fatalf("ParseCluster(export %s): got error %v, want none", y, err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("export round trip of\n%s\ngot  %s\nwant %s", y, dump(got), dump(s))
	}
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if got, err = ParseCluster(js); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("JSON round trip of %s: got %s, %v", js, dump(got), err)
	}
	if got, err = ApplySets(s, nil); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("ApplySets without sets: got %s, %v; want %s", dump(got), err, dump(s))
	}
}

func TestParseClusterBad(t *testing.T) {
	keys := func(from, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "    - %s\n", sshKey("ssh-ed25519", fmt.Sprint("k", from+i)))
		}
		return b.String()
	}
	env := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s_%d: x, ", prefix, i)
		}
		return "{" + strings.TrimSuffix(b.String(), ", ") + "}"
	}
	manyRoles := "name: big\nduration: 1h\nroles:\n"
	for i := range 5 {
		manyRoles += fmt.Sprintf("  - {name: r%d, count: 256, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}\n", i)
	}
	tooManyRoles := "name: big\nduration: 1h\nroles:\n"
	for i := range 17 {
		tooManyRoles += fmt.Sprintf("  - {name: r%d, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}\n", i)
	}
	tests := []struct {
		name string
		in   string
		want string // the whole error
	}{
		{"unknown field with a hint", withC("quantum: {vcpus: 1, cpu: 0.25, memory: 128Mi}\n", "quantum: {vcpus: 1, cpus: 0.25, memory: 128Mi}\n"),
			"roles[1].quantum.cpus: unknown field (did you mean cpu or vcpus?)"},
		{"typo in a role", withC("    count: 2\n", "    conut: 2\n"), "roles[1].conut: unknown field (did you mean count?)"},
		{"synonym", withC("    count: 2\n", "    replicas: 2\n"), "roles[1].replicas: unknown field (did you mean count?)"},
		{"unknown field without a hint", clusterYAML + "colour: blue\n", "colour: unknown field"},
		{"typo at the top", withC("duration: 1h", "duraton: 1h"), "duraton: unknown field (did you mean duration?)"},
		{"case", withC("name: mpi", "Name: mpi"), "Name: unknown field (did you mean name?)"},
		{"unknown lease field", withC("lease: {kind: best-effort}", "lease: {knd: best-effort}"), "lease.knd: unknown field (did you mean kind?)"},
		{"duplicate role", clusterYAML + "  - {name: worker, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}\n", `roles[2].name: "worker" is used by roles[1]`},
		{"all problems at once", strings.NewReplacer("name: mpi", "name: Mpi", "count: 1", "count: -1", "memory: 128Mi}\n", "memory: 1Mi}\n", "placement: spread", "placement: spred").Replace(clusterYAML),
			"name: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter; roles[0].count: must not be negative, got -1; " +
				`roles[0].placement: unknown placement "spred" (want spread or pack, or none); roles[1].quantum.memory: must be at least 64Mi, got 1Mi`},
		{"decode problems at once", withC("count: 2", "count: two\n    colour: red") + "networks: {name: lab}\n",
			`networks: want a list, got an object; roles[1].colour: unknown field; roles[1].count: want an integer, got string "two"`},
		{"count too large", withC("count: 2", "count: 257"), "roles[1].count: must be at most 256, got 257"},
		{"count null", withC("count: 2", "count:"), "roles[1].count: want an integer, got null"},
		{"too many members", manyRoles, "roles: 1280 members in all, at most 1024 allowed"},
		{"too many roles", tooManyRoles, "roles: at most 16 roles allowed, got 17"},
		{"no roles", "name: x\nduration: 1h\n", "roles: required: at least one role"},
		{"empty roles", "name: x\nduration: 1h\nroles: []\n", "roles: required: at least one role"},
		{"roles not a list", "name: x\nduration: 1h\nroles: {head: {}}\n", "roles: want a list, got an object"},
		{"role not an object", "name: x\nduration: 1h\nroles: [head]\n", `roles[0]: want an object, got string "head"`},
		{"empty role", "name: x\nduration: 1h\nroles: [{}]\n",
			"roles[0].name: required; roles[0].image: required; roles[0].quantum.vcpus: required (1 to 64); roles[0].quantum.memory: required (64Mi to 1Ti)"},
		{"role name", withC("name: worker", "name: Worker_1"), "roles[1].name: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter"},
		{"member names too long", withC("name: mpi", "name: "+strings.Repeat("c", 55)),
			"roles[0].name: member names such as " + strings.Repeat("c", 55) + "-head-255 would be longer than 63 characters: the cluster's and the role's names may have 58 characters together, not 59; " +
				"roles[1].name: member names such as " + strings.Repeat("c", 55) + "-worker-255 would be longer than 63 characters: the cluster's and the role's names may have 58 characters together, not 61"},
		{"missing duration", withC("duration: 1h\n", ""), "duration: required (e.g. 30m, 2h, 1h30m)"},
		{"lease rules", withC("lease: {kind: best-effort}", "lease: {kind: reservation, preemptible: true}"),
			"lease.start: required for a reservation; lease.preemptible: only best-effort leases can be preempted, not a lease of kind reservation"},
		{"lease kind", withC("kind: best-effort", "kind: soon"), `lease.kind: unknown kind "soon" (want immediate, best-effort, reservation or deadline)`},
		{"hostname", withC("env: {APP: demo}", "env: {APP: demo}\n  hostname: mpi"),
			"context.hostname: not allowed in a cluster: each member's hostname is its name (<cluster>-<role>-<index>)"},
		{"role hostname", withC(`context: {user_data: "#!/bin/sh\necho head\n"}`, "context: {hostname: h}"),
			"roles[0].context.hostname: not allowed in a cluster: each member's hostname is its name (<cluster>-<role>-<index>)"},
		{"reserved env", withC(`context: {user_data: "#!/bin/sh\necho head\n"}`, "context: {env: {VGRID_ROLE: x}}"),
			"roles[0].context.env.VGRID_ROLE: is set by vgrid for each member: VGRID_CLUSTER, VGRID_ROLE, VGRID_INDEX are reserved"},
		{"role context rules", withC(`context: {user_data: "#!/bin/sh\necho head\n"}`, "context: {ssh_keys: [nope], env: {1X: z}}"),
			`roles[0].context.ssh_keys[0]: does not look like an SSH public key (want e.g. "ssh-ed25519 AAAA... user@host"); roles[0].context.env["1X"]: name must be letters, digits and '_', not starting with a digit`},
		{"env room", withC("env: {APP: demo}", "env: "+env("A", 62)), "context.env: at most 61 entries allowed (vgrid adds VGRID_CLUSTER, VGRID_ROLE, VGRID_INDEX), got 62"},
		{"merged env", withC("env: {APP: demo}", "env: "+env("A", 40)) + "    context: {env: " + env("B", 30) + "}\n",
			"roles[1].context.env: at most 61 entries allowed with the cluster's context (vgrid adds VGRID_CLUSTER, VGRID_ROLE, VGRID_INDEX), got 70"},
		{"merged ssh keys", withC("env: {APP: demo}", "ssh_keys:\n"+keys(0, 20)) + "    context:\n      ssh_keys:\n" + strings.ReplaceAll(keys(10, 30), "    -", "        -"),
			"roles[1].context.ssh_keys: at most 32 keys allowed with the cluster's context, got 40"},
		{"network name and subnet", clusterYAML + "networks: [{name: lab, subnet: 10.0.0.0/24}]\n",
			"networks[0].subnet: only the cluster's own network (the one without a name) takes a subnet: an existing network keeps its own"},
		{"two own networks", clusterYAML + "networks: [{}, {subnet: 10.0.0.0/24}]\n",
			"networks[1]: networks[0] is already the cluster's own network (the one without a name): give this one the name of an existing network"},
		{"network names", clusterYAML + "networks: [{name: lab}, {name: lab}, {name: Lab}]\n",
			`networks[1].name: "lab" is used by networks[0]; networks[2].name: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'`},
		{"public subnet", clusterYAML + "networks: [{subnet: 8.8.8.0/24}]\n",
			"networks[0].subnet: 8.8.8.0/24 is public address space: use a private range, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (CGNAT)"},
		{"subnet with host bits", clusterYAML + "networks: [{subnet: 10.0.0.1/24}]\n",
			"networks[0].subnet: 10.0.0.1/24 has host bits set: a subnet is written with its network address; did you mean 10.0.0.0/24?"},
		{"too many networks", clusterYAML + "networks: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]\n", "networks: at most 4 networks allowed, got 5"},
		{"bandwidth in bytes", withC("bandwidth: 100Mbit", "bandwidth: 100MB/s"),
			`roles[0].quantum.bandwidth: "100MB/s" is in bytes: write bandwidth in bits per second (100MB/s is 800Mbit)`},
		{"bandwidth without unit", withC("bandwidth: 100Mbit", "bandwidth: 100"), "roles[0].quantum.bandwidth: 100 has no unit: write bits per second, e.g. 100Mbit"},
		{"bandwidth with a bare prefix", withC("bandwidth: 100Mbit", "bandwidth: 100M"), `roles[0].quantum.bandwidth: "100M" has no unit: write bits per second, e.g. 100Mbit`},
		{"bandwidth too low", withC("bandwidth: 100Mbit", "bandwidth: 500kbit"), "roles[0].quantum.bandwidth: must be at least 1Mbit (or 0 for no cap), got 500kbit"},
		{"bandwidth too high", withC("bandwidth: 100Mbit", "bandwidth: 0.2Tbit"), "roles[0].quantum.bandwidth: must be at most 100Gbit, got 200Gbit"},
		{"negative bandwidth", withC("bandwidth: 100Mbit", "bandwidth: -1Mbit"), "roles[0].quantum.bandwidth: must not be negative, got -1Mbit"},
		{"bandwidth unit", withC("bandwidth: 100Mbit", "bandwidth: 1Xbit"), `roles[0].quantum.bandwidth: unknown unit "Xbit" in "1Xbit" (use bit, kbit, Mbit, Gbit or Tbit, e.g. 100Mbit)`},
		{"bandwidth of wrong type", withC("bandwidth: 100Mbit", "bandwidth: [1]"), "roles[0].quantum.bandwidth: want a bandwidth such as 100Mbit or 1Gbit, got a list"},
		{"duplicate key", withC("count: 2", "count: 2\n    count: 3"), "roles[1].count: duplicate key (line 15)"},
		{"empty", "\n", "parse spec: empty document"},
		{"a list", "- a\n", "parse spec: want an object, got a list"},
		{"two documents", clusterYAML + "---\nname: x\n", "parse spec: yaml: more than one document (a spec is a single document)"},
		{"JSON trailing data", `{"name":"x"} {}`, "parse spec: json: line 1: unexpected data after the top-level object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCluster([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseCluster: got %s and no error, want %q", dump(got), tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("ParseCluster:\ngot  %q\nwant %q", err, tt.want)
			}
			var fe *FieldErrors
			if isField := errors.As(err, &fe); isField == strings.HasPrefix(tt.want, "parse spec: ") {
				t.Fatalf("ParseCluster: got %T, want *FieldErrors only for field problems", err)
			}
		})
	}
}

func TestValidateClusterImages(t *testing.T) {
	s := clusterSpec()
	s.Roles[1].Image = "ubuntu"
	if err := ValidateCluster(s, images("vgrid-guest")); err == nil || err.Error() != `roles[1].image: unknown image "ubuntu" (known: vgrid-guest)` {
		t.Fatalf("ValidateCluster: got %v", err)
	}
	if err := ValidateCluster(s, images("vgrid-guest", "ubuntu")); err != nil {
		t.Fatalf("ValidateCluster: got %v, want nil", err)
	}
}

func TestClusterFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/cluster/*")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../examples/cluster.yaml")
	if len(files) < 4 {
		t.Fatalf("cluster files: got %d, want at least 4", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseCluster(data)
			if err != nil {
				t.Fatalf("ParseCluster: got error %v, want none", err)
			}
			clusterRoundTrip(t, s)
			checkMembers(t, s)
		})
	}
}

func TestExampleCluster(t *testing.T) {
	data, err := os.ReadFile("../../examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseCluster(data)
	if err != nil {
		t.Fatalf("ParseCluster: %v", err)
	}
	var names []string
	for _, m := range s.Members() {
		names = append(names, m.Name)
		if q := m.Spec.Quantum; q.Memory != 128*model.MiB || q.CPU != 0.25 || m.Spec.Image != "vgrid-guest" {
			t.Errorf("member %s: got %s %+v, want vgrid-guest with 128Mi and 0.25 cores", m.Name, m.Spec.Image, q)
		}
	}
	if want := []string{"mpi-head-0", "mpi-worker-0", "mpi-worker-1"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("members: got %v, want %v", names, want)
	}
	if s.Duration.D() != time.Hour || (s.Lease != nil && s.Lease.Kind != model.LeaseBestEffort && s.Lease.Kind != model.LeaseImmediate) {
		t.Fatalf("lease: got %v %+v, want 1h, best-effort or immediate", s.Duration, s.Lease)
	}
	scaled, err := ApplySets(s, []string{"worker.count=8", "worker.quantum.memory=256Mi"})
	if err != nil {
		t.Fatalf("ApplySets: %v", err)
	}
	if w, _ := scaled.Role("worker"); w.Count != 8 || w.Quantum.Memory != 256*model.MiB || scaled.Size() != 9 {
		t.Fatalf("scaled: got %+v, size %d", w, scaled.Size())
	}
}

func TestExportCluster(t *testing.T) {
	s := clusterSpec()
	s.Roles[1].Count = 0
	s.Networks = []model.ClusterNetwork{{Name: "lab"}, {Subnet: "10.10.0.0/24"}}
	s.Duration = model.Duration(90 * time.Minute)
	got, err := ExportCluster(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `name: mpi
lease:
  kind: best-effort
duration: 1h30m
context:
  env:
    APP: demo
networks:
- name: lab
- subnet: 10.10.0.0/24
roles:
- name: head
  count: 1
  image: vgrid-guest
  quantum:
    vcpus: 1
    cpu: 0.25
    memory: 128Mi
    disk: 512Mi
    bandwidth: 100Mbit
  context:
    user_data: |
      #!/bin/sh
      echo head
  placement: spread
- name: worker
  count: 0
  image: vgrid-guest
  quantum:
    vcpus: 1
    cpu: 0.25
    memory: 128Mi
`
	if string(got) != want {
		t.Fatalf("ExportCluster:\n%s\nwant:\n%s", got, want)
	}
	clusterRoundTrip(t, s)
}

func TestExportClusterRoundTrip(t *testing.T) {
	no := false
	tricky := []string{"", "yes", "no", "on", "~", "null", "4", "0x10", "1e3", "2026-11-24", "12:30", "a: b", "- x", "#x", "'q'", `"q"`,
		" lead", "trail ", "tab\there", "multi\nline\n", "no newline\nat end", "keep\n\n\n", "\n\nlead", "crlf\r\nx", "uni ✓ ü", "\u2028", "&anchor", "*alias", "!tag", "%x", "@x", "`x", "{", "[", "|", ">"}
	env := map[string]string{}
	for i, v := range tricky {
		env[fmt.Sprintf("V%d", i)] = v
	}
	specs := map[string]model.ClusterSpec{
		"base": clusterSpec(),
		"minimal": {Name: "m", Duration: model.Duration(time.Second), Roles: []model.ClusterRole{
			{Name: "r", Count: 1, Image: "i", Quantum: model.Quantum{VCPUs: 1, Memory: MinMemory}},
		}},
		"everything": {
			Name:     "every-thing",
			Lease:    &model.LeaseSpec{Kind: model.LeaseDeadline, Deadline: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)},
			Duration: model.Duration(90*time.Minute + 1500*time.Millisecond),
			Context:  &model.Context{UserData: "#!/bin/sh\n  indented\n\ttabbed  \n", SSHKeys: []string{sshKey("ssh-rsa", "a b"), " " + sshKey("ssh-ed25519", "") + " "}, Env: env},
			Networks: []model.ClusterNetwork{{}, {Name: "lab"}},
			Roles: []model.ClusterRole{
				{Name: "a", Count: 256, Image: "img.v1_2-3", Quantum: model.Quantum{VCPUs: 64, CPU: 0.01, Memory: 1000000000, Disk: MaxDisk, DiskIOPS: MaxDiskIOPS, DiskBPS: 12345, Bandwidth: 1234567}, Placement: model.PlacementPack},
				{Name: "b-2", Count: 0, Image: "x", Quantum: model.Quantum{VCPUs: 3, CPU: 2.999999, Memory: 3 * model.GiB, Bandwidth: MaxBandwidth}, Context: &model.Context{UserData: "role", Env: map[string]string{"V1": "over"}}},
			},
		},
		"best effort": {Name: "be", Lease: &model.LeaseSpec{Kind: model.LeaseBestEffort, Preemptible: &no}, Duration: model.Duration(MaxDuration), Roles: []model.ClusterRole{
			{Name: "r", Count: 3, Image: "i", Quantum: model.Quantum{VCPUs: 2, Memory: MaxMemory, Bandwidth: MinBandwidth}, Context: &model.Context{SSHKeys: []string{sshKey("ecdsa-sha2-nistp256", "")}}},
		}},
	}
	for name, s := range specs {
		t.Run(name, func(t *testing.T) {
			if err := ValidateCluster(s, nil); err != nil {
				t.Fatalf("ValidateCluster: %v", err)
			}
			clusterRoundTrip(t, s)
		})
	}
}

func TestApplySets(t *testing.T) {
	base := clusterSpec()
	edit := func(f func(*model.ClusterSpec)) model.ClusterSpec {
		s := clusterSpec()
		f(&s)
		return s
	}
	no := false
	key := sshKey("ssh-ed25519", "me")
	tests := []struct {
		name string
		sets []string
		want model.ClusterSpec
	}{
		{"count", []string{"worker.count=8"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Count = 8 })},
		{"scale down", []string{"roles.worker.count=0"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Count = 0 })},
		{"last set wins", []string{"worker.count=3", "worker.count=4"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Count = 4 })},
		{"memory", []string{"worker.quantum.memory=256Mi"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Quantum.Memory = 256 * model.MiB })},
		{"memory in bytes", []string{"worker.quantum.memory=268435456"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Quantum.Memory = 256 * model.MiB })},
		{"bandwidth", []string{"worker.quantum.bandwidth=1.5Gbit"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Quantum.Bandwidth = 1500 * model.Mbit })},
		{"remove a cap", []string{"head.quantum.bandwidth=0", "head.quantum.disk=0"}, edit(func(s *model.ClusterSpec) { s.Roles[0].Quantum.Bandwidth, s.Roles[0].Quantum.Disk = 0, 0 })},
		{"quantum whole", []string{"head.quantum={vcpus: 2, memory: 1Gi}"}, edit(func(s *model.ClusterSpec) { s.Roles[0].Quantum = model.Quantum{VCPUs: 2, Memory: model.GiB} })},
		{"image and placement", []string{"worker.image=ubuntu-24.04", "worker.placement=pack", "head.placement="}, edit(func(s *model.ClusterSpec) {
			s.Roles[1].Image, s.Roles[1].Placement, s.Roles[0].Placement = "ubuntu-24.04", model.PlacementPack, ""
		})},
		{"cluster fields", []string{"name=hpc", "duration=90m"}, edit(func(s *model.ClusterSpec) { s.Name, s.Duration = "hpc", model.Duration(90*time.Minute) })},
		{"lease kind", []string{"lease.kind=immediate"}, edit(func(s *model.ClusterSpec) { s.Lease.Kind = model.LeaseImmediate })},
		{"no lease", []string{"lease="}, edit(func(s *model.ClusterSpec) { s.Lease = nil })},
		{"reservation", []string{"lease.kind=reservation", "lease.start=2026-11-24T14:00:00+01:00"}, edit(func(s *model.ClusterSpec) {
			s.Lease = &model.LeaseSpec{Kind: model.LeaseReservation, Start: time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)}
		})},
		{"lease whole", []string{`lease={kind: deadline, deadline: "2026-11-24T18:00:00Z"}`}, edit(func(s *model.ClusterSpec) {
			s.Lease = &model.LeaseSpec{Kind: model.LeaseDeadline, Deadline: time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)}
		})},
		{"not preemptible", []string{"lease.preemptible=false"}, edit(func(s *model.ClusterSpec) { s.Lease.Preemptible = &no })},
		{"env values are text", []string{"context.env.FLAG=yes", "context.env.N=08", "context.env.APP="}, edit(func(s *model.ClusterSpec) {
			s.Context.Env = map[string]string{"APP": "", "FLAG": "yes", "N": "08"}
		})},
		{"role context made", []string{"worker.context.env.RANK=1"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Context = &model.Context{Env: map[string]string{"RANK": "1"}} })},
		{"role context cleared", []string{"head.context.user_data="}, edit(func(s *model.ClusterSpec) { s.Roles[0].Context = nil })},
		{"user data with = and newlines", []string{"worker.context.user_data=#!/bin/sh\nA=b: c\n"}, edit(func(s *model.ClusterSpec) {
			s.Roles[1].Context = &model.Context{UserData: "#!/bin/sh\nA=b: c\n"}
		})},
		{"ssh keys", []string{`context.ssh_keys=["` + key + `"]`}, edit(func(s *model.ClusterSpec) { s.Context.SSHKeys = []string{key} })},
		{"networks", []string{"networks=[{name: lab}, {subnet: 10.1.0.0/16}]"}, edit(func(s *model.ClusterSpec) {
			s.Networks = []model.ClusterNetwork{{Name: "lab"}, {Subnet: "10.1.0.0/16"}}
		})},
		{"rename, then use the new name", []string{"worker.name=w", "w.count=5"}, edit(func(s *model.ClusterSpec) { s.Roles[1].Name, s.Roles[1].Count = "w", 5 })},
		{"roles whole, count defaults", []string{"roles=[{name: solo, image: vgrid-guest, quantum: {vcpus: 1, memory: 64Mi}}]", "solo.quantum.cpu=0.5"}, edit(func(s *model.ClusterSpec) {
			s.Roles = []model.ClusterRole{{Name: "solo", Count: 1, Image: "vgrid-guest", Quantum: model.Quantum{VCPUs: 1, CPU: 0.5, Memory: 64 * model.MiB}}}
		})},
		{"none", nil, base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ApplySets(base, tt.sets)
			if err != nil {
				t.Fatalf("ApplySets(%q): got error %v, want none", tt.sets, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ApplySets(%q):\ngot  %s\nwant %s", tt.sets, dump(got), dump(tt.want))
			}
			if !reflect.DeepEqual(base, clusterSpec()) {
				t.Fatalf("ApplySets changed its argument")
			}
			clusterRoundTrip(t, got)
		})
	}
}

func TestApplySetsBad(t *testing.T) {
	tests := []struct {
		sets []string
		want string
	}{
		{[]string{"worker.quantum.cpus=2"}, "--set worker.quantum.cpus=2: unknown field cpus (did you mean cpu or vcpus?)"},
		{[]string{"gpu.count=2"}, `--set gpu.count=2: no role "gpu" (roles: head, worker)`},
		{[]string{"lese.kind=x"}, `--set lese.kind=x: no role "lese" (roles: head, worker; or did you mean the field lease?)`},
		{[]string{"duraton=2h"}, "--set duraton=2h: unknown field duraton (did you mean duration?)"},
		{[]string{"count=2"}, "--set count=2: unknown field count: a role's count is set as ROLE.count, e.g. worker.count"},
		{[]string{"worker=3"}, "--set worker=3: want worker.FIELD=VALUE, e.g. worker.count=3 (a role is not set whole)"},
		{[]string{"roles.worker=3"}, "--set roles.worker=3: want roles.worker.FIELD=VALUE, e.g. roles.worker.count=3 (a role is not set whole)"},
		{[]string{"worker.count"}, "--set worker.count: want PATH=VALUE, e.g. worker.count=3"},
		{[]string{"=3"}, "--set =3: want PATH=VALUE, e.g. worker.count=3"},
		{[]string{"worker..count=3"}, `--set worker..count=3: path "worker..count" has an empty element`},
		{[]string{"worker.count=two"}, `--set worker.count=two: want an integer, got string "two"`},
		{[]string{"worker.count=1.5"}, "--set worker.count=1.5: want an integer, got number 1.5"},
		{[]string{"worker.count="}, "--set worker.count=: want an integer, got null"},
		{[]string{"worker.count.x=1"}, "--set worker.count.x=1: worker.count has no fields"},
		{[]string{"context.env.A.B=x"}, "--set context.env.A.B=x: context.env.A has no fields"},
		{[]string{"networks.name=x"}, "--set networks.name=x: networks is a list: set it whole, e.g. networks=[...]"},
		{[]string{"networks=[{name: lab}]", "networks.name=x"}, "--set networks.name=x: networks is a list: set it whole, e.g. networks=[...]"},
		{[]string{"worker.context.ssh_keys.x=y"}, "--set worker.context.ssh_keys.x=y: worker.context.ssh_keys is a list: set it whole, e.g. worker.context.ssh_keys=[...]"},
		{[]string{"worker.quantum.memory=5Zi"}, `--set worker.quantum.memory=5Zi: unknown unit "Zi" in "5Zi" (use B, Ki, Mi, Gi, Ti, K, M, G, T)`},
		{[]string{"worker.quantum.bandwidth=10MB"}, `--set worker.quantum.bandwidth=10MB: "10MB" is in bytes: write bandwidth in bits per second (10MB is 80Mbit)`},
		{[]string{"worker.quantum={vcpus: 1, cpus: 2}"}, "--set worker.quantum={vcpus: 1, cpus: 2}: cpus: unknown field (did you mean cpu or vcpus?)"},
		{[]string{"lease={kind: [}"}, "--set lease={kind: [}: yaml: did not find expected node content"},
		{[]string{"worker.count=300"}, "--set worker.count=300: must be at most 256, got 300"},
		{[]string{"worker.quantum.memory=1Mi"}, "--set worker.quantum.memory=1Mi: must be at least 64Mi, got 1Mi"},
		{[]string{"worker.quantum.cpu=2"}, "--set worker.quantum.cpu=2: 2 cores exceeds vcpus (1)"},
		{[]string{"worker.quantum={vcpus: 1, cpu: 2, memory: 1Gi}"}, "--set worker.quantum={vcpus: 1, cpu: 2, memory: 1Gi}: cpu: 2 cores exceeds vcpus (1)"},
		{[]string{"lease.kind=soon"}, `--set lease.kind=soon: unknown kind "soon" (want immediate, best-effort, reservation or deadline)`},
		{[]string{"lease.kind=reservation"}, "lease.start: required for a reservation"},
		{[]string{"name=Bad"}, "--set name=Bad: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter"},
		{[]string{"head.name=worker"}, `roles[1].name: "worker" is used by roles[0]`},
		{[]string{"worker.placement=random"}, `--set worker.placement=random: unknown placement "random" (want spread or pack, or none)`},
		{[]string{"context.hostname=x"}, "--set context.hostname=x: not allowed in a cluster: each member's hostname is its name (<cluster>-<role>-<index>)"},
		{[]string{"worker.context.env.VGRID_INDEX=7"}, "--set worker.context.env.VGRID_INDEX=7: is set by vgrid for each member: VGRID_CLUSTER, VGRID_ROLE, VGRID_INDEX are reserved"},
		{[]string{"worker.count=1000", "head.count=256", "roles.x.count=1"}, `--set roles.x.count=1: no role "x" (roles: head, worker)`},
		{[]string{"worker.count=256", "head.count=256", "roles=[]"}, "--set roles=[]: required: at least one role"},
		{[]string{"worker.count=x", "gpu.count=1", "worker.quantum.cpus=1"},
			`--set worker.count=x: want an integer, got string "x"; --set gpu.count=1: no role "gpu" (roles: head, worker); --set worker.quantum.cpus=1: unknown field cpus (did you mean cpu or vcpus?)`},
	}
	for _, tt := range tests {
		_, err := ApplySets(clusterSpec(), tt.sets)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ApplySets(%q):\ngot  %v\nwant %s", tt.sets, err, tt.want)
		}
	}
}

func TestApplySetsLongSet(t *testing.T) {
	set := "worker.context.user_data=" + strings.Repeat("é", 100)
	_, err := ApplySets(clusterSpec(), []string{set, "worker.context.hostname=h"})
	want := "--set worker.context.hostname=h: not allowed in a cluster: each member's hostname is its name (<cluster>-<role>-<index>)"
	if err == nil || err.Error() != want {
		t.Fatalf("ApplySets: got %v, want %s", err, want)
	}
	_, err = ApplySets(clusterSpec(), []string{set + "=", "worker.count=x"})
	if err == nil || !strings.Contains(err.Error(), "--set worker.count=x") {
		t.Fatalf("ApplySets: got %v", err)
	}
	_, err = ApplySets(clusterSpec(), []string{"worker.count=" + strings.Repeat("9", 100)})
	name := setName("worker.count=" + strings.Repeat("9", 100))
	if err == nil || !strings.HasPrefix(err.Error(), name+": ") || len(name) != len("--set ")+80+len("...") {
		t.Fatalf("ApplySets: got %v, want it to start with %q", err, name)
	}
	if n := setName("x=" + strings.Repeat("é", 60)); !strings.HasSuffix(n, "é...") {
		t.Fatalf("setName cut a character in two: %q", n)
	}
}

func TestApplySetsBlamesOnlyItsFields(t *testing.T) {
	// The set is valid; the member names it leads to are not: the error is
	// about the roles, not the set.
	long := strings.Repeat("n", 55)
	_, err := ApplySets(clusterSpec(), []string{"name=" + long})
	want := "roles[0].name: member names such as " + long + "-head-255 would be longer than 63 characters"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("ApplySets: got %v, want it to start with %q", err, want)
	}
}

// checkMembers checks the invariants of a cluster's members: the count,
// unique valid names, each a valid workspace.
func checkMembers(t *testing.T, s model.ClusterSpec) {
	t.Helper()
	members := s.Members()
	if len(members) != s.Size() {
		t.Fatalf("Members: got %d, want Size %d", len(members), s.Size())
	}
	seen := map[string]bool{}
	for _, m := range members {
		if seen[m.Name] {
			t.Fatalf("Members: %s twice", m.Name)
		}
		seen[m.Name] = true
		if m.Name != model.MemberName(s.Name, m.Role, m.Index) || m.Spec.Name != m.Name || m.Spec.Context.Hostname != m.Name {
			t.Fatalf("member %+v: names disagree", m)
		}
		if err := Validate(m.Spec, nil); err != nil {
			t.Fatalf("member %s: Validate: %v", m.Name, err)
		}
	}
}

func TestMembers(t *testing.T) {
	s := clusterSpec()
	shared, roleKey := sshKey("ssh-ed25519", "shared"), sshKey("ssh-ed25519", "role")
	s.Context = &model.Context{UserData: "shared", SSHKeys: []string{shared}, Env: map[string]string{"APP": "demo", "MODE": "x"}}
	s.Roles[1].Context = &model.Context{SSHKeys: []string{roleKey, shared}, Env: map[string]string{"MODE": "worker"}}
	s.Roles = append(s.Roles, model.ClusterRole{Name: "idle", Count: 0, Image: "vgrid-guest", Quantum: model.Quantum{VCPUs: 1, Memory: 64 * model.MiB}})
	if err := ValidateCluster(s, nil); err != nil {
		t.Fatal(err)
	}
	members := s.Members()
	type short struct {
		Name, Role string
		Index      int
		Placement  model.Placement
	}
	var got []short
	for _, m := range members {
		got = append(got, short{m.Name, m.Role, m.Index, m.Placement})
	}
	want := []short{{"mpi-head-0", "head", 0, "spread"}, {"mpi-worker-0", "worker", 0, ""}, {"mpi-worker-1", "worker", 1, ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Members: got %+v, want %+v", got, want)
	}
	head, w1 := members[0].Spec, members[2].Spec
	wantHead := model.WorkspaceSpec{
		Name: "mpi-head-0", Image: "vgrid-guest", Quantum: s.Roles[0].Quantum, Duration: s.Duration,
		Context: &model.Context{
			UserData: "#!/bin/sh\necho head\n", // the role's
			SSHKeys:  []string{shared},
			Env:      map[string]string{"APP": "demo", "MODE": "x", "VGRID_CLUSTER": "mpi", "VGRID_ROLE": "head", "VGRID_INDEX": "0"},
			Hostname: "mpi-head-0",
		},
		Lease: &model.LeaseSpec{Kind: model.LeaseBestEffort},
	}
	if !reflect.DeepEqual(head, wantHead) {
		t.Fatalf("head:\ngot  %+v %+v\nwant %+v %+v", head, *head.Context, wantHead, *wantHead.Context)
	}
	wantW1 := &model.Context{
		UserData: "shared",
		SSHKeys:  []string{shared, roleKey},
		Env:      map[string]string{"APP": "demo", "MODE": "worker", "VGRID_CLUSTER": "mpi", "VGRID_ROLE": "worker", "VGRID_INDEX": "1"},
		Hostname: "mpi-worker-1",
	}
	if !reflect.DeepEqual(w1.Context, wantW1) {
		t.Fatalf("worker 1 context: got %+v, want %+v", *w1.Context, *wantW1)
	}
	// Members share nothing with the spec or with one another.
	members[1].Spec.Context.Env["APP"] = "changed"
	members[1].Spec.Context.SSHKeys[0] = "changed"
	members[1].Spec.Lease.Kind = model.LeaseImmediate
	if s.Context.Env["APP"] != "demo" || s.Context.SSHKeys[0] != shared || s.Lease.Kind != model.LeaseBestEffort || members[2].Spec.Context.Env["APP"] != "demo" {
		t.Fatalf("a member's spec shares its maps, lists or lease")
	}
	checkMembers(t, s)

	if got := (model.ClusterSpec{Name: "x", Roles: []model.ClusterRole{{Name: "r", Count: 0}}}).Members(); len(got) != 0 {
		t.Fatalf("Members of a scaled-down cluster: got %v, want none", got)
	}
	if sub, ok := s.OwnNetwork(); !ok || sub != "" {
		t.Fatalf("OwnNetwork without networks: got %q, %v", sub, ok)
	}
	s.Networks = []model.ClusterNetwork{{Name: "lab"}}
	if _, ok := s.OwnNetwork(); ok {
		t.Fatalf("OwnNetwork with only a named network: got true")
	}
	s.Networks = append(s.Networks, model.ClusterNetwork{Subnet: "10.9.0.0/24"})
	if sub, ok := s.OwnNetwork(); !ok || sub != "10.9.0.0/24" {
		t.Fatalf("OwnNetwork: got %q, %v", sub, ok)
	}
}

func TestLargestCluster(t *testing.T) {
	s := model.ClusterSpec{Name: strings.Repeat("c", 29), Duration: model.Duration(time.Hour)}
	for i := range 4 {
		s.Roles = append(s.Roles, model.ClusterRole{Name: fmt.Sprintf("%s%d", strings.Repeat("r", 28), i), Count: 256, Image: "vgrid-guest", Quantum: model.Quantum{VCPUs: 1, Memory: 64 * model.MiB}})
	}
	if err := ValidateCluster(s, nil); err != nil {
		t.Fatalf("ValidateCluster: %v", err)
	}
	checkMembers(t, s)
	if last := s.Members()[1023].Name; len(last) != 63 {
		t.Fatalf("last member %q: got %d characters, want 63", last, len(last))
	}
}

func TestParseBitRate(t *testing.T) {
	good := map[string]model.BitRate{
		"0": 0, "100Mbit": 100 * model.Mbit, "1.5Gbit": 1500 * model.Mbit, "800kbit": 800 * model.Kbit, "800Kbit": 800 * model.Kbit,
		"1Gbit/s": model.Gbit, "100Mbps": 100 * model.Mbit, " 2Tbit ": 2 * model.Tbit, "123bit": 123, "10bps": 10, "1e8bit": 100 * model.Mbit, "2.5E-1Gbit": 250 * model.Mbit, "-1Mbit": -model.Mbit,
	}
	for in, want := range good {
		got, err := model.ParseBitRate(in)
		if err != nil || got != want {
			t.Errorf("ParseBitRate(%q): got %v, %v; want %v", in, got, err, want)
		}
		if back, err := model.ParseBitRate(got.String()); err != nil || back != got {
			t.Errorf("ParseBitRate(%q.String() = %q): got %v, %v", in, got.String(), back, err)
		}
	}
	bad := map[string]string{
		"":                      "empty bandwidth",
		"fast":                  `"fast" is not a bandwidth (want bits per second with a unit, e.g. 100Mbit or 1Gbit)`,
		"100":                   `"100" has no unit: write bits per second, e.g. 100Mbit`,
		"100M":                  `"100M" has no unit: write bits per second, e.g. 100Mbit`,
		"12MB":                  `"12MB" is in bytes: write bandwidth in bits per second (12MB is 96Mbit)`,
		"1GiB/s":                `"1GiB/s" is in bytes: write bandwidth in bits per second (1GiB/s is 8589934592bit)`,
		"10Mi":                  `"10Mi" is in bytes: write bandwidth in bits per second (10Mi is 83886080bit)`,
		"1MBps":                 `"1MBps" is in bytes: write bandwidth in bits per second (1MBps is 8Mbit)`,
		"1e400PB":               `"1e400PB" is not a bandwidth (want bits per second with a unit, e.g. 100Mbit or 1Gbit)`,
		"9e30TB":                `"9e30TB" is in bytes: write bandwidth in bits per second (e.g. 100Mbit)`,
		"1e3Mbit/h":             `unknown unit "Mbit/h" in "1e3Mbit/h" (use bit, kbit, Mbit, Gbit or Tbit, e.g. 100Mbit)`,
		"99999999999999999Tbit": `"99999999999999999Tbit" is too large`,
		"1Mibit":                `unknown unit "Mibit" in "1Mibit" (use bit, kbit, Mbit, Gbit or Tbit, e.g. 100Mbit)`,
	}
	for in, want := range bad {
		if got, err := model.ParseBitRate(in); err == nil || err.Error() != want {
			t.Errorf("ParseBitRate(%q): got %v, %v; want error %q", in, got, err, want)
		}
	}
	for rate, want := range map[model.BitRate]string{0: "0", 1: "1bit", 1500: "1500bit", 2000: "2kbit", 1_500_000_000: "1500Mbit", 3 * model.Tbit: "3Tbit"} {
		if got := rate.String(); got != want {
			t.Errorf("BitRate(%d).String(): got %q, want %q", int64(rate), got, want)
		}
	}
	var r model.BitRate
	if err := json.Unmarshal([]byte(`"1Gbit"`), &r); err != nil || r != model.Gbit {
		t.Errorf("UnmarshalJSON: got %v, %v", r, err)
	}
	if err := json.Unmarshal([]byte(`8000000`), &r); err == nil {
		t.Errorf("UnmarshalJSON of a bare number: got %v, want an error", r)
	}
	if js, _ := json.Marshal(model.Quantum{VCPUs: 1, Bandwidth: 100 * model.Mbit}); string(js) != `{"vcpus":1,"memory":"0","bandwidth":"100Mbit"}` {
		t.Errorf("Quantum JSON: got %s", js)
	}
}

func TestWorkspaceBandwidth(t *testing.T) {
	s, err := Parse([]byte(with("disk: 1Gi", "disk: 1Gi\n  bandwidth: 250Mbit")))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.Quantum.Bandwidth != 250*model.Mbit {
		t.Fatalf("bandwidth: got %v, want 250Mbit", s.Quantum.Bandwidth)
	}
	roundTrip(t, s)
	for in, want := range map[string]string{
		"10MB":    `quantum.bandwidth: "10MB" is in bytes: write bandwidth in bits per second (10MB is 80Mbit)`,
		"100":     "quantum.bandwidth: 100 has no unit: write bits per second, e.g. 100Mbit",
		"999bit":  "quantum.bandwidth: must be at least 1Mbit (or 0 for no cap), got 999bit",
		"101Gbit": "quantum.bandwidth: must be at most 100Gbit, got 101Gbit",
	} {
		_, err := Parse([]byte(with("disk: 1Gi", "disk: 1Gi\n  bandwidth: "+in)))
		if err == nil || err.Error() != want {
			t.Errorf("Parse with bandwidth %s: got %v, want %s", in, err, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"cpus", "cpu", 1}, {"cpus", "vcpus", 1}, {"memroy", "memory", 1}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"ca", "abc", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q): got %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
