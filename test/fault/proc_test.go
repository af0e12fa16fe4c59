package fault

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"vgrid/internal/client"
	"vgrid/internal/testenv"
)

// buildVgrid builds the vgrid binary of this tree into a temporary
// directory (with the race detector when the suite runs under it).
func buildVgrid(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		p := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, serr := os.Stat(p); serr != nil {
			testenv.Skip(t, "no go toolchain to build the vgrid binary: %v", err)
		}
		goBin = p
	}
	bin := filepath.Join(t.TempDir(), "vgrid")
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/vgrid")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = testenv.ModuleRoot(t)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built %s in %s (race detector: %v)", bin, time.Since(start).Round(time.Millisecond), raceEnabled)
	return bin
}

// proc is one run of the server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done is closed
}

// vgridServer runs `vgrid server` on one data directory, restarting it on
// the same directory and port.
type vgridServer struct {
	t       *testing.T
	bin     string
	dataDir string
	policy  string
	logPath string
	cfgPath string // VGRID_CONFIG of the child: keeps it off the user's client config
	listen  string // 127.0.0.1:PORT, fixed after the first start
	cur     *proc
	starts  int
	exited  string   // how a server that was not killed ended
	extra   []string // more flags (a replica's: ha_test.go)
}

func newVgridServer(t *testing.T, bin, dir, policy string) *vgridServer {
	s := &vgridServer{t: t, bin: bin, dataDir: filepath.Join(dir, "data"), policy: policy,
		logPath: filepath.Join(dir, "server.log"), cfgPath: filepath.Join(dir, "default-client.json")}
	// Never leave a server running, whatever happens to the test.
	t.Cleanup(func() { s.kill() })
	return s
}

// spawn starts the process and returns at once.
func (s *vgridServer) spawn() (*proc, error) {
	s.starts++
	lf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "\n===== fault suite: start %d at %s =====\n", s.starts, time.Now().Format(time.RFC3339Nano))
	listen := s.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	cmd := exec.Command(s.bin, append([]string{"server", "--data-dir", s.dataDir, "--listen", listen, "--policy", s.policy}, s.extra...)...)
	cmd.Env = append(os.Environ(), "VGRID_CONFIG="+s.cfgPath, "GORACE=halt_on_error=0")
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group (a ^C of the test does not reach it first), and
	// killed by the kernel should the test process die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.cur = p
	return p, nil
}

// start starts the server and waits until its API answers. The first start
// picks a free port; later ones reuse it (the agents' configuration names
// it), retrying while the old listener's port is not yet free.
func (s *vgridServer) start() {
	s.t.Helper()
	wait := 30 * time.Second
	if raceEnabled {
		wait = 90 * time.Second
	}
	for attempt := 0; attempt < 5; attempt++ {
		p, err := s.spawn()
		if err != nil {
			s.t.Fatalf("start vgrid server: %v", err)
		}
		err = s.waitReady(p, wait)
		if err == nil {
			return
		}
		select {
		case <-p.done:
			if strings.Contains(s.logTail(5), "address already in use") {
				time.Sleep(300 * time.Millisecond)
				continue
			}
		default:
			s.kill()
		}
		s.t.Fatalf("vgrid server did not come up: %v\nlog:\n%s", err, s.logTail(40))
	}
	s.t.Fatalf("vgrid server could not listen on %s again\nlog:\n%s", s.listen, s.logTail(40))
}

// keep copies the server's whole log beside the test's directory, which
// goes with the test, as vgrid-fault-SEED-NAME.log, and says where it is.
func (s *vgridServer) keep(seed int64, name string) string {
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("vgrid-fault-%d-%s.log", seed, name))
	if b, err := os.ReadFile(s.logPath); err != nil || os.WriteFile(kept, b, 0o644) != nil {
		return s.logPath
	}
	return kept
}

func (s *vgridServer) waitReady(p *proc, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
		cfg, err := s.clientConfig()
		if err != nil {
			last = err
			continue
		}
		cl, err := client.New(cfg)
		if err != nil {
			last = err
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = cl.Do(ctx, "GET", "/whoami", nil, nil)
		cancel()
		if err != nil {
			last = err
			continue
		}
		if s.listen == "" {
			// A replica lists the others after itself.
			u, err := url.Parse(strings.Split(cfg.Server, ",")[0])
			if err != nil {
				return err
			}
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return err
			}
			s.listen = u.Host
		}
		return nil
	}
	return fmt.Errorf("no answer in %s: %v", wait, last)
}

// clientConfig is the admin client config the server wrote in its data
// directory at bootstrap (server URL, CA, admin token).
func (s *vgridServer) clientConfig() (client.Config, error) {
	cfg, err := client.LoadConfigFile(filepath.Join(s.dataDir, "client.json"))
	if err != nil {
		return cfg, err
	}
	if cfg.Token == "" || cfg.CACert == "" || cfg.Server == "" {
		return cfg, errors.New("client.json is incomplete")
	}
	return cfg, nil
}

// kill sends SIGKILL to the server (its process group) and waits for it to
// be gone. It returns when the signal was sent; zero if none was running,
// and then exited says how the last one ended by itself.
func (s *vgridServer) kill() time.Time {
	p := s.cur
	if p == nil {
		return time.Time{}
	}
	s.cur = nil
	select {
	case <-p.done:
		s.exited = fmt.Sprintf("exited by itself: %v", p.err)
		return time.Time{}
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	at := time.Now()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		s.t.Errorf("vgrid server (pid %d) did not die within 15s of SIGKILL", p.cmd.Process.Pid)
	}
	return at
}

// running reports whether the current process is alive.
func (s *vgridServer) running() bool {
	if s.cur == nil {
		return false
	}
	select {
	case <-s.cur.done:
		return false
	default:
		return true
	}
}

// stop asks the server to shut down (SIGTERM) and waits; it reports the
// exit status, or kills it after the timeout.
func (s *vgridServer) stop(timeout time.Duration) error {
	p := s.cur
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		s.cur = nil
		return p.err
	case <-time.After(timeout):
		s.kill()
		return fmt.Errorf("did not stop within %s of SIGTERM", timeout)
	}
}

// logTail returns the last n lines of the server log.
func (s *vgridServer) logTail(n int) string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// raceReports returns the data race reports in the server log (a server
// built with -race prints them as it finds them).
func (s *vgridServer) raceReports() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || !bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		return ""
	}
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "WARNING: DATA RACE") {
			in = true
		}
		if in {
			out.WriteString(line + "\n")
		}
		if in && strings.HasPrefix(line, "==================") && out.Len() > 40 {
			in = false
		}
	}
	return out.String()
}
