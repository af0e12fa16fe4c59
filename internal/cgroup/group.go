package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultParent is the cgroup under which vgrid puts its groups.
const DefaultParent = "vgrid"

// Period is the CFS period used for CPU caps, in microseconds.
const Period = 100000

// minQuota is the smallest CFS quota the kernel accepts, in microseconds.
const minQuota = 1000

// Limits is what a group enforces. Zero values mean "no limit".
type Limits struct {
	// CPUCores caps CPU time in cores: the CFS quota is CPUCores × Period.
	CPUCores float64
	// MemoryBytes caps memory (and memory plus swap, where the kernel
	// accounts swap, so that the cap cannot be dodged by swapping).
	MemoryBytes int64
	// Pids caps the number of tasks, where the pids controller exists.
	Pids int64
}

// Validate rejects negative or non-finite limits.
func (l Limits) Validate() error {
	switch {
	case l.CPUCores < 0 || math.IsNaN(l.CPUCores) || math.IsInf(l.CPUCores, 0):
		return fmt.Errorf("cpu cores %v: must be a non-negative number", l.CPUCores)
	case l.CPUCores*Period > math.MaxInt32:
		return fmt.Errorf("cpu cores %v: too large", l.CPUCores)
	case l.MemoryBytes < 0:
		return fmt.Errorf("memory %d: must not be negative", l.MemoryBytes)
	case l.Pids < 0:
		return fmt.Errorf("pids %d: must not be negative", l.Pids)
	}
	return nil
}

// Quota returns the CFS quota in microseconds for Period, or -1 for no cap.
func (l Limits) Quota() int64 {
	if l.CPUCores == 0 {
		return -1
	}
	return max(int64(math.Round(l.CPUCores*Period)), minQuota)
}

// Group is one control group: a directory in each controller's hierarchy
// (v1) or one directory in the unified hierarchy (v2).
type Group struct {
	mode Mode
	dirs map[string]string // controller -> directory
}

// New creates (or reuses) the group parent/name on this host and applies l.
func New(parent, name string, l Limits) (*Group, error) {
	h, err := Detect()
	if err != nil {
		return nil, err
	}
	return h.New(parent, name, l)
}

// Load finds the existing group parent/name on this host.
func Load(parent, name string) (*Group, error) {
	h, err := Detect()
	if err != nil {
		return nil, err
	}
	return h.Load(parent, name)
}

// New creates (or reuses) the group parent/name and applies l. An empty
// parent means the hierarchy root.
func (h *Hierarchy) New(parent, name string, l Limits) (*Group, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("create cgroup %s/%s: %w", parent, name, err)
	}
	dirs, err := h.groupDirs(parent, name)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s/%s: %w", parent, name, err)
	}
	if h.mode == ModeV2 {
		rel, _ := cleanRel(parent) // checked by groupDirs
		controllers := append([]string(nil), v2Required...)
		if _, ok := dirs[Pids]; ok {
			controllers = append(controllers, Pids)
		}
		if err := h.enableV2(rel, controllers); err != nil {
			return nil, fmt.Errorf("create cgroup %s/%s: %w", parent, name, err)
		}
	}
	for _, d := range uniqueDirs(dirs) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
	}
	g := &Group{mode: h.mode, dirs: dirs}
	if err := g.Update(l); err != nil {
		_ = g.Delete()
		return nil, err
	}
	return g, nil
}

// Load finds the existing group parent/name. It fails with an error
// matching os.ErrNotExist when a required directory is missing.
func (h *Hierarchy) Load(parent, name string) (*Group, error) {
	dirs, err := h.groupDirs(parent, name)
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s/%s: %w", parent, name, err)
	}
	for c, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			if c == Pids && errors.Is(err, os.ErrNotExist) {
				delete(dirs, c) // created before pids was mounted; do without
				continue
			}
			return nil, fmt.Errorf("load cgroup %s/%s: %w", parent, name, err)
		}
	}
	return &Group{mode: h.mode, dirs: dirs}, nil
}

// Mode returns the layout the group lives in.
func (g *Group) Mode() Mode { return g.mode }

// Paths returns controller -> directory. In v2 every controller maps to the
// same directory.
func (g *Group) Paths() map[string]string {
	m := make(map[string]string, len(g.dirs))
	for k, v := range g.dirs {
		m[k] = v
	}
	return m
}

// Join moves the process pid, all its threads, into the group. Memory it
// touched before stays charged where it was (moving charges is deprecated
// in v1 and absent in v2). Under v1 an attach waits for an RCU grace
// period (8 to 16 ms on these hosts) unless another came just before: a
// caller in a hurry joins a process while it works rather than before it
// starts.
func (g *Group) Join(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("join cgroup: pid %d", pid)
	}
	for _, f := range g.ProcsFiles() {
		if err := writeFile(f, strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	return nil
}

// ProcsFiles returns the cgroup.procs files a process must write its PID
// into to join the group, one per distinct directory.
func (g *Group) ProcsFiles() []string {
	var out []string
	for _, d := range uniqueDirs(g.dirs) {
		out = append(out, filepath.Join(d, "cgroup.procs"))
	}
	return out
}

// Update applies new limits to the group.
func (g *Group) Update(l Limits) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("update cgroup: %w", err)
	}
	var err error
	if g.mode == ModeV2 {
		err = g.updateV2(l)
	} else {
		err = g.updateV1(l)
	}
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", g.dirs[CPU], err)
	}
	return nil
}

func (g *Group) updateV1(l Limits) error {
	cpu := g.dirs[CPU]
	if err := writeFile(filepath.Join(cpu, "cpu.cfs_period_us"), strconv.Itoa(Period)); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.FormatInt(l.Quota(), 10)); err != nil {
		return err
	}
	mem := g.dirs[Memory]
	limit := "-1"
	if l.MemoryBytes > 0 {
		limit = strconv.FormatInt(l.MemoryBytes, 10)
	}
	memsw := filepath.Join(mem, "memory.memsw.limit_in_bytes")
	if !exists(memsw) {
		if err := writeFile(filepath.Join(mem, "memory.limit_in_bytes"), limit); err != nil {
			return err
		}
	} else if err := writeOrdered(filepath.Join(mem, "memory.limit_in_bytes"), memsw, limit); err != nil {
		return err
	}
	if d, ok := g.dirs[Pids]; ok {
		if err := writeFile(filepath.Join(d, "pids.max"), pidsValue(l.Pids)); err != nil {
			return err
		}
	}
	return nil
}

// writeOrdered sets the memory limit and the memory+swap limit to the same
// value. The kernel insists that memsw >= memory at every moment, so the
// order depends on whether the limit goes up or down: try memory first
// (right when lowering), and if the kernel refuses, memsw first.
func writeOrdered(memFile, memswFile, v string) error {
	if err := writeFile(memFile, v); err != nil {
		if err2 := writeFile(memswFile, v); err2 != nil {
			return err
		}
		return writeFile(memFile, v)
	}
	return writeFile(memswFile, v)
}

func (g *Group) updateV2(l Limits) error {
	dir := g.dirs[CPU]
	quota := "max"
	if q := l.Quota(); q > 0 {
		quota = strconv.FormatInt(q, 10)
	}
	if err := writeFile(filepath.Join(dir, "cpu.max"), quota+" "+strconv.Itoa(Period)); err != nil {
		return err
	}
	limit, swap := "max", "max"
	if l.MemoryBytes > 0 {
		limit, swap = strconv.FormatInt(l.MemoryBytes, 10), "0"
	}
	if err := writeFile(filepath.Join(dir, "memory.max"), limit); err != nil {
		return err
	}
	if f := filepath.Join(dir, "memory.swap.max"); exists(f) {
		if err := writeFile(f, swap); err != nil {
			return err
		}
	}
	if _, ok := g.dirs[Pids]; ok {
		if err := writeFile(filepath.Join(dir, "pids.max"), pidsValue(l.Pids)); err != nil {
			return err
		}
	}
	return nil
}

func pidsValue(n int64) string {
	if n <= 0 {
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// CPUUsage returns the CPU time the group's tasks have used in total.
func (g *Group) CPUUsage() (time.Duration, error) {
	if g.mode == ModeV2 {
		v, err := statKey(filepath.Join(g.dirs[CPU], "cpu.stat"), "usage_usec")
		return time.Duration(v) * time.Microsecond, err
	}
	v, err := readInt(filepath.Join(g.dirs[CPUAcct], "cpuacct.usage"))
	return time.Duration(v), err
}

// CPUSeconds returns the CPU time the group's tasks have used in total, in
// seconds: v1 cpuacct.usage (nanoseconds), v2 usage_usec of cpu.stat. The
// counter includes tasks that have exited and only grows while the group
// exists; it is gone with the group, so read it before Delete.
func (g *Group) CPUSeconds() (float64, error) {
	u, err := g.CPUUsage()
	if err != nil {
		return 0, err
	}
	return u.Seconds(), nil
}

// Throttled returns how many CFS periods have elapsed with runnable tasks
// and in how many of them the group was throttled by its quota.
func (g *Group) Throttled() (periods, throttled int64, err error) {
	f := filepath.Join(g.dirs[CPU], "cpu.stat")
	if periods, err = statKey(f, "nr_periods"); err != nil {
		return 0, 0, err
	}
	throttled, err = statKey(f, "nr_throttled")
	return periods, throttled, err
}

// CPUMax returns the CFS quota and period in microseconds; quota is -1
// when there is no cap.
func (g *Group) CPUMax() (quota, period int64, err error) {
	dir := g.dirs[CPU]
	if g.mode == ModeV2 {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return 0, 0, err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return 0, 0, fmt.Errorf("parse %s: %q", filepath.Join(dir, "cpu.max"), b)
		}
		quota = -1
		if f[0] != "max" {
			if quota, err = strconv.ParseInt(f[0], 10, 64); err != nil {
				return 0, 0, fmt.Errorf("parse cpu.max: %w", err)
			}
		}
		period, err = strconv.ParseInt(f[1], 10, 64)
		return quota, period, err
	}
	if quota, err = readInt(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
		return 0, 0, err
	}
	period, err = readInt(filepath.Join(dir, "cpu.cfs_period_us"))
	return quota, period, err
}

// unlimited is where the kernel's "no limit" values start (v1 prints
// PAGE_COUNTER_MAX pages in bytes, about 2^63).
const unlimited = int64(1) << 62

// MemoryLimit returns the memory limit in bytes, or 0 when there is none.
func (g *Group) MemoryLimit() (int64, error) {
	file := "memory.limit_in_bytes"
	if g.mode == ModeV2 {
		file = "memory.max"
	}
	v, err := readInt(filepath.Join(g.dirs[Memory], file))
	if err != nil || v >= unlimited {
		return 0, err
	}
	return v, nil
}

// MemoryUsage returns the memory currently charged to the group.
func (g *Group) MemoryUsage() (int64, error) {
	file := "memory.usage_in_bytes"
	if g.mode == ModeV2 {
		file = "memory.current"
	}
	return readInt(filepath.Join(g.dirs[Memory], file))
}

// OOMKills returns how many tasks of the group the kernel's OOM killer has
// killed (0 on kernels that do not count them).
func (g *Group) OOMKills() (int64, error) {
	file := "memory.oom_control"
	if g.mode == ModeV2 {
		file = "memory.events"
	}
	v, err := statKey(filepath.Join(g.dirs[Memory], file), "oom_kill")
	if errors.Is(err, errNoKey) {
		return 0, nil
	}
	return v, err
}

// Procs returns the PIDs in the group (in any of its directories).
func (g *Group) Procs() ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, f := range g.ProcsFiles() {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", f, err)
			}
			if !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}

// deleteWait bounds how long Delete waits for exiting tasks to leave.
const deleteWait = 3 * time.Second

// Delete removes the group's directories. While tasks that are exiting
// still hold a directory (EBUSY) it retries briefly. A group already gone is
// not an error.
func (g *Group) Delete() error {
	deadline := time.Now().Add(deleteWait)
	for _, d := range uniqueDirs(g.dirs) {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// writeFile writes a control file. It never creates one: a missing file
// means the controller or kernel feature is missing.
func writeFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", v, path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

var errNoKey = errors.New("key not found")

// statKey reads "key value" lines (cpu.stat, memory.events, oom_control).
func statKey(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s %s: %w", path, key, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s in %s: %w", key, path, errNoKey)
}
