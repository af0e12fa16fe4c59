package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"vgrid/internal/guest/proto"
)

// fakeRoot builds a guest-like tree of /proc and /sys files under a temp dir.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var guestFiles = map[string]string{
	"sys/devices/system/cpu/online": "0-1\n",
	"proc/meminfo":                  "MemTotal:         229072 kB\nMemFree: 1 kB\n",
	"sys/block/vda/size":            "2097152\n",
	"proc/uptime":                   "1.50 2.00\n",
}

func testAgent(t *testing.T, root string, off *int) *Agent {
	return New(Config{
		Root: root,
		Log:  log.New(io.Discard, "", 0),
		PowerOff: func() error {
			if off != nil {
				*off++
			}
			return nil
		},
		SetHostname: func(string) error { return nil },
		RunUserData: func(string, []string) error { return nil },
	})
}

func TestFacts(t *testing.T) {
	root := fakeRoot(t, guestFiles)
	info := Facts(root, true)
	if info.VCPUs != 2 || info.MemoryMiB != 223 || info.DiskBytes != 1<<30 || info.UptimeS != 1.5 {
		t.Errorf("facts = %+v", info)
	}
	if !info.Context || info.Agent != Version || info.Kernel == "" || info.Addresses == nil {
		t.Errorf("facts = %+v", info)
	}
	// Missing files fall back or stay zero.
	empty := Facts(t.TempDir(), false)
	if empty.VCPUs < 1 || empty.MemoryMiB != 0 || empty.DiskBytes != 0 {
		t.Errorf("facts of empty root = %+v", empty)
	}
}

// rw is a port whose input is fixed and whose output is captured.
type rw struct {
	in  io.Reader
	out bytes.Buffer
}

func (p *rw) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *rw) Write(b []byte) (int, error) { return p.out.Write(b) }

func TestServe(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []proto.Message // Info is only checked for presence
		powered int
	}{
		{
			name: "ping and facts",
			in:   `{"type":"ping","id":"1"}` + "\n" + `{"type":"facts","id":"2"}` + "\n",
			want: []proto.Message{{Type: "pong", ID: "1"}, {Type: "facts", ID: "2"}},
		},
		{
			name: "blank lines and partial last line",
			in:   "\n  \n" + `{"type":"ping"}` + "\n" + `{"type":"pi`,
			want: []proto.Message{{Type: "pong"}},
		},
		{
			name: "bad json and unknown type",
			in:   "nope\n" + `{"type":"dance","id":"x"}` + "\n",
			want: []proto.Message{{Type: "error"}, {Type: "error", ID: "x"}},
		},
		{
			name:    "shutdown acks then powers off",
			in:      `{"type":"shutdown","id":"s"}` + "\n",
			want:    []proto.Message{{Type: "shutdown", ID: "s"}},
			powered: 1,
		},
	}
	for _, tt := range tests {
		off := 0
		a := testAgent(t, fakeRoot(t, guestFiles), &off)
		port := &rw{in: strings.NewReader(tt.in)}
		if err := a.Serve(port); !errors.Is(err, io.EOF) {
			t.Errorf("%s: Serve = %v, want EOF", tt.name, err)
		}
		var got []proto.Message
		sc := bufio.NewScanner(&port.out)
		for sc.Scan() {
			var m proto.Message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: reply %q: %v", tt.name, sc.Text(), err)
			}
			if (m.Type == "facts") != (m.Info != nil) {
				t.Errorf("%s: info presence wrong in %q", tt.name, sc.Text())
			}
			if m.Type == "error" && m.Message == "" {
				t.Errorf("%s: error without message", tt.name)
			}
			m.Info, m.Message = nil, ""
			got = append(got, m)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: replies %+v, want %+v", tt.name, got, tt.want)
		}
		if off != tt.powered {
			t.Errorf("%s: powered off %d times, want %d", tt.name, off, tt.powered)
		}
	}
}

// chunkReader returns its chunks one Read at a time, then an error.
type chunkReader struct {
	chunks []string
	err    error
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, c.err
	}
	n := copy(b, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	tests := []struct {
		name   string
		chunks []string
		want   []string
	}{
		{"split across reads", []string{"ab", "c\nd", "e\n"}, []string{"abc", "de"}},
		{"many in one read", []string{"a\nb\nc\n"}, []string{"a", "b", "c"}},
		{"partial dropped at error", []string{"a\nbc"}, []string{"a"}},
		{"over-long line skipped", []string{long, long, "tail\nok\n"}, []string{"ok"}},
	}
	for _, tt := range tests {
		var l lineReader
		r := &chunkReader{chunks: append([]string(nil), tt.chunks...), err: io.EOF}
		var got []string
		for {
			line, err := l.next(r)
			if err != nil {
				break
			}
			got = append(got, string(line))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %d lines %.40q, want %q", tt.name, len(got), got, tt.want)
		}
		// After an error the reader is reusable and starts clean.
		line, err := l.next(&chunkReader{chunks: []string{"next\n"}, err: io.EOF})
		if err != nil || string(line) != "next" {
			t.Errorf("%s: after error got %q, %v", tt.name, line, err)
		}
	}
}

func TestApplySeed(t *testing.T) {
	tests := []struct {
		name     string
		seed     Seed
		files    map[string]string
		ran      int
		hostname string
	}{
		{
			name: "full",
			seed: Seed{InstanceID: "ws-1", Hostname: "box", SSHKeys: []string{"k1", "k2"},
				UserData: []byte("#!/bin/sh\necho hi\n"), Env: []EnvVar{{"A", "1"}}},
			files: map[string]string{
				"etc/hostname":                      "box\n",
				"etc/vgrid/env":                     "A='1'\n",
				"root/.ssh/authorized_keys":         "k1\nk2\n",
				"var/lib/vgrid/user-data":           "#!/bin/sh\necho hi\n",
				"var/lib/vgrid/user-data.ws-1.done": "",
			},
			ran:      1,
			hostname: "box",
		},
		{
			name:  "user-data not a script",
			seed:  Seed{InstanceID: "ws/2", UserData: []byte("#cloud-config\n")},
			files: map[string]string{"etc/vgrid/env": ""},
		},
	}
	for _, tt := range tests {
		root := t.TempDir()
		ran, hostname := 0, ""
		a := New(Config{Root: root, Log: log.New(io.Discard, "", 0),
			SetHostname: func(h string) error { hostname = h; return nil },
			RunUserData: func(script string, env []string) error {
				ran++
				if !strings.HasPrefix(script, root) || !contains(env, "A=1") && len(tt.seed.Env) > 0 {
					t.Errorf("%s: run %s env %q", tt.name, script, env)
				}
				return nil
			},
		})
		for i := 0; i < 2; i++ { // the second apply (an agent restart) must not rerun user-data
			if err := a.applySeed(&tt.seed); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		for name, want := range tt.files {
			got, err := os.ReadFile(filepath.Join(root, name))
			if err != nil || string(got) != want {
				t.Errorf("%s: %s = %q, %v; want %q", tt.name, name, got, err, want)
			}
		}
		if ran != tt.ran || hostname != tt.hostname {
			t.Errorf("%s: ran %d hostname %q; want %d %q", tt.name, ran, hostname, tt.ran, tt.hostname)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLoadSeed(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    Seed
		wantErr bool
	}{
		{
			name: "all files",
			files: map[string]string{
				"meta-data": "instance-id: i1\nlocal-hostname: h1\npublic-keys:\n  - k\n",
				"user-data": "#!/bin/sh\n",
				"vgrid-env": "X=y\n",
			},
			want: Seed{InstanceID: "i1", Hostname: "h1", SSHKeys: []string{"k"},
				UserData: []byte("#!/bin/sh\n"), Env: []EnvVar{{"X", "y"}}},
		},
		{
			name:  "meta-data only, hostname key",
			files: map[string]string{"meta-data": "hostname: h2\n"},
			want:  Seed{Hostname: "h2"},
		},
		{
			name: "network-config and cluster",
			files: map[string]string{
				"meta-data":          "instance-id: i3\n",
				"network-config":     "version: 2\n",
				"vgrid-cluster.json": "{}",
			},
			want: Seed{InstanceID: "i3", NetworkConfig: []byte("version: 2\n"), Cluster: []byte("{}")},
		},
		{name: "no meta-data", files: map[string]string{"user-data": "x"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := LoadSeed(fakeRoot(t, tt.files))
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: err = %v", tt.name, err)
		}
		if err == nil && !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, *got, tt.want)
		}
	}
}

func TestFindPortAndPowerButtons(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/class/virtio-ports/vport0p0/name": "other\n",
		"sys/class/virtio-ports/vport0p1/name": proto.PortName + "\n",
		"sys/class/virtio-ports/vport1p1/name": proto.PortName + "\n", // no /dev node
		"dev/vport0p0":                         "",
		"dev/vport0p1":                         "",
		"sys/class/input/event0/device/name":   "AT Translated Set 2 keyboard\n",
		"sys/class/input/event1/device/name":   "Power Button\n",
	})
	if got, want := findPort(root), filepath.Join(root, "dev/vport0p1"); got != want {
		t.Errorf("findPort = %q, want %q", got, want)
	}
	if got := findPort(t.TempDir()); got != "" {
		t.Errorf("findPort(empty) = %q", got)
	}
	if got, want := powerButtons(root), []string{filepath.Join(root, "dev/input/event1")}; !reflect.DeepEqual(got, want) {
		t.Errorf("powerButtons = %q, want %q", got, want)
	}
}

func TestWaitKey(t *testing.T) {
	tests := []struct {
		name    string
		events  [][]byte
		wantOff int
	}{
		{"syn then key", [][]byte{event(0, 0, 0), event(1, 116, 1)}, 1},
		{"no key", [][]byte{event(0, 0, 0)}, 0},
	}
	for _, tt := range tests {
		off := 0
		err := waitKey(bytes.NewReader(bytes.Join(tt.events, nil)), func() error { off++; return nil })
		if off != tt.wantOff || (off == 0) != (err != nil) {
			t.Errorf("%s: off=%d err=%v", tt.name, off, err)
		}
	}
}

// TestServeOverSocket serves a unix socket standing in for the port: the
// host reads ready, gets an answer, and Serve returns EOF on hang-up.
func TestServeOverSocket(t *testing.T) {
	dir := t.TempDir()
	root := fakeRoot(t, guestFiles)
	sock := filepath.Join(dir, "port.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := testAgent(t, root, nil)
	conns := make(chan net.Conn, 2)
	ready := make(chan proto.Message, 1)
	go func() {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return
		}
		conns <- c
		r := bufio.NewReader(c)
		var line []byte
		if line, err = r.ReadBytes('\n'); err != nil {
			return
		}
		var m proto.Message
		_ = json.Unmarshal(line, &m)
		ready <- m
		_, _ = c.Write([]byte(`{"type":"ping","id":"p"}` + "\n"))
		line, _ = r.ReadBytes('\n')
		_ = json.Unmarshal(line, &m)
		ready <- m
	}()
	c := <-conns
	defer c.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	info := Facts(root, false)
	if err := writeMessage(srv, proto.Message{Type: proto.TypeReady, Info: &info}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(srv) }()
	select {
	case m := <-ready:
		if m.Type != proto.TypeReady || m.Info == nil || m.Info.VCPUs != 2 {
			t.Errorf("ready = %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ready")
	}
	select {
	case m := <-ready:
		if m.Type != proto.TypePong || m.ID != "p" {
			t.Errorf("pong = %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("Serve after hangup = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestWaitPortCancel(t *testing.T) {
	a := testAgent(t, t.TempDir(), nil)
	a.portWait = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := a.waitPort(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitPort = %v", err)
	}
}
