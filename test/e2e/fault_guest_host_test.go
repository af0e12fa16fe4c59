package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/model"
)

// Host-side checks of the guest fault suite: the QEMU processes of a data
// directory from /proc, their cgroups, their run state over QMP.

// gfProc is a process of one of the data directory's instances: a QEMU,
// or the shell that puts itself in the cgroup and execs QEMU (vgrid-join).
type gfProc struct {
	PID, PPID int
	SID       int // session
	ID        string
	Dir       string // the instance directory (from -pidfile)
	QMP       string // the QMP socket (from -qmp unix:...)
	MemMiB    int64  // -m
	Shell     bool
}

// gfScan finds the processes whose command line names instDir.
func gfScan(instDir string) []gfProc {
	instDir = filepath.Clean(instDir)
	mark := []byte(instDir + "/")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []gfProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, mark) {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		p := gfProc{PID: pid}
		switch {
		case len(args) > 3 && args[3] == "vgrid-join":
			p.Shell = true
		case strings.HasPrefix(filepath.Base(args[0]), "qemu-system"):
		default:
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			switch args[i] {
			case "-pidfile":
				dir := filepath.Dir(args[i+1])
				if filepath.Dir(dir) == instDir {
					p.Dir, p.ID = dir, filepath.Base(dir)
				}
			case "-qmp":
				p.QMP = gfOptPath(strings.TrimPrefix(args[i+1], "unix:"))
			case "-m":
				v := args[i+1]
				j := 0
				for j < len(v) && v[j] >= '0' && v[j] <= '9' {
					j++
				}
				p.MemMiB, _ = strconv.ParseInt(v[:j], 10, 64)
			}
		}
		if p.ID == "" {
			continue
		}
		state, ppid, sid, ok := gfStat(pid)
		if !ok || state == 'Z' || state == 'X' || state == 'x' {
			continue
		}
		p.PPID, p.SID = ppid, sid
		out = append(out, p)
	}
	return out
}

// gfOptPath reads a path out of a QEMU option list: up to the first
// single comma, with ",," a literal comma.
func gfOptPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				b.WriteByte(',')
				i++
				continue
			}
			break
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// gfStat returns a process's state letter, parent PID and session.
func gfStat(pid int) (byte, int, int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 4 {
		return 0, 0, 0, false
	}
	ppid, _ := strconv.Atoi(f[1])
	sid, _ := strconv.Atoi(f[3])
	return f[0][0], ppid, sid, true
}

func gfAlive(pid int) bool {
	st, _, _, ok := gfStat(pid)
	return ok && st != 'Z' && st != 'X' && st != 'x'
}

// gfQEMU is one QEMU of a workspace. QEMU -daemonize forks twice: the
// process vgrid launched (a session leader: vgrid starts it with setsid)
// waits until the grandchild, the daemon the pidfile names, has set the VM
// up; the child in between calls setsid and exits at once, and stays a
// zombie of the first while it waits. Such a launcher (Root) and its
// daemon (PID) count as one QEMU.
type gfQEMU struct {
	PID, Root int
	QMP, Dir  string
	MemMiB    int64
}

// gfGroup sorts processes by workspace ID; shells are the IDs whose QEMU
// is being launched.
func gfGroup(ps []gfProc) (byID map[string][]gfQEMU, shells map[string]bool) {
	byID, shells = map[string][]gfQEMU{}, map[string]bool{}
	raw := map[string][]gfProc{}
	for _, p := range ps {
		if p.Shell {
			shells[p.ID] = true
			continue
		}
		raw[p.ID] = append(raw[p.ID], p)
	}
	for id, list := range raw {
		absorbed := map[int]bool{}
		var qs []gfQEMU
		for _, d := range list {
			q := gfQEMU{PID: d.PID, Root: d.PID, QMP: d.QMP, Dir: d.Dir, MemMiB: d.MemMiB}
			for _, l := range list {
				if l.PID == d.PID {
					continue
				}
				_, midParent, _, ok := gfStat(d.SID)
				if d.PPID == l.PID || (d.SID != d.PID && ok && midParent == l.PID) {
					q.Root = l.PID
					absorbed[l.PID] = true
				}
			}
			qs = append(qs, q)
		}
		for _, q := range qs {
			if !absorbed[q.PID] {
				byID[id] = append(byID[id], q)
			}
		}
		sort.Slice(byID[id], func(i, j int) bool { return byID[id][i].PID < byID[id][j].PID })
	}
	return byID, shells
}

func gfPIDs(qs []gfQEMU) []int {
	out := make([]int, 0, len(qs))
	for _, q := range qs {
		out = append(out, q.PID)
	}
	return out
}

// gfMounts maps each cgroup v1 controller to its mount point, and gives
// the cgroup2 mount point, from this process's mountinfo.
var gfMounts = sync.OnceValues(func() (map[string]string, string) {
	v1, v2 := map[string]string{}, ""
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return v1, v2
	}
	for _, ln := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(ln, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			v2 = pf[4]
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if _, seen := v1[o]; !seen {
					v1[o] = pf[4]
				}
			}
		}
	}
	return v1, v2
})

// gfCgroup is what a process's cgroups allow it.
type gfCgroup struct {
	Milli    int64 // CPU cap in thousandths of a core
	Capped   bool
	MemLimit int64 // bytes; 0 if none
	Dirs     []string
}

func gfReadInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// gfCgroupOf reads the CPU cap and memory limit of pid's cgroups.
func gfCgroupOf(pid int) (gfCgroup, error) {
	var g gfCgroup
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return g, err
	}
	v1, v2 := gfMounts()
	var cpuDir, memDir, unified string
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(ln, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			unified = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			switch c {
			case "cpu":
				if m := v1["cpu"]; m != "" {
					cpuDir = filepath.Join(m, f[2])
				}
			case "memory":
				if m := v1["memory"]; m != "" {
					memDir = filepath.Join(m, f[2])
				}
			}
		}
	}
	if cpuDir != "" {
		g.Dirs = append(g.Dirs, cpuDir)
		quota, err := gfReadInt(filepath.Join(cpuDir, "cpu.cfs_quota_us"))
		if err != nil {
			return g, err
		}
		period, err := gfReadInt(filepath.Join(cpuDir, "cpu.cfs_period_us"))
		if err != nil {
			return g, err
		}
		if quota > 0 && period > 0 {
			g.Capped, g.Milli = true, (quota*1000+period/2)/period
		}
	} else if unified != "" && v2 != "" {
		dir := filepath.Join(v2, unified)
		g.Dirs = append(g.Dirs, dir)
		b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return g, err
		}
		f := strings.Fields(string(b))
		if len(f) == 2 && f[0] != "max" {
			quota, _ := strconv.ParseInt(f[0], 10, 64)
			period, _ := strconv.ParseInt(f[1], 10, 64)
			if quota > 0 && period > 0 {
				g.Capped, g.Milli = true, (quota*1000+period/2)/period
			}
		}
		memDir = ""
		if v, err := os.ReadFile(filepath.Join(dir, "memory.max")); err == nil {
			g.MemLimit, _ = strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		}
	}
	if memDir != "" {
		g.Dirs = append(g.Dirs, memDir)
		if v, err := gfReadInt(filepath.Join(memDir, "memory.limit_in_bytes")); err == nil && v < 1<<60 {
			g.MemLimit = v
		}
	}
	return g, nil
}

// gfQMPStatus asks a QEMU for its run state (query-status) on its QMP
// socket. Only while vgrid up is dead: QEMU serves one QMP client at a
// time, and a live vgrid up keeps a connection to each of its guests.
func gfQMPStatus(sock string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	dec := json.NewDecoder(conn)
	var greeting map[string]json.RawMessage
	if err := dec.Decode(&greeting); err != nil {
		return "", fmt.Errorf("qmp greeting: %w", err)
	}
	if _, ok := greeting["QMP"]; !ok {
		return "", errors.New("qmp: no greeting")
	}
	call := func(cmd string) (json.RawMessage, error) {
		if _, err := fmt.Fprintf(conn, "{\"execute\":%q}\n", cmd); err != nil {
			return nil, err
		}
		for {
			var m map[string]json.RawMessage
			if err := dec.Decode(&m); err != nil {
				return nil, fmt.Errorf("qmp %s: %w", cmd, err)
			}
			if e, ok := m["error"]; ok {
				return nil, fmt.Errorf("qmp %s: %s", cmd, e)
			}
			if r, ok := m["return"]; ok {
				return r, nil
			}
			// An event: read on.
		}
	}
	if _, err := call("qmp_capabilities"); err != nil {
		return "", err
	}
	raw, err := call("query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// gfIntent returns the operation of an instance's intent file ("" if
// none): a suspend or resume the driver had under way.
func gfIntent(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "intent.json"))
	if err != nil {
		return ""
	}
	var it struct {
		Op string `json:"op"`
	}
	if json.Unmarshal(b, &it) != nil || it.Op == "" {
		return "unreadable"
	}
	return it.Op
}

// gfRestoring reports whether an instance's QEMU is loading a saved
// state and its guest not yet continued (intent resuming, before its
// continuing phase): such a QEMU has a CPU cap of a core per vCPU and one
// more (qemu.restoreLimits) until the driver, or the next one after an
// agent's death (recoverResume), sets the quantum's cap before cont.
func gfRestoring(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "intent.json"))
	if err != nil {
		return false
	}
	var it struct {
		Op    string `json:"op"`
		Phase string `json:"phase"`
	}
	return json.Unmarshal(b, &it) == nil && it.Op == "resuming" && it.Phase != "continuing"
}

// gfIntents returns the intent of every instance that has one.
func gfIntents(instDir string) map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(instDir)
	for _, e := range ents {
		if op := gfIntent(filepath.Join(instDir, e.Name())); op != "" {
			out[e.Name()] = op
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The sampler: every 200 ms, the QEMU processes against the capacity.

type gfSampler struct {
	instDir  string
	capacity model.Resources
	cpuMilli int64 // every guest's CPU cap

	stop, done chan struct{}

	mu        sync.Mutex
	first     map[int]time.Time // when each QEMU pid was first seen
	grace     time.Duration     // how long a new QEMU is counted at its quantum's cap
	cgDirs    map[string]bool
	samples   int
	maxMilli  int64
	maxDesc   string
	seen      map[string]bool // findings already reported, by key
	findings  []string        // not yet taken
	nFindings int
}

func newGFSampler(instDir string, capacity model.Resources, cpuMilli int64) *gfSampler {
	return &gfSampler{instDir: instDir, capacity: capacity, cpuMilli: cpuMilli, grace: time.Second,
		stop: make(chan struct{}), done: make(chan struct{}),
		first: map[int]time.Time{}, cgDirs: map[string]bool{}, seen: map[string]bool{}}
}

func (s *gfSampler) run() {
	defer close(s.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.sample()
		}
	}
}

func (s *gfSampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// gfMeasure is one reading of the host.
type gfMeasure struct {
	milli, memMiB int64
	n             int
	desc          []string
	dups          []string
	uncapped      []string
	wrongCap      []string
}

func (s *gfSampler) measure() gfMeasure {
	byID, _ := gfGroup(gfScan(s.instDir))
	var m gfMeasure
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	now := time.Now()
	for _, id := range ids {
		qs := byID[id]
		if len(qs) > 1 {
			m.dups = append(m.dups, fmt.Sprintf("workspace id %s has %d QEMU processes: pids %v", id, len(qs), gfPIDs(qs)))
		}
		for _, q := range qs {
			s.mu.Lock()
			if _, ok := s.first[q.PID]; !ok {
				s.first[q.PID] = now
			}
			// A resumed QEMU joins its group while it loads its saved
			// state, with a cap of a core per vCPU and one more until its
			// guest runs (qemu.restoreLimits): for its first second
			// (grace), its quantum's cap is counted, whatever is read.
			young := now.Sub(s.first[q.PID]) < s.grace
			s.mu.Unlock()
			cg, err := gfCgroupOf(q.PID)
			if err != nil {
				if !gfAlive(q.PID) {
					continue // gone meanwhile
				}
			}
			s.mu.Lock()
			for _, d := range cg.Dirs {
				s.cgDirs[d] = true
			}
			s.mu.Unlock()
			milli := cg.Milli
			switch {
			case (young || gfRestoring(q.Dir)) && (!cg.Capped || milli != s.cpuMilli):
				// Joining its group, or loading its state with room to
				// load: its guest does not run yet.
				milli = s.cpuMilli
			case !cg.Capped:
				m.uncapped = append(m.uncapped, fmt.Sprintf("QEMU pid %d of %s runs without a CPU cap (cgroups %v, err %v)", q.PID, id, cg.Dirs, err))
				milli = s.cpuMilli
			case milli != s.cpuMilli:
				m.wrongCap = append(m.wrongCap, fmt.Sprintf("QEMU pid %d of %s has a CPU cap of %d millicores, its quantum is %d (cgroups %v)", q.PID, id, milli, s.cpuMilli, cg.Dirs))
			}
			m.milli += milli
			m.memMiB += q.MemMiB
			m.n++
			m.desc = append(m.desc, fmt.Sprintf("%s:pid %d %dm %dMiB", id, q.PID, milli, q.MemMiB))
		}
	}
	return m
}

func (m gfMeasure) over(c model.Resources) bool {
	return m.milli > c.MilliCPU || m.memMiB*int64(model.MiB) > int64(c.Memory)
}

func (m gfMeasure) bad(c model.Resources) bool {
	return m.over(c) || len(m.dups) > 0 || len(m.uncapped) > 0 || len(m.wrongCap) > 0
}

func (s *gfSampler) sample() {
	m := s.measure()
	if m.bad(s.capacity) {
		// /proc is not read atomically: a finding stands only if a second
		// reading at once shows it too.
		m2 := s.measure()
		if !m2.bad(s.capacity) {
			m = gfMeasure{milli: m.milli, memMiB: m.memMiB, n: m.n, desc: m.desc}
		} else {
			m = m2
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	if m.milli > s.maxMilli {
		s.maxMilli, s.maxDesc = m.milli, strings.Join(m.desc, ", ")
	}
	add := func(key, msg string) {
		s.nFindings++
		if s.seen[key] {
			return
		}
		s.seen[key] = true
		s.findings = append(s.findings, time.Now().UTC().Format("15:04:05.000")+" "+msg)
	}
	if m.over(s.capacity) {
		add("cap:"+strings.Join(m.desc, ","), fmt.Sprintf("capacity exceeded: %d QEMU processes hold %d millicores and %d MiB, the host has %d millicores and %s: %s",
			m.n, m.milli, m.memMiB, s.capacity.MilliCPU, s.capacity.Memory.Human(), strings.Join(m.desc, ", ")))
	}
	for _, d := range m.dups {
		add("dup:"+d, "two QEMU for one workspace: "+d)
	}
	for _, d := range m.uncapped {
		add("uncapped:"+d, d)
	}
	for _, d := range m.wrongCap {
		add("cap:"+d, d)
	}
}

// take returns the findings not yet returned.
func (s *gfSampler) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.findings
	s.findings = nil
	return out
}

func (s *gfSampler) firstSeen(pid int) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.first[pid]
	return t, ok
}

// ---------------------------------------------------------------------------
// The run.

// TestGuestFaultDetectors checks the host-side checks of
// TestGuestFaultsUnderSIGKILL on processes that only look like vgrid's
// QEMUs (a Python interpreter with QEMU's command line): one per
// workspace is one, two for one workspace are two, a launcher with its
// daemon (QEMU's double fork) is one; processes outside a capped cgroup
// are reported, and so is the sum of their caps beyond a capacity; and
// the QMP probe reads a run state (from a fake QMP server that sends an
// event first).
func TestGuestFaultDetectors(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skipf("%s is needed to fake QEMU processes", py)
	}
	inst := t.TempDir()
	const code = `import os, time
if os.environ.get("GF_MODE") == "pair":
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(120)
        os._exit(0)
    time.sleep(120)  # the middle child stays a zombie of this one, as with QEMU
else:
    time.sleep(120)
`
	var cmds []*exec.Cmd
	spawn := func(id, mode string) {
		dir := filepath.Join(inst, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := &exec.Cmd{Path: py, Args: []string{"qemu-system-x86_64", "-c", code,
			"-name", "guest=fake:" + id + ",process=vgrid-" + id, "-m", "128",
			"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
			"-pidfile", filepath.Join(dir, "qemu.pid")}}
		cmd.Env = append(os.Environ(), "GF_MODE="+mode)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	t.Cleanup(func() {
		for _, p := range gfScan(inst) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	spawn("wok000000001", "")
	spawn("wdup00000001", "")
	spawn("wdup00000001", "")
	spawn("wpair0000001", "pair")
	var byID map[string][]gfQEMU
	for deadline := time.Now().Add(10 * time.Second); ; {
		// One scan for both: the pair's daemon may appear between two.
		scan := gfScan(inst)
		byID, _ = gfGroup(scan)
		n := 0
		for _, p := range scan {
			if p.ID == "wpair0000001" {
				n++
			}
		}
		if len(byID) == 3 && len(byID["wdup00000001"]) == 2 && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake QEMUs not seen as expected: %+v", byID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if q := byID["wpair0000001"]; len(q) != 1 || q[0].Root == q[0].PID {
		t.Errorf("launcher and daemon: %+v, want one QEMU (the daemon) with its launcher as root", q)
	}
	if q := byID["wok000000001"]; len(q) != 1 || q[0].MemMiB != 128 || !strings.HasSuffix(q[0].QMP, "/qmp.sock") {
		t.Errorf("one QEMU: %+v", q)
	}
	s := newGFSampler(inst, model.Resources{MilliCPU: 1000, Memory: model.GiB}, 550)
	// Seen for the first time: young (a resumed QEMU joins its group while
	// it loads), so counted at their quantum's cap, not reported.
	if m := s.measure(); m.n != 4 || len(m.uncapped)+len(m.wrongCap) != 0 || m.milli != 4*550 {
		t.Errorf("young QEMUs: %d, uncapped %v, other caps %v, %d millicores; want 4 counted at 550 and none reported",
			m.n, m.uncapped, m.wrongCap, m.milli)
	}
	// (A launcher's middle process may still be there at the first
	// reading, so the daemon may be first seen only now: no grace.)
	s.mu.Lock()
	s.grace = 0
	s.mu.Unlock()
	m := s.measure()
	if m.n != 4 || len(m.dups) != 1 || len(m.uncapped)+len(m.wrongCap) != 4 || !m.over(s.capacity) {
		t.Errorf("measure: %d QEMU, dups %v, uncapped %v, other caps %v, %d millicores (over %v)",
			m.n, m.dups, m.uncapped, m.wrongCap, m.milli, m.over(s.capacity))
	}
	s.sample()
	all := strings.Join(s.take(), "\n")
	for _, want := range []string{"capacity exceeded", "two QEMU for one workspace", "wdup00000001"} {
		if !strings.Contains(all, want) {
			t.Errorf("sampler findings lack %q:\n%s", want, all)
		}
	}

	// A fake QMP server: greeting, capabilities, an event, the status.
	sock := filepath.Join(inst, "wok000000001", "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
		dec := json.NewDecoder(c)
		for {
			var req struct {
				Execute string `json:"execute"`
			}
			if dec.Decode(&req) != nil {
				return
			}
			switch req.Execute {
			case "query-status":
				fmt.Fprintln(c, `{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}`)
				fmt.Fprintln(c, `{"return": {"status": "paused", "running": false}}`)
			default:
				fmt.Fprintln(c, `{"return": {}}`)
			}
		}
	}()
	if st, err := gfQMPStatus(sock, 2*time.Second); err != nil || st != "paused" {
		t.Errorf("QMP status %q, %v; want paused", st, err)
	}
	if _, err := gfQMPStatus(filepath.Join(inst, "none.sock"), time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("QMP of a missing socket: %v, want not exist", err)
	}
}
