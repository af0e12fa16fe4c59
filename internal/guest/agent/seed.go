package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"vgrid/internal/guest/proto"
)

// Where the seed goes in the guest (relative to the agent's root).
const (
	seedMountDir  = "run/vgrid/seed"
	envFile       = "etc/vgrid/env"
	authKeysFile  = "root/.ssh/authorized_keys"
	userDataDir   = "var/lib/vgrid"
	userDataLog   = "/var/log/user-data.log"
	isoPVDOffset  = 16 * 2048 // the primary volume descriptor is sector 16
	isoVolIDStart = 40
	isoVolIDLen   = 32
)

// Seed is the workspace context read from a cidata disk.
type Seed struct {
	InstanceID string
	Hostname   string
	SSHKeys    []string
	UserData   []byte
	Env        []EnvVar
	// NetworkConfig is the network-config file; nil when there is none
	// (the guest then configures eth0 by DHCP).
	NetworkConfig []byte
	// Cluster is vgrid-cluster.json; nil when the guest is no cluster's.
	Cluster []byte
	// Volumes is vgrid-volumes.json; nil when no volume is attached.
	Volumes []byte
}

// EnvVar is one KEY=VALUE line of vgrid-env.
type EnvVar struct {
	Key, Value string
}

// MetaData is a parsed NoCloud meta-data file: scalar "key: value" lines
// and lists written as "key:" followed by "  - item" lines.
type MetaData struct {
	Values map[string]string
	Lists  map[string][]string
}

// ParseMetaData parses the subset of YAML that NoCloud meta-data uses:
// "key: value" lines, and "key:" followed by indented "- item" lines.
// Comments and anything else are ignored; quotes around values are removed.
// A scalar public-keys value is also returned as a one-item list.
func ParseMetaData(b []byte) MetaData {
	md := MetaData{Values: map[string]string{}, Lists: map[string][]string{}}
	listKey := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indented := line[0] == ' ' || line[0] == '\t'
		if item, ok := strings.CutPrefix(trimmed, "- "); ok && (indented || listKey != "") {
			if listKey != "" {
				md.Lists[listKey] = append(md.Lists[listKey], unquote(strings.TrimSpace(item)))
			}
			continue
		}
		if indented {
			continue // nested mappings are not used by vgrid
		}
		key, val, ok := strings.Cut(trimmed, ":")
		if !ok {
			listKey = ""
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		if val == "" {
			listKey = key
			continue
		}
		listKey = ""
		md.Values[key] = unquote(val)
	}
	if v, ok := md.Values["public-keys"]; ok && len(md.Lists["public-keys"]) == 0 {
		md.Lists["public-keys"] = []string{v}
	}
	return md
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseEnv parses KEY=VALUE lines. Blank lines, comments and lines whose
// key is not a shell identifier are skipped; an "export " prefix and quotes
// around the value are removed. Later keys override earlier ones.
func ParseEnv(b []byte) []EnvVar {
	var out []EnvVar
	index := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !envKeyRE.MatchString(key) {
			continue
		}
		v := EnvVar{Key: key, Value: unquote(val)}
		if i, dup := index[key]; dup {
			out[i] = v
			continue
		}
		index[key] = len(out)
		out = append(out, v)
	}
	return out
}

// FormatEnv writes vars as KEY='VALUE' lines that both sh (". file") and
// env-file readers understand.
func FormatEnv(vars []EnvVar) []byte {
	var b bytes.Buffer
	for _, v := range vars {
		fmt.Fprintf(&b, "%s='%s'\n", v.Key, strings.ReplaceAll(v.Value, "'", `'\''`))
	}
	return b.Bytes()
}

// ISOVolumeLabel returns the volume identifier of an iso9660 primary
// volume descriptor (the 2048 bytes at offset 32768 of the device).
func ISOVolumeLabel(pvd []byte) (string, bool) {
	if len(pvd) < isoVolIDStart+isoVolIDLen || pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return "", false
	}
	return strings.TrimRight(string(pvd[isoVolIDStart:isoVolIDStart+isoVolIDLen]), " \x00"), true
}

// LoadSeed reads a mounted (or copied) seed directory.
func LoadSeed(dir string) (*Seed, error) {
	meta, err := os.ReadFile(filepath.Join(dir, proto.SeedMetaData))
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	md := ParseMetaData(meta)
	s := &Seed{
		InstanceID: md.Values["instance-id"],
		Hostname:   md.Values["local-hostname"],
		SSHKeys:    md.Lists["public-keys"],
	}
	if s.Hostname == "" {
		s.Hostname = md.Values["hostname"]
	}
	if s.UserData, err = os.ReadFile(filepath.Join(dir, proto.SeedUserData)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	env, err := os.ReadFile(filepath.Join(dir, proto.SeedEnv))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	s.Env = ParseEnv(env)
	for name, dst := range map[string]*[]byte{proto.SeedNetworkConfig: &s.NetworkConfig, proto.SeedCluster: &s.Cluster, proto.SeedVolumes: &s.Volumes} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read seed: %w", err)
		}
		if err == nil {
			if b == nil {
				b = []byte{}
			}
			*dst = b
		}
	}
	return s, nil
}

// findSeedDevice returns the first /dev/vd[b-z] whose iso9660 label is cidata.
func findSeedDevice(root string) (string, error) {
	for c := 'b'; c <= 'z'; c++ {
		dev := filepath.Join(root, "dev", "vd"+string(c))
		label, err := readISOLabel(dev)
		if err == nil && strings.EqualFold(label, proto.SeedLabel) {
			return dev, nil
		}
	}
	return "", os.ErrNotExist
}

func readISOLabel(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 2048)
	if _, err := f.ReadAt(buf, isoPVDOffset); err != nil {
		return "", err
	}
	label, ok := ISOVolumeLabel(buf)
	if !ok {
		return "", fmt.Errorf("%s: not iso9660", dev)
	}
	return label, nil
}

// mountSeed finds and mounts the seed read-only; ok is false when the guest
// has no seed disk.
func (a *Agent) mountSeed() (dir string, ok bool, err error) {
	dev, err := findSeedDevice(a.root)
	if err != nil {
		return "", false, nil
	}
	dir = filepath.Join(a.root, seedMountDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("mount seed: %w", err)
	}
	err = unix.Mount(dev, dir, "iso9660", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	if err != nil && !errors.Is(err, unix.EBUSY) { // EBUSY: a previous agent run mounted it
		return "", false, fmt.Errorf("mount seed %s: %w", dev, err)
	}
	return dir, true, nil
}

// applyContext reads the seed, if any, and applies it. It reports whether
// a seed was read. Without one the network is configured as without a
// network-config (DHCP on eth0).
func (a *Agent) applyContext() (bool, error) {
	dir, ok, err := a.mountSeed()
	if err == nil && ok {
		var seed *Seed
		if seed, err = LoadSeed(dir); err == nil {
			return true, a.applySeed(seed)
		}
	}
	if nerr := a.applyNetwork(nil); nerr != nil {
		err = errors.Join(err, nerr)
	}
	return false, err
}

// applySeed configures the network (network-config, or DHCP on eth0),
// writes the hostname, environment and SSH keys, applies the cluster
// roster and keys (vgrid-cluster.json), attaches the network volumes
// (vgrid-volumes.json), and then starts the user-data
// script (once per instance), which finds all of that done. A part that
// fails does not keep the others from being applied.
func (a *Agent) applySeed(s *Seed) error {
	var errs []error
	if s.Hostname != "" {
		if err := writeFile(filepath.Join(a.root, "etc/hostname"), []byte(s.Hostname+"\n"), 0o644); err != nil {
			errs = append(errs, err)
		}
		if a.setHostname != nil {
			if err := a.setHostname(s.Hostname); err != nil {
				errs = append(errs, fmt.Errorf("set hostname: %w", err))
			}
		}
	}
	if err := writeFile(filepath.Join(a.root, envFile), FormatEnv(s.Env), 0o644); err != nil {
		errs = append(errs, err)
	}
	if len(s.SSHKeys) > 0 {
		keys := strings.Join(s.SSHKeys, "\n") + "\n"
		if err := os.MkdirAll(filepath.Join(a.root, "root/.ssh"), 0o700); err != nil {
			errs = append(errs, fmt.Errorf("write ssh keys: %w", err))
		} else if err := writeFile(filepath.Join(a.root, authKeysFile), []byte(keys), 0o600); err != nil {
			errs = append(errs, err)
		}
	}
	if err := a.applyNetwork(s.NetworkConfig); err != nil {
		errs = append(errs, err)
	}
	if s.Cluster != nil {
		rev, err := a.applyCluster(s.Cluster, s.Hostname)
		if err != nil {
			errs = append(errs, err)
		}
		a.roster = rev
	}
	if s.Volumes != nil {
		// Before user-data, which may use them.
		if err := a.applyVolumes(s.Volumes); err != nil {
			errs = append(errs, err)
		}
	}
	if bytes.HasPrefix(s.UserData, []byte("#!")) {
		if err := a.startUserData(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startUserData writes the script and its run-once marker, then starts it
// in its own session so that it outlives an agent restart.
func (a *Agent) startUserData(s *Seed) error {
	id := s.InstanceID
	if id == "" {
		sum := sha256.Sum256(s.UserData)
		id = hex.EncodeToString(sum[:8])
	}
	id = safeName(id)
	dir := filepath.Join(a.root, userDataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("user-data: %w", err)
	}
	marker := filepath.Join(dir, "user-data."+id+".done")
	if _, err := os.Stat(marker); err == nil {
		return nil // already ran for this instance
	}
	script := filepath.Join(dir, "user-data")
	if err := writeFile(script, s.UserData, 0o700); err != nil {
		return err
	}
	// Mark first: a crash loop must not run the script again.
	if err := writeFile(marker, nil, 0o600); err != nil {
		return err
	}
	if a.runUserData == nil {
		return nil
	}
	env := os.Environ()
	for _, v := range s.Env {
		env = append(env, v.Key+"="+v.Value)
	}
	return a.runUserData(script, env)
}

// runUserDataScript runs script with its output appended to the serial
// console and the user-data log.
func runUserDataScript(script string, env []string) error {
	cmd := exec.Command("/bin/sh", "-c",
		`"$1" 2>&1 | tee -a `+userDataLog+` >/dev/ttyS0`, "user-data", script)
	cmd.Env = append(env, "HOME=/root")
	cmd.Dir = "/root"
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start user-data: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// safeName maps s to a string usable as a file name part.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// writeFile writes a file atomically (temp file and rename).
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
