package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

// SeedFiles returns the files of an instance's NoCloud seed: meta-data
// (instance-id, local-hostname, public-keys), user-data (the context's, or
// a #cloud-config carrying the SSH keys) and vgrid-env (KEY=VALUE lines,
// sorted by key).
func SeedFiles(spec hypervisor.InstanceSpec) map[string][]byte {
	c := spec.Context
	if c == nil {
		c = &model.Context{}
	}
	host := c.Hostname
	if host == "" {
		host = spec.Hostname
	}
	if host == "" {
		host = spec.ID
	}
	var meta bytes.Buffer
	fmt.Fprintf(&meta, "instance-id: %s\n", yamlString(spec.ID))
	fmt.Fprintf(&meta, "local-hostname: %s\n", yamlString(host))
	if len(c.SSHKeys) > 0 {
		meta.WriteString("public-keys:\n")
		for _, k := range c.SSHKeys {
			fmt.Fprintf(&meta, "  - %s\n", yamlString(k))
		}
	}
	user := []byte(c.UserData)
	if c.UserData == "" {
		var b bytes.Buffer
		b.WriteString("#cloud-config\n")
		if len(c.SSHKeys) > 0 {
			b.WriteString("ssh_authorized_keys:\n")
			for _, k := range c.SSHKeys {
				fmt.Fprintf(&b, "  - %s\n", yamlString(k))
			}
		}
		user = b.Bytes()
	}
	var env bytes.Buffer
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&env, "%s=%s\n", k, c.Env[k])
	}
	return map[string][]byte{
		proto.SeedMetaData: meta.Bytes(),
		proto.SeedUserData: user,
		proto.SeedEnv:      env.Bytes(),
	}
}

// yamlString writes s as a YAML double-quoted scalar (JSON's string syntax
// is a subset of YAML's).
func yamlString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// writeSeed (re)writes the cidata ISO; the context may differ between
// starts, so it is made on every start.
func (d *Driver) writeSeed(ctx context.Context, spec hypervisor.InstanceSpec, p Paths) error {
	dir, err := os.MkdirTemp(p.Dir, ".seed")
	if err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	defer os.RemoveAll(dir)
	for name, data := range SeedFiles(spec) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write seed: %w", err)
		}
	}
	tmp := p.Seed + ".tmp"
	// -V cidata is the NoCloud label; -J and -r (Joliet, Rock Ridge) keep
	// the file names as they are.
	if err := run(ctx, d.opts.GenISOImagePath, "-quiet", "-V", proto.SeedLabel, "-J", "-r", "-o", tmp, dir); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write seed: %w", err)
	}
	if err := os.Rename(tmp, p.Seed); err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	return nil
}
