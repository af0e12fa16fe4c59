// Command clusterstart measures the start of a vgrid virtual cluster
// against the same number of bare QEMU guests started at once.
//
// In one run it alternates K rounds of:
//
//  1. vgrid: against a running control plane (vgrid up; client config from
//     -config), it creates a cluster of -members members (one role, image
//     -image, quantum {vcpus: 1, cpu: -cpu, memory: -memory}, duration 10m,
//     a new name each round) and measures (a) API call -> response (the
//     server admitted it and stored everything), (b) API call -> the last
//     member's QEMU exec'd (the members' recorded ProcessStarted, taken by
//     the host agent on this machine's clock, as bench/startlatency does),
//     and (c) API call -> the cluster Ready (every member running with its
//     roster applied; GetCluster polled every -poll). It then deletes the
//     cluster and waits until GetCluster says 404 and the members' QEMU
//     processes have exited.
//  2. bare: -members QEMU guests of the same image files (the image's
//     kernel, initrd and disk as the control plane lists them), each on a
//     fresh qcow2 overlay (qemu-img create) of the size the control plane
//     gives a member's disk, with the driver's own command line
//     (qemu.Argv: same machine type, devices, -daemonize; no NICs, so a
//     user-mode NIC; an empty file in place of the seed disk), no cgroups,
//     no overlay network, exec'd all at once. Measured from the first exec
//     to the last guest agent's first message ("ready" with its facts) on
//     the virtio-serial socket, read the way the driver reads it. The
//     guests are then killed and their files removed.
//
// It prints each round, then min/median/max of every figure, the ratios
// vgrid Ready / bare ready and the (b) figure against its 150 ms target.
//
//	go run ./bench/clusterstart -k 3 -config /tmp/vg-cluster-bench/client.json
//
// It must run on the machine of the vgrid up (it compares the agent's
// timestamps with its own clock, reads the image files, and starts QEMU),
// as root like the driver.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vgrid/bench/internal/benchkit"
	"vgrid/internal/client"
	"vgrid/internal/guest/proto"
	"vgrid/internal/hypervisor"
	"vgrid/internal/hypervisor/qemu"
	"vgrid/internal/model"
)

// target150 is the target for API call -> last member's QEMU exec.
const target150 = 150 * time.Millisecond

type options struct {
	k        int
	members  int
	cpu      float64
	memory   string
	cfgPath  string
	image    string
	poll     time.Duration
	settle   time.Duration
	timeout  time.Duration
	keepDirs bool
}

func main() {
	var o options
	flag.IntVar(&o.k, "k", 3, "rounds (each: one vgrid cluster, then the bare guests)")
	flag.IntVar(&o.members, "members", 8, "members of the cluster, and bare guests")
	flag.Float64Var(&o.cpu, "cpu", 0.25, "CPU cap of each member in cores (the bare guests have none)")
	flag.StringVar(&o.memory, "memory", "128Mi", "guest memory")
	flag.StringVar(&o.cfgPath, "config", client.DefaultConfigPath(), "client config of the vgrid up")
	flag.StringVar(&o.image, "image", "vgrid-guest", "image (registered in the vgrid up; the bare guests use its files)")
	flag.DurationVar(&o.poll, "poll", 25*time.Millisecond, "how often GetCluster is polled for Ready")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "pause after each side's cleanup, before the next start")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "limit for one side's start, and for one cleanup")
	flag.BoolVar(&o.keepDirs, "keep", false, "keep the bare guests' directories (console logs) instead of removing them")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterstart:", err)
		os.Exit(1)
	}
}

// vgridRound is what one cluster start measured.
type vgridRound struct {
	response   time.Duration // (a) API call -> response
	scheduled  time.Duration // API call -> the calendar's start action (last member's Timings.Scheduled)
	received   time.Duration // API call -> the host agent saw the last member (Timings.AgentReceived)
	firstExec  time.Duration // API call -> first member's QEMU exec
	lastExec   time.Duration // (b) API call -> last member's QEMU exec
	guestReady time.Duration // API call -> last member's guest ready, as the agent recorded it
	ready      time.Duration // (c) API call -> GetCluster says Ready
	bootSpread time.Duration // first exec -> last guest ready (agent's clock), cf. bare
	uptime     float64       // the slowest guest's uptime at ready, seconds (guest's clock)
	accel      string
	hosts      []string
}

// bareRound is what one start of the bare guests measured.
type bareRound struct {
	execSpread time.Duration // first exec -> last exec
	daemonized time.Duration // first exec -> last QEMU daemonized
	ready      time.Duration // first exec -> last guest agent ready
	uptime     float64
}

func run(ctx context.Context, o options) error {
	if o.k < 1 || o.members < 1 {
		return errors.New("-k and -members must be at least 1")
	}
	mem, err := model.ParseByteSize(o.memory)
	if err != nil {
		return fmt.Errorf("-memory: %w", err)
	}
	cfg, err := client.LoadConfig(o.cfgPath)
	if err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	cl, err := client.New(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}

	// The host(s) and their free CPU, so that a cluster too large for
	// them is said plainly rather than refused mid-run.
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("list hosts (is vgrid up running, and -config its client config?): %w", err)
	}
	var freeMilli int64
	var hostDesc []string
	for _, n := range nodes {
		if !n.Ready {
			continue
		}
		freeMilli += n.Free.MilliCPU
		hostDesc = append(hostDesc, fmt.Sprintf("%s (%s, %d millicores free of %d)", n.Name, n.Accel, n.Free.MilliCPU, n.Capacity.MilliCPU))
	}
	if len(hostDesc) == 0 {
		return errors.New("no host is Ready")
	}
	need := int64(float64(o.members)*o.cpu*1000 + 0.5)
	if need > freeMilli {
		return fmt.Errorf("%d members x %g cores = %d millicores, but the Ready hosts have %d free: use fewer -members or a smaller -cpu",
			o.members, o.cpu, need, freeMilli)
	}

	img, err := localImage(ctx, cl, o.image)
	if err != nil {
		return err
	}
	qemuPath, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return fmt.Errorf("bare: %w", err)
	}
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("bare: %w", err)
	}
	tsc, err := qemu.TSCkHz()
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterstart: warning:", err)
	}
	tmp, err := os.MkdirTemp("", "vgcs-")
	if err != nil {
		return err
	}
	if o.keepDirs {
		fmt.Fprintf(os.Stderr, "clusterstart: the bare guests' files are kept in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	// The disk a member gets (control plane: quantum.disk unset -> the
	// image's minimum, at least 1 GiB), so both guests grow the same fs.
	diskSize := max(img.MinDisk, model.GiB)

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("clusterstart: %d rounds; %d members / bare guests; vcpus 1, cpu %g (bare: no cap), memory %s, disk %s; image %s\n",
		o.k, o.members, o.cpu, mem.Human(), diskSize.Human(), o.image)
	fmt.Printf("hosts: %s\n", strings.Join(hostDesc, "; "))
	fmt.Printf("load average at start: %s", load)
	fmt.Printf("started %s\n\n", time.Now().UTC().Format(time.RFC3339))

	stamp := time.Now().Unix() % 100000
	var vr []vgridRound
	var br []bareRound
	accel := ""
	for r := 1; r <= o.k; r++ {
		name := fmt.Sprintf("cb-%d-r%d", stamp, r)
		v, err := vgridStart(ctx, cl, o, name, mem)
		if err != nil {
			return fmt.Errorf("round %d: vgrid: %w", r, err)
		}
		if err := sleep(ctx, o.settle); err != nil {
			return err
		}
		if accel == "" {
			accel = v.accel
		} else if v.accel != accel {
			return fmt.Errorf("round %d: vgrid: members ran under %s, earlier under %s", r, v.accel, accel)
		}
		b, err := bareStart(ctx, o, bareSetup{
			dir: filepath.Join(tmp, "r"+strconv.Itoa(r)), qemu: qemuPath, qemuImg: qemuImg,
			img: img, mem: mem, disk: diskSize, accel: accel, tsc: tsc,
		})
		if err != nil {
			return fmt.Errorf("round %d: bare: %w", r, err)
		}
		vr, br = append(vr, v), append(br, b)
		fmt.Printf("round %d: vgrid %-9s response %8s  start action %8s  exec first %8s last %8s  guests ready %8s  Ready %8s | bare exec spread %8s  ready %8s | Ready/bare %.2fx\n",
			r, name, ms(v.response), ms(v.scheduled), ms(v.firstExec), ms(v.lastExec), ms(v.guestReady), ms(v.ready),
			ms(b.execSpread), ms(b.ready), v.ready.Seconds()/b.ready.Seconds())
		if r < o.k {
			if err := sleep(ctx, o.settle); err != nil {
				return err
			}
		}
	}

	fmt.Printf("\nmembers' accel: %s; vgrid hosts of the last round: %s\n\n", accel, strings.Join(vr[len(vr)-1].hosts, ", "))
	fmt.Printf("%-62s %9s %9s %9s\n", "", "min", "median", "max")
	row := func(what string, ds []time.Duration) {
		s := benchkit.Stats(ds)
		fmt.Printf("%-62s %9s %9s %9s\n", what, ms(s[0]), ms(s[1]), ms(s[2]))
	}
	pick := func(f func(vgridRound) time.Duration) []time.Duration {
		var out []time.Duration
		for _, v := range vr {
			out = append(out, f(v))
		}
		return out
	}
	pickB := func(f func(bareRound) time.Duration) []time.Duration {
		var out []time.Duration
		for _, b := range br {
			out = append(out, f(b))
		}
		return out
	}
	row("vgrid (a) API call -> response (admitted, stored)", pick(func(v vgridRound) time.Duration { return v.response }))
	row("vgrid     API call -> calendar's start action (last member)", pick(func(v vgridRound) time.Duration { return v.scheduled }))
	row("vgrid     API call -> host agent saw it (last member)", pick(func(v vgridRound) time.Duration { return v.received }))
	row("vgrid     API call -> first member's QEMU exec", pick(func(v vgridRound) time.Duration { return v.firstExec }))
	row("vgrid (b) API call -> last member's QEMU exec", pick(func(v vgridRound) time.Duration { return v.lastExec }))
	row("vgrid     first exec -> last guest ready (agent's record)", pick(func(v vgridRound) time.Duration { return v.bootSpread }))
	row("vgrid     API call -> last guest ready (agent's record)", pick(func(v vgridRound) time.Duration { return v.guestReady }))
	row("vgrid (c) API call -> cluster Ready (polled)", pick(func(v vgridRound) time.Duration { return v.ready }))
	row("bare      first exec -> last exec", pickB(func(b bareRound) time.Duration { return b.execSpread }))
	row("bare      first exec -> last QEMU daemonized", pickB(func(b bareRound) time.Duration { return b.daemonized }))
	row("bare      first exec -> last guest agent ready", pickB(func(b bareRound) time.Duration { return b.ready }))
	var vu, bu []float64
	for i := range vr {
		vu, bu = append(vu, vr[i].uptime), append(bu, br[i].uptime)
	}
	fmt.Printf("%-62s %8.2fs %8.2fs\n", "slowest guest's uptime at ready, median: vgrid, bare", medianF(vu), medianF(bu))

	var ratios []float64
	var per []string
	for i := range vr {
		x := vr[i].ready.Seconds() / br[i].ready.Seconds()
		ratios = append(ratios, x)
		per = append(per, fmt.Sprintf("%.2fx", x))
	}
	vReady := benchkit.Stats(pick(func(v vgridRound) time.Duration { return v.ready }))
	bReady := benchkit.Stats(pickB(func(b bareRound) time.Duration { return b.ready }))
	fmt.Printf("\nratio vgrid Ready / bare ready: %.2fx (medians), %.2fx (median of the rounds' ratios); per round: %s\n",
		vReady[1].Seconds()/bReady[1].Seconds(), medianF(ratios), strings.Join(per, " "))
	b := benchkit.Stats(pick(func(v vgridRound) time.Duration { return v.lastExec }))
	verdict := "met"
	if b[1] >= target150 {
		verdict = "NOT met"
	}
	fmt.Printf("(b) API call -> last QEMU exec: median %s, max %s against the %s target: %s (by the median)\n",
		ms(b[1]), ms(b[2]), target150, verdict)
	return nil
}

// localImage returns the image as the control plane lists it, with its
// files checked to be on this machine.
func localImage(ctx context.Context, cl *client.Client, name string) (hypervisor.LocalImage, error) {
	imgs, err := cl.Images(ctx)
	if err != nil {
		return hypervisor.LocalImage{}, fmt.Errorf("list images: %w", err)
	}
	for _, im := range imgs {
		if im.Name != name {
			continue
		}
		li := benchkit.LocalImage(im)
		for _, f := range []string{li.Disk, li.Kernel, li.Initrd} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				return li, fmt.Errorf("image %s: its file is not on this machine (run this on the control plane's machine): %w", name, err)
			}
		}
		return li, nil
	}
	var names []string
	for _, im := range imgs {
		names = append(names, im.Name)
	}
	return hypervisor.LocalImage{}, fmt.Errorf("image %q not registered (have: %s)", name, strings.Join(names, ", "))
}

// vgridStart creates the cluster, waits for Ready, records the figures,
// and deletes it (also when anything fails), waiting until it and its
// guests are gone.
func vgridStart(ctx context.Context, cl *client.Client, o options, name string, mem model.ByteSize) (v vgridRound, err error) {
	spec := fmt.Sprintf(`name: %s
duration: 10m
roles:
  - name: m
    count: %d
    image: %s
    quantum: {vcpus: 1, cpu: %g, memory: %s}
`, name, o.members, o.image, o.cpu, mem.String())
	t0 := time.Now()
	st, err := cl.CreateCluster(ctx, []byte(spec))
	if err != nil {
		return v, fmt.Errorf("create cluster %s: %w", name, err)
	}
	v.response = time.Since(t0)
	members := append([]string(nil), st.Members...)
	var pids []int
	defer func() {
		if derr := deleteCluster(context.Background(), cl, name, members, &pids, o.timeout); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete cluster %s: %w", name, derr))
		}
	}()
	if len(members) != o.members {
		return v, fmt.Errorf("create cluster %s: %d members in the answer, want %d", name, len(members), o.members)
	}

	deadline := time.Now().Add(o.timeout)
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	for {
		st, err = cl.GetCluster(ctx, name)
		now := time.Now()
		if err != nil {
			return v, fmt.Errorf("get cluster %s: %w", name, err)
		}
		if st.State == "Ready" {
			v.ready = now.Sub(t0)
			break
		}
		for _, m := range st.Details {
			if m.State == model.StateFailed {
				return v, fmt.Errorf("member %s failed: %s", m.Name, m.Reason)
			}
		}
		if now.After(deadline) {
			return v, fmt.Errorf("cluster %s not Ready after %s: state %s, %d of %d ready", name, o.timeout, st.State, st.Ready, len(st.Members))
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-tick.C:
		}
	}

	// The members' own records: when their QEMU was exec'd and their
	// guest said ready, both taken by the host agent on this machine.
	var first, last, lastReady, lastSched, lastRecv time.Time
	hosts := map[string]bool{}
	for _, m := range members {
		w, err := cl.GetWorkspace(ctx, m)
		if err != nil {
			return v, fmt.Errorf("get member %s: %w", m, err)
		}
		tm := w.Status.Timings
		if tm.ProcessStarted.IsZero() || tm.GuestReady.IsZero() {
			return v, fmt.Errorf("member %s: no process_started or guest_ready recorded", m)
		}
		if first.IsZero() || tm.ProcessStarted.Before(first) {
			first = tm.ProcessStarted
		}
		if tm.ProcessStarted.After(last) {
			last = tm.ProcessStarted
		}
		if tm.GuestReady.After(lastReady) {
			lastReady = tm.GuestReady
		}
		if tm.Scheduled.After(lastSched) {
			lastSched = tm.Scheduled
		}
		if tm.AgentReceived.After(lastRecv) {
			lastRecv = tm.AgentReceived
		}
		if w.Status.Guest != nil {
			v.uptime = max(v.uptime, w.Status.Guest.UptimeS)
		}
		if w.Status.PID > 0 {
			pids = append(pids, w.Status.PID)
		}
		v.accel = w.Status.Accel
		hosts[w.Status.Node] = true
	}
	for h := range hosts {
		v.hosts = append(v.hosts, h)
	}
	sort.Strings(v.hosts)
	if !lastSched.IsZero() {
		v.scheduled = lastSched.Sub(t0)
	}
	if !lastRecv.IsZero() {
		v.received = lastRecv.Sub(t0)
	}
	v.firstExec = first.Sub(t0)
	v.lastExec = last.Sub(t0)
	v.guestReady = lastReady.Sub(t0)
	v.bootSpread = lastReady.Sub(first)
	return v, nil
}

// deleteCluster deletes the cluster and waits until GetCluster says 404,
// its members are gone, and the QEMU processes pids have exited.
func deleteCluster(ctx context.Context, cl *client.Client, name string, members []string, pids *[]int, timeout time.Duration) error {
	// The members' processes, if the round failed before it read them.
	if len(*pids) == 0 {
		for _, m := range members {
			if w, err := cl.GetWorkspace(ctx, m); err == nil && w.Status.PID > 0 {
				*pids = append(*pids, w.Status.PID)
			}
		}
	}
	if _, err := cl.DeleteCluster(ctx, name); err != nil && !client.IsNotFound(err) {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		_, err := cl.GetCluster(ctx, name)
		if client.IsNotFound(err) {
			break
		}
		if err != nil {
			return fmt.Errorf("get cluster: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still there after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range members {
		for {
			_, err := cl.GetWorkspace(ctx, m)
			if client.IsNotFound(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("get member %s: %w", m, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("member %s still there after %s", m, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, pid := range *pids {
		for benchkit.QEMUAlive(pid, "") {
			if time.Now().After(deadline) {
				return fmt.Errorf("QEMU pid %d still running %s after the delete", pid, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

type bareSetup struct {
	dir, qemu, qemuImg string
	img                hypervisor.LocalImage
	mem, disk          model.ByteSize
	accel              string
	tsc                int64
}

// bareGuest is one QEMU started by hand.
type bareGuest struct {
	spec    hypervisor.InstanceSpec
	p       qemu.Paths
	execAt  time.Time
	daemon  time.Time
	readyAt time.Time
	uptime  float64
	pid     int
	err     error
}

// bareStart prepares the guests' files, execs all QEMUs at once, waits for
// every guest agent's first message, then kills them and removes their
// files.
func bareStart(ctx context.Context, o options, s bareSetup) (b bareRound, err error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return b, err
	}
	guests := make([]*bareGuest, o.members)
	defer func() {
		kerr := killBare(guests)
		if !o.keepDirs {
			os.RemoveAll(s.dir)
		}
		if kerr != nil {
			err = errors.Join(err, kerr)
		}
	}()
	for i := range guests {
		id := "cb-bare-" + strconv.Itoa(i)
		dir := filepath.Join(s.dir, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return b, err
		}
		g := &bareGuest{
			spec: hypervisor.InstanceSpec{ID: id, Hostname: id, Image: s.img,
				Quantum: model.Quantum{VCPUs: 1, Memory: s.mem, Disk: s.disk}},
			p: qemu.Paths{Dir: dir, Spec: filepath.Join(dir, "spec.json"), State: filepath.Join(dir, "state.json"),
				Disk: filepath.Join(dir, "disk.qcow2"), Seed: filepath.Join(dir, "cidata.iso"),
				Console: filepath.Join(dir, "console.log"), PIDFile: filepath.Join(dir, "qemu.pid"),
				Log: filepath.Join(dir, "qemu.log"), Intent: filepath.Join(dir, "intent.json"), SockDir: dir,
				QMP: filepath.Join(dir, "qmp.sock"), Agent: filepath.Join(dir, "agent.sock")},
		}
		guests[i] = g
		if len(g.p.Agent) > 107 {
			return b, fmt.Errorf("socket path %s too long", g.p.Agent)
		}
		out, err := exec.CommandContext(ctx, s.qemuImg, "create", "-q", "-f", "qcow2", "-b", s.img.Disk, "-F", s.img.DiskFormat,
			g.p.Disk, strconv.FormatInt(int64(s.disk), 10)).CombinedOutput()
		if err != nil {
			return b, fmt.Errorf("qemu-img create %s: %w: %s", g.p.Disk, err, strings.TrimSpace(string(out)))
		}
		// Argv always attaches a seed disk; the bare guest gets an empty
		// one, so it reads no context (its agent then uses DHCP on the
		// user-mode NIC, as a lone workspace without network-config does).
		if err := os.WriteFile(g.p.Seed, nil, 0o644); err != nil {
			return b, err
		}
	}

	tctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for _, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			g.err = g.start(tctx, s)
		}()
	}
	close(startGate)
	wg.Wait()
	var errs []error
	for _, g := range guests {
		if g.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", g.spec.ID, g.err))
		}
	}
	if len(errs) > 0 {
		return b, errors.Join(errs...)
	}
	first, lastExec, lastDaemon, lastReady := guests[0].execAt, guests[0].execAt, guests[0].daemon, guests[0].readyAt
	for _, g := range guests {
		if g.execAt.Before(first) {
			first = g.execAt
		}
		if g.execAt.After(lastExec) {
			lastExec = g.execAt
		}
		if g.daemon.After(lastDaemon) {
			lastDaemon = g.daemon
		}
		if g.readyAt.After(lastReady) {
			lastReady = g.readyAt
		}
		b.uptime = max(b.uptime, g.uptime)
	}
	b.execSpread = lastExec.Sub(first)
	b.daemonized = lastDaemon.Sub(first)
	b.ready = lastReady.Sub(first)
	return b, nil
}

// start execs QEMU with the driver's command line, waits for it to
// daemonize, connects to the guest agent's socket as the driver does
// (asking for facts at once) and waits for the first message with facts.
func (g *bareGuest) start(ctx context.Context, s bareSetup) error {
	args := qemu.Argv(g.spec, g.p, s.accel, s.tsc)
	logf, err := os.OpenFile(g.p.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.qemu, args...)
	cmd.Dir = g.p.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	g.execAt = time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec qemu: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		err = ctx.Err()
	}
	g.daemon = time.Now()
	g.pid = readPID(g.p.PIDFile)
	if err != nil {
		return fmt.Errorf("qemu did not daemonize: %w%s", err, fileTail(g.p.Log))
	}
	if g.pid == 0 {
		return fmt.Errorf("qemu daemonized but wrote no pid file%s", fileTail(g.p.Log))
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", g.p.Agent)
	if err != nil {
		return fmt.Errorf("connect to the guest agent socket: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req, _ := json.Marshal(proto.Message{Type: proto.TypeFacts})
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("write to the guest agent socket: %w", err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var m proto.Message
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if (m.Type == proto.TypeReady || m.Type == proto.TypeFacts) && m.Info != nil {
			g.readyAt = time.Now()
			g.uptime = m.Info.UptimeS
			return nil
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("no guest agent ready: %w (console: %s)", ctx.Err(), strings.TrimPrefix(fileTail(g.p.Console), ": "))
	}
	return fmt.Errorf("guest agent socket closed before ready: %v%s", sc.Err(), fileTail(g.p.Log))
}

// killBare kills the bare guests' QEMUs and waits until they are gone.
func killBare(guests []*bareGuest) error {
	var errs []error
	for _, g := range guests {
		if g == nil {
			continue
		}
		pid := g.pid
		if pid == 0 {
			pid = readPID(g.p.PIDFile)
		}
		if !benchkit.QEMUAlive(pid, g.p.Dir+"/") {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for benchkit.QEMUAlive(pid, g.p.Dir+"/") {
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("bare QEMU pid %d (%s) did not exit after SIGKILL", pid, g.spec.ID))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// readPID returns the pid in the pid file path, 0 if there is none.
func readPID(path string) int {
	pid, _ := benchkit.ReadPID(path)
	return pid
}

// fileTail returns ": <last lines of path>" or "".
func fileTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return ": " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "; ")
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ms is benchkit.MS, in seconds from 10 s on.
func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return benchkit.MS(d)
}

func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
