package agent

import (
	"encoding/json"
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vgrid/internal/model"
)

const testPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"

// testCluster is a vgrid-cluster.json as the qemu driver writes it.
const testCluster = `{
  "name": "c",
  "role": "a",
  "index": 0,
  "head": "c-a-0",
  "members": [
    {"name": "c-a-0", "role": "a", "address": "10.77.0.2"},
    {"name": "c-b-0", "role": "b", "address": "10.77.0.3"},
    {"name": "c-b-1", "role": "b"},
    {"name": "bad name", "role": "b", "address": "10.77.0.9"},
    {"name": "c-b-0", "role": "b", "address": "10.77.0.4"}
  ],
  "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
  "public_key": "ssh-ed25519 CLUSTER vgrid-cluster-c",
  "revision": 3,
  "future_field": true
}`

func TestParseCluster(t *testing.T) {
	c, err := ParseCluster([]byte(testCluster))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "c" || c.Head != "c-a-0" || len(c.Members) != 5 || c.Revision != 3 ||
		c.Members[1].Address != netip.MustParseAddr("10.77.0.3") || c.Members[2].Address.IsValid() {
		t.Errorf("got %+v", c)
	}
	for _, bad := range []string{"", "[]", `{"members": 3}`, `{"public_key": "a\nb"}`, `{"members": [{"address": "10.0.0.300"}]}`} {
		if _, err := ParseCluster([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestHostsFile(t *testing.T) {
	c, err := ParseCluster([]byte(testCluster))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Written by the vgrid guest agent at boot: cluster c, roster revision 3.\n" +
		"127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"10.77.0.2\tc-a-0\n" +
		"10.77.0.3\tc-b-0\n"
	if got := string(HostsFile("c-a-0", c)); got != want {
		t.Errorf("member in the roster: got\n%s\nwant\n%s", got, want)
	}
	// A host name the roster has no address for resolves locally.
	want = strings.Replace(want, "::1\tlocalhost ip6-localhost ip6-loopback\n", "::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tc-b-1\n", 1)
	if got := string(HostsFile("c-b-1", c)); got != want {
		t.Errorf("member without an address: got\n%s\nwant\n%s", got, want)
	}
	// An IPv4-mapped address is written as IPv4; a name with a newline is
	// left out; the cluster's name cannot break the comment line.
	odd := &model.ClusterContext{Name: "x\ny", Members: []model.RosterEntry{
		{Name: "m0", Address: netip.MustParseAddr("::ffff:10.0.0.1")},
		{Name: "m1\n10.6.6.6 evil", Address: netip.MustParseAddr("10.0.0.2")},
		{Name: "m2", Address: netip.MustParseAddr("fd00::2")},
	}}
	got := string(HostsFile("", odd))
	if !strings.Contains(got, "\n10.0.0.1\tm0\n") || !strings.Contains(got, "\nfd00::2\tm2\n") ||
		strings.Contains(got, "evil") || strings.Contains(got, "127.0.1.1") || !strings.HasPrefix(got, "# Written by the vgrid guest agent at boot: cluster x y,") {
		t.Errorf("got\n%s", got)
	}
}

func TestAddAuthorizedKey(t *testing.T) {
	for _, tt := range []struct {
		in, key, want string
		changed       bool
	}{
		{"", "k", "k\n", true},
		{"a\n", "k", "a\nk\n", true},
		{"a", "k", "a\nk\n", true},
		{"a\nk\n", "k", "a\nk\n", false},
		{"a\n  k \r\nb", " k\n", "a\n  k \r\nb", false},
		{"a\nkk\n", "k", "a\nkk\nk\n", true},
	} {
		got, changed := addAuthorizedKey([]byte(tt.in), tt.key)
		if string(got) != tt.want || changed != tt.changed {
			t.Errorf("%q + %q: got %q, %v; want %q, %v", tt.in, tt.key, got, changed, tt.want, tt.changed)
		}
	}
}

func TestApplyCluster(t *testing.T) {
	root := t.TempDir()
	a := New(Config{Root: root, Log: log.New(io.Discard, "", 0)})
	// The user's own key is there already (from the seed's public-keys).
	if err := writeFile(filepath.Join(root, authKeysFile), []byte("ssh-ed25519 USER u@h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // again: an agent restart changes nothing
		rev, err := a.applyCluster([]byte(testCluster), "c-a-0")
		if err != nil || rev != 3 {
			t.Fatalf("apply %d: %d, %v", i, rev, err)
		}
	}
	files := []struct {
		path, content string
		mode          os.FileMode
	}{
		{clusterKeyFile, testPrivateKey + "\n", 0o600},
		{clusterPubFile, "ssh-ed25519 CLUSTER vgrid-cluster-c\n", 0o644},
		{authKeysFile, "ssh-ed25519 USER u@h\nssh-ed25519 CLUSTER vgrid-cluster-c\n", 0o600},
		{hostsFile, "", 0o644},
		{clusterFile, "", 0o600},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if st.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode().Perm(), f.mode)
		}
		b, _ := os.ReadFile(p)
		if f.content != "" && string(b) != f.content {
			t.Errorf("%s: got %q, want %q", f.path, b, f.content)
		}
	}
	if st, err := os.Stat(filepath.Join(root, sshDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, %v; want mode 0700", sshDir, st.Mode(), err)
	}
	b, _ := os.ReadFile(filepath.Join(root, clusterFile))
	back, err := ParseCluster(b)
	if err != nil || back.Revision != 3 || back.PrivateKey != testPrivateKey || len(back.Members) != 5 {
		t.Errorf("cluster.json: %+v, %v", back, err)
	}
	b, _ = os.ReadFile(filepath.Join(root, hostsFile))
	if !strings.Contains(string(b), "10.77.0.3\tc-b-0\n") {
		t.Errorf("hosts:\n%s", b)
	}

	// A cluster without keys writes none; a bad file applies nothing.
	root2 := t.TempDir()
	b2 := New(Config{Root: root2, Log: log.New(io.Discard, "", 0)})
	if rev, err := b2.applyCluster([]byte(`{"name":"n","members":[],"revision":1}`), "h"); err != nil || rev != 1 {
		t.Errorf("no keys: %d, %v", rev, err)
	}
	if _, err := os.Stat(filepath.Join(root2, sshDir)); !os.IsNotExist(err) {
		t.Errorf("no keys: %s made (%v)", sshDir, err)
	}
	if rev, err := b2.applyCluster([]byte("{"), "h"); err == nil || rev != 0 {
		t.Errorf("bad file: %d, %v", rev, err)
	}
}

// A newer roster pushed to a running guest rewrites /etc/hosts and is what
// the agent reports; an older one is refused and changes nothing.
func TestApplyRosterPushed(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("c-w-0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	roster := func(rev int, names ...string) []byte {
		c := model.ClusterContext{Name: "c", Role: "w", Head: names[0], Revision: rev, PublicKey: "ssh-ed25519 AAAA c"}
		for i, n := range names {
			c.Members = append(c.Members, model.RosterEntry{Name: n, Role: "w", Address: netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + i)})})
		}
		b, _ := json.Marshal(c)
		return b
	}
	a := &Agent{root: root}
	if _, err := a.applyCluster(roster(1, "c-w-0", "c-w-1"), "c-w-0"); err != nil {
		t.Fatal(err)
	}
	a.roster = 1
	rev, err := ApplyRoster(root, roster(2, "c-w-0", "c-w-1", "c-w-2"))
	if err != nil || rev != 2 {
		t.Fatalf("push revision 2: %d %v", rev, err)
	}
	hosts, _ := os.ReadFile(filepath.Join(root, "etc/hosts"))
	if !strings.Contains(string(hosts), "10.0.0.4\tc-w-2") {
		t.Fatalf("hosts after the push:\n%s", hosts)
	}
	if got := a.facts().Roster; got != 2 {
		t.Fatalf("facts report roster %d, want 2", got)
	}
	if _, err := ApplyRoster(root, roster(1, "c-w-0")); err == nil {
		t.Fatal("an older roster was applied")
	}
	if again, _ := os.ReadFile(filepath.Join(root, "etc/hosts")); string(again) != string(hosts) {
		t.Fatalf("an older roster changed hosts:\n%s", again)
	}
}

// FuzzParseCluster: any roster the seed or a push carries is refused or
// turned into an /etc/hosts whose every line is a comment or an address
// and names (no name smuggles a line in).
func FuzzParseCluster(f *testing.F) {
	f.Add([]byte(`{"name":"c","role":"w","index":0,"head":"c-w-0","members":[{"name":"c-w-0","role":"w","address":"10.0.0.2"},{"name":"c-w-1","role":"w","address":"10.0.0.3"}],"revision":2}`))
	f.Add([]byte(`{"members":[{"name":"a\nb","address":"10.0.0.2"}]}`))
	f.Add([]byte(`{"public_key":"ssh-ed25519 AAAA\nx"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCluster(data)
		if err != nil {
			return
		}
		for _, line := range strings.Split(strings.TrimRight(string(HostsFile("h", c)), "\n"), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 2 {
				t.Fatalf("hosts line %q", line)
			}
			if _, err := netip.ParseAddr(fields[0]); err != nil {
				t.Fatalf("hosts line %q: %v", line, err)
			}
		}
	})
}
