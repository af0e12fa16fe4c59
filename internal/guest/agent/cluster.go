package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"vgrid/internal/model"
)

// Where a cluster member's roster and keys go (relative to the agent's root).
const (
	hostsFile      = "etc/hosts"
	clusterFile    = "etc/vgrid/cluster.json"
	sshDir         = "root/.ssh"
	clusterKeyFile = "root/.ssh/id_ed25519"
	clusterPubFile = "root/.ssh/id_ed25519.pub"
	// maxClusterFile bounds vgrid-cluster.json (a roster of thousands of
	// members is well below it).
	maxClusterFile = 4 << 20
)

// ParseCluster reads vgrid-cluster.json: a model.ClusterContext. Unknown
// fields are ignored (a newer control plane may add some); the public key
// must be one line.
func ParseCluster(b []byte) (*model.ClusterContext, error) {
	if len(b) > maxClusterFile {
		return nil, fmt.Errorf("cluster: %d bytes, at most %d", len(b), maxClusterFile)
	}
	var c model.ClusterContext
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if strings.ContainsAny(strings.TrimSpace(c.PublicKey), "\r\n\x00") {
		return nil, errors.New("cluster: the public key is not one line")
	}
	return &c, nil
}

// validHostName reports whether s can stand in /etc/hosts as a name: one
// word of letters, digits, '.', '-' and '_'.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HostsFile returns /etc/hosts for a member of cluster c whose host name
// is hostname: the localhost lines, a line for every member with an
// address ("address name", in roster order; a name given twice keeps its
// first), and, when the roster gives hostname no address, 127.0.1.1 for
// it, so that the guest's own name always resolves (to its address on
// the cluster's network when it has one). Members whose name or address
// could not stand in the file are left out.
func HostsFile(hostname string, c *model.ClusterContext) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by the vgrid guest agent at boot: cluster %s, roster revision %d.\n", oneLine(c.Name), c.Revision)
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	seen := map[string]bool{}
	var members bytes.Buffer
	for _, m := range c.Members {
		if !validHostName(m.Name) || !m.Address.IsValid() || m.Address.Zone() != "" || seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		fmt.Fprintf(&members, "%s\t%s\n", m.Address.Unmap(), m.Name)
	}
	if validHostName(hostname) && !seen[hostname] {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	}
	b.Write(members.Bytes())
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// addAuthorizedKey returns authorized_keys with key appended as a line of
// its own, unless a line is that key already (changed false).
func addAuthorizedKey(existing []byte, key string) (out []byte, changed bool) {
	key = strings.TrimSpace(key)
	sc := bufio.NewScanner(bytes.NewReader(existing))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == key {
			return existing, false
		}
	}
	out = append([]byte(nil), existing...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(append(out, key...), '\n'), true
}

// applyCluster applies a member's vgrid-cluster.json: /etc/hosts from the
// roster (HostsFile), the cluster's key pair as root's
// ~/.ssh/id_ed25519 (0600) and id_ed25519.pub, its public key in root's
// authorized_keys (once), and the file itself as /etc/vgrid/cluster.json
// (0600: it holds the private key). It returns the roster's revision
// once all of it is written.
func (a *Agent) applyCluster(raw []byte, hostname string) (int, error) {
	c, err := ParseCluster(raw)
	if err != nil {
		return 0, err
	}
	var errs []error
	if err := writeFile(filepath.Join(a.root, hostsFile), HostsFile(hostname, c), 0o644); err != nil {
		errs = append(errs, err)
	}
	if c.PrivateKey != "" || c.PublicKey != "" {
		if err := a.writeClusterKeys(c); err != nil {
			errs = append(errs, err)
		}
	}
	pretty, err := json.MarshalIndent(c, "", "  ")
	if err == nil {
		err = writeFile(filepath.Join(a.root, clusterFile), append(pretty, '\n'), 0o600)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("cluster: %w", err)
	}
	return c.Revision, nil
}

func (a *Agent) writeClusterKeys(c *model.ClusterContext) error {
	dir := filepath.Join(a.root, sshDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("cluster keys: %w", err)
	}
	if c.PrivateKey != "" {
		key := c.PrivateKey
		if !strings.HasSuffix(key, "\n") {
			key += "\n" // OpenSSH wants the last line ended
		}
		if err := writeFile(filepath.Join(a.root, clusterKeyFile), []byte(key), 0o600); err != nil {
			return err
		}
	}
	pub := strings.TrimSpace(c.PublicKey)
	if pub == "" {
		return nil
	}
	if err := writeFile(filepath.Join(a.root, clusterPubFile), []byte(pub+"\n"), 0o644); err != nil {
		return err
	}
	path := filepath.Join(a.root, authKeysFile)
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cluster keys: %w", err)
	}
	if out, changed := addAuthorizedKey(existing, pub); changed {
		return writeFile(path, out, 0o600)
	}
	return nil
}

// ApplyRoster applies a newer roster to a running guest (what `vgrid-guest-agent
// roster` does with its standard input, run by the host through exec when
// the cluster changes): /etc/hosts, keys and cluster.json as at boot, for
// the host name in root's /etc/hostname. It returns the revision applied.
// A roster older than the one applied is refused, so a late push never
// undoes a newer one.
func ApplyRoster(root string, raw []byte) (int, error) {
	if root == "" {
		root = "/"
	}
	c, err := ParseCluster(raw)
	if err != nil {
		return 0, err
	}
	if cur := appliedRoster(root); cur > c.Revision {
		return cur, fmt.Errorf("cluster: roster revision %d is older than the one applied (%d)", c.Revision, cur)
	}
	host, _ := os.ReadFile(filepath.Join(root, "etc/hostname"))
	a := &Agent{root: root}
	return a.applyCluster(raw, strings.TrimSpace(string(host)))
}

// appliedRoster is the revision of the roster in root's cluster.json (0:
// none, or unreadable).
func appliedRoster(root string) int {
	b, err := os.ReadFile(filepath.Join(root, clusterFile))
	if err != nil {
		return 0
	}
	c, err := ParseCluster(b)
	if err != nil {
		return 0
	}
	return c.Revision
}
