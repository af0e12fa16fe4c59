package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Mode is the cgroup layout of a host.
type Mode string

// Layouts.
const (
	ModeV1     Mode = "v1"     // only v1 hierarchies
	ModeHybrid Mode = "hybrid" // v1 hierarchies for the controllers, plus a cgroup2 mount
	ModeV2     Mode = "v2"     // one unified hierarchy
)

// Controllers this package manages. cpuacct exists in v1 only (v2 folds it
// into cpu); pids is optional in both.
const (
	CPU     = "cpu"
	CPUAcct = "cpuacct"
	Memory  = "memory"
	Pids    = "pids"
)

// v1Required are the v1 hierarchies a group must have; pids joins when mounted.
var v1Required = []string{CPU, CPUAcct, Memory}

// v2Required are the v2 controllers a group must have; pids joins when available.
var v2Required = []string{CPU, Memory}

// Hierarchy says where a host's cgroup controllers live. Build it with
// Detect (the real host) or V1/V2 (a given root, as tests do on a fake tree).
type Hierarchy struct {
	mode    Mode
	v1      map[string]string // controller -> mount point (v1 and hybrid)
	unified string            // cgroup2 mount point ("" if none)
}

// V1 describes a v1 layout: each controller mapped to the directory its
// hierarchy is mounted on (co-mounted controllers map to the same one).
func V1(mounts map[string]string) *Hierarchy {
	m := make(map[string]string, len(mounts))
	for k, v := range mounts {
		m[k] = v
	}
	return &Hierarchy{mode: ModeV1, v1: m}
}

// V2 describes a unified layout mounted at root.
func V2(root string) *Hierarchy {
	return &Hierarchy{mode: ModeV2, unified: root}
}

// Mode returns the layout.
func (h *Hierarchy) Mode() Mode { return h.mode }

// Mounts returns the controller mount points (v1) or {"unified": root} (v2).
func (h *Hierarchy) Mounts() map[string]string {
	if h.mode == ModeV2 {
		return map[string]string{"unified": h.unified}
	}
	m := make(map[string]string, len(h.v1))
	for k, v := range h.v1 {
		m[k] = v
	}
	return m
}

var host = sync.OnceValues(func() (*Hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	defer f.Close()
	return ParseMountinfo(f)
})

// Detect returns this host's layout, read once from /proc/self/mountinfo.
func Detect() (*Hierarchy, error) { return host() }

// v1Controllers are the names that can appear as v1 mount options.
var v1Controllers = map[string]bool{
	"cpu": true, "cpuacct": true, "memory": true, "pids": true, "cpuset": true,
	"blkio": true, "devices": true, "freezer": true, "net_cls": true,
	"net_prio": true, "perf_event": true, "hugetlb": true, "rdma": true, "misc": true,
}

// ParseMountinfo reads a /proc/<pid>/mountinfo table and decides the layout:
// v1 when cpu and memory have v1 hierarchies (hybrid if a cgroup2 mount
// exists too), else v2 when a cgroup2 filesystem is mounted.
func ParseMountinfo(r io.Reader) (*Hierarchy, error) {
	h := &Hierarchy{v1: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// 32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, p := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(p) < 3 {
			continue
		}
		mnt := unescapeMount(f[4])
		switch p[0] {
		case "cgroup2":
			if h.unified == "" {
				h.unified = mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(p[2], ",") {
				if v1Controllers[opt] {
					if _, seen := h.v1[opt]; !seen {
						h.v1[opt] = mnt
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	switch {
	case h.v1[CPU] != "" && h.v1[Memory] != "":
		h.mode = ModeV1
		if h.unified != "" {
			h.mode = ModeHybrid
		}
	case h.unified != "":
		h.mode, h.v1 = ModeV2, nil
	default:
		return nil, errors.New("no usable cgroup filesystem mounted (need v1 cpu and memory, or cgroup2)")
	}
	return h, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// cleanRel checks a cgroup path relative to a hierarchy root ("vgrid",
// "a/b") and returns it cleaned, without a leading slash.
func cleanRel(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("bad cgroup path %q", p)
		}
	}
	return filepath.Clean(p), nil
}

// validName checks a leaf group name.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n") {
		return fmt.Errorf("bad cgroup name %q", name)
	}
	return nil
}

// groupDirs maps each controller a group uses to its directory.
func (h *Hierarchy) groupDirs(parent, name string) (map[string]string, error) {
	rel, err := cleanRel(parent)
	if err != nil {
		return nil, err
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	if h.mode == ModeV2 {
		dir := filepath.Join(h.unified, rel, name)
		for _, c := range v2Required {
			dirs[c] = dir
		}
		if h.v2Available(Pids) {
			dirs[Pids] = dir
		}
		return dirs, nil
	}
	for _, c := range v1Required {
		m := h.v1[c]
		if m == "" {
			return nil, fmt.Errorf("cgroup v1 controller %s is not mounted", c)
		}
		dirs[c] = filepath.Join(m, rel, name)
	}
	if m := h.v1[Pids]; m != "" {
		dirs[Pids] = filepath.Join(m, rel, name)
	}
	return dirs, nil
}

// v2Available reports whether the unified root offers a controller.
func (h *Hierarchy) v2Available(c string) bool {
	b, err := os.ReadFile(filepath.Join(h.unified, "cgroup.controllers"))
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == c {
			return true
		}
	}
	return false
}

// enableV2 switches the group's controllers on in cgroup.subtree_control of
// the root and of every ancestor down to parent, so that a child of parent
// gets cpu.max and memory.max.
func (h *Hierarchy) enableV2(parent string, controllers []string) error {
	dir := h.unified
	parts := []string{""}
	if parent != "" {
		parts = append(parts, strings.Split(parent, "/")...)
	}
	for i, part := range parts {
		if i > 0 {
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
		}
		file := filepath.Join(dir, "cgroup.subtree_control")
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
		on := map[string]bool{}
		for _, f := range strings.Fields(string(b)) {
			on[f] = true
		}
		// One write for all: the kernel parses the whole list before
		// applying any of it.
		var add []string
		for _, c := range controllers {
			if !on[c] {
				add = append(add, "+"+c)
			}
		}
		if len(add) == 0 {
			continue
		}
		if err := writeFile(file, strings.Join(add, " ")); err != nil {
			return fmt.Errorf("enable controllers in %s: %w", dir, err)
		}
	}
	return nil
}

// uniqueDirs returns the distinct directories of a controller map, sorted.
func uniqueDirs(m map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range m {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}
