package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// fsEpoch is the timestamp of every inode and of the superblock of the
// root filesystem (2000-01-01T00:00:00Z). E2FSPROGS_FAKE_TIME must not be
// 0, which e2fsprogs reads as "unset".
const fsEpoch = 946684800

// stagedFile is one entry of the root filesystem.
type stagedFile struct {
	Path   string // without leading slash
	Mode   fs.FileMode
	Data   []byte
	Source string // copy this file instead of Data
	Link   string // symlink target
	IsDir  bool
}

// rootfsLayout lists the root filesystem: busybox with its applet links,
// the agent, and the small /etc that busybox init needs.
func rootfsLayout(busybox, agent string, applets []string, hostname string) []stagedFile {
	files := []stagedFile{
		{Path: "bin/busybox", Mode: 0o755, Source: busybox},
		{Path: "usr/sbin/vgrid-guest-agent", Mode: 0o755, Source: agent},
		{Path: "etc/inittab", Mode: 0o644, Data: guestFile("inittab")},
		{Path: "etc/init.d/rcS", Mode: 0o755, Data: guestFile("rcS")},
		{Path: "etc/passwd", Mode: 0o644, Data: guestFile("passwd")},
		{Path: "etc/group", Mode: 0o644, Data: guestFile("group")},
		{Path: "etc/shadow", Mode: 0o600, Data: guestFile("shadow")},
		{Path: "etc/hosts", Mode: 0o644, Data: guestFile("hosts")},
		{Path: "etc/profile", Mode: 0o644, Data: guestFile("profile")},
		{Path: "etc/os-release", Mode: 0o644, Data: guestFile("os-release")},
		{Path: "etc/hostname", Mode: 0o644, Data: []byte(hostname + "\n")},
		{Path: "usr/share/udhcpc/default.script", Mode: 0o755, Data: guestFile("default.script")},
		{Path: "root", Mode: 0o700, IsDir: true},
		{Path: "tmp", Mode: 0o777 | fs.ModeSticky, IsDir: true},
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "mnt", "etc/vgrid", "var/log", "var/lib/vgrid"} {
		files = append(files, stagedFile{Path: d, Mode: 0o755, IsDir: true})
	}
	for _, a := range applets {
		if a == "bin/busybox" {
			continue
		}
		files = append(files, stagedFile{Path: a, Link: "/bin/busybox"})
	}
	return files
}

// busyboxApplets lists the applet paths ("bin/sh", "sbin/init", ...) of a
// busybox binary by running it with --list-full.
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var applets []string
	for _, l := range strings.Fields(string(out)) {
		l = strings.TrimPrefix(l, "/")
		if l == "" || strings.Contains(l, "..") {
			continue
		}
		applets = append(applets, l)
	}
	if !contains(applets, "sbin/init") && !contains(applets, "bin/sh") {
		return nil, fmt.Errorf("busybox %s has neither init nor sh", busybox)
	}
	sort.Strings(applets)
	return applets, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// stage writes files under dir and returns every path created (including
// the parent directories), sorted.
func stage(dir string, files []stagedFile) ([]string, error) {
	created := map[string]bool{}
	mkdir := func(rel string, mode fs.FileMode) error {
		for _, p := range parents(rel) {
			if created[p] {
				continue
			}
			if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil && !os.IsExist(err) {
				return err
			}
			created[p] = true
		}
		if created[rel] {
			return os.Chmod(filepath.Join(dir, rel), mode)
		}
		if err := os.Mkdir(filepath.Join(dir, rel), 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		created[rel] = true
		return os.Chmod(filepath.Join(dir, rel), mode)
	}
	for _, f := range files {
		if f.IsDir {
			if err := mkdir(f.Path, f.Mode); err != nil {
				return nil, fmt.Errorf("stage %s: %w", f.Path, err)
			}
			continue
		}
		if parent := filepath.Dir(f.Path); parent != "." && !created[parent] {
			if err := mkdir(parent, 0o755); err != nil {
				return nil, fmt.Errorf("stage %s: %w", f.Path, err)
			}
		}
		full := filepath.Join(dir, f.Path)
		if created[f.Path] {
			return nil, fmt.Errorf("stage %s: duplicate path", f.Path)
		}
		created[f.Path] = true
		if f.Link != "" {
			if err := os.Symlink(f.Link, full); err != nil {
				return nil, fmt.Errorf("stage %s: %w", f.Path, err)
			}
			continue
		}
		data := f.Data
		if f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, fmt.Errorf("stage %s: %w", f.Path, err)
			}
		}
		if err := os.WriteFile(full, data, 0o600); err != nil {
			return nil, fmt.Errorf("stage %s: %w", f.Path, err)
		}
		if err := os.Chmod(full, f.Mode); err != nil {
			return nil, fmt.Errorf("stage %s: %w", f.Path, err)
		}
	}
	paths := make([]string, 0, len(created))
	for p := range created {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, nil
}

// parents returns the ancestors of a relative path, outermost first.
func parents(rel string) []string {
	var out []string
	for p := filepath.Dir(rel); p != "."; p = filepath.Dir(p) {
		out = append([]string{p}, out...)
	}
	return out
}

// fsUUID derives a stable UUID from a seed string.
func fsUUID(seed string) string {
	s := sha256.Sum256([]byte(seed))
	s[6] = s[6]&0x0f | 0x40 // version 4 layout, but derived, not random
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// makeExt4 creates a reproducible ext4 image at out, populated from dir:
// fixed UUID and hash seed, fake creation time, and then every inode's
// owner and times set with debugfs (mke2fs -d copies them from the staging
// files, whose ctime cannot be set).
func makeExt4(ctx context.Context, out, dir string, paths []string, size int64, label, uuid string) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("make ext4: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("make ext4: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("make ext4: %w", err)
	}
	env := append(os.Environ(), "E2FSPROGS_FAKE_TIME="+strconv.Itoa(fsEpoch))
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F",
		"-b", "4096", "-I", "256", "-m", "0", "-L", label, "-U", uuid,
		"-E", "hash_seed="+uuid+",root_owner=0:0,nodiscard,lazy_itable_init=0,lazy_journal_init=0",
		"-d", dir, out)
	mkfs.Env = env
	if b, err := mkfs.CombinedOutput(); err != nil {
		return fmt.Errorf("make ext4: mkfs.ext4: %w: %s", err, bytes.TrimSpace(b))
	}
	var cmds bytes.Buffer
	for _, p := range append([]string{""}, paths...) {
		if strings.ContainsAny(p, " \t\n\"") {
			return fmt.Errorf("make ext4: path %q cannot be passed to debugfs", p)
		}
		fmt.Fprintf(&cmds, "sif /%s uid 0\nsif /%s gid 0\n", p, p)
		for _, field := range []string{"atime", "mtime", "ctime", "crtime"} {
			fmt.Fprintf(&cmds, "sif /%s %s @%d\n", p, field, fsEpoch)
		}
	}
	dbg := exec.CommandContext(ctx, "debugfs", "-w", "-f", "-", out)
	dbg.Env = env
	dbg.Stdin = &cmds
	b, err := dbg.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make ext4: debugfs: %w: %s", err, bytes.TrimSpace(b))
	}
	// debugfs reports command errors on its output but exits 0.
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "debugfs ") || strings.HasPrefix(line, "debugfs:") || strings.TrimSpace(line) == "" {
			continue
		}
		return fmt.Errorf("make ext4: debugfs: %s", line)
	}
	return nil
}
