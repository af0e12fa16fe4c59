package qemu

import (
	"slices"
	"strings"
	"testing"

	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
)

func testSpec() hypervisor.InstanceSpec {
	return hypervisor.InstanceSpec{
		ID:      "ws-1",
		Quantum: model.Quantum{VCPUs: 2, CPU: 0.5, Memory: 512 * model.MiB},
		Image: hypervisor.LocalImage{
			Name: "g", Boot: "direct", Disk: "/img/rootfs.img", DiskFormat: "raw",
			Kernel: "/img/vmlinux", Initrd: "/img/initrd.img", Cmdline: "console=ttyS0 root=/dev/vda",
		},
	}
}

func TestArgvDirectTCG(t *testing.T) {
	p := instancePaths("/var/lib/vgrid/ws-1", DefaultRunDir)
	got := Argv(testSpec(), p, AccelTCG, 2596134)
	want := []string{
		"-name", "guest=vgrid:" + rootHash("/var/lib/vgrid") + ":ws-1,process=vgrid-ws-1",
		"-machine", "microvm",
		"-accel", "tcg,tb-size=64",
		"-smp", "2", "-m", "512",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", "/img/vmlinux", "-initrd", "/img/initrd.img",
		"-append", "console=ttyS0 root=/dev/vda tsc_early_khz=2596134",
		"-chardev", "file,id=con,path=/var/lib/vgrid/ws-1/console.log", "-serial", "chardev:con",
		"-qmp", "unix:/var/lib/vgrid/ws-1/qmp.sock,server=on,wait=off",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=/var/lib/vgrid/ws-1/agent.sock,server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=vgrid.agent",
		"-drive", "file=/var/lib/vgrid/ws-1/disk.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap",
		"-device", "virtio-blk-device,drive=root",
		"-drive", "file=/var/lib/vgrid/ws-1/cidata.iso,format=raw,if=none,id=seed,readonly=on",
		"-device", "virtio-blk-device,drive=seed",
		"-netdev", "user,id=n0",
		"-device", "virtio-net-device,netdev=n0,mac=" + MAC("ws-1"),
		"-pidfile", "/var/lib/vgrid/ws-1/qemu.pid", "-daemonize",
		"-D", "/var/lib/vgrid/ws-1/qemu.log",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// argAfter returns the value following flag (the n-th occurrence).
func argAfter(args []string, flag string, n int) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			if n == 0 {
				return args[i+1]
			}
			n--
		}
	}
	return ""
}

func TestArgvVariants(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*hypervisor.InstanceSpec)
		dir     string
		accel   string
		tsc     int64
		has     []string // each must be an argument
		hasNot  []string // none may be an argument
		checks  map[string]string
		contain map[string]string // flag -> substring of its first value
	}{
		{
			name: "kvm", accel: AccelKVM, tsc: 2596134, dir: "/s/ws-1",
			has:    []string{"kvm", "host"},
			hasNot: []string{"tcg,tb-size=64"},
			checks: map[string]string{"-append": "console=ttyS0 root=/dev/vda", "-cpu": "host"},
		},
		{
			name: "firmware", accel: AccelTCG, tsc: 1, dir: "/s/ws-1",
			mutate: func(s *hypervisor.InstanceSpec) {
				s.Image.Boot, s.Image.Kernel, s.Image.Initrd, s.Image.DiskFormat = "firmware", "", "", "qcow2"
			},
			has:     []string{"q35", "virtio-serial-pci", "virtio-blk-pci,drive=root,bootindex=0", "virtio-blk-pci,drive=seed"},
			hasNot:  []string{"-kernel", "-initrd", "-append", "microvm", "virtio-blk-device,drive=root"},
			contain: map[string]string{"-device": "virtio-serial-pci"},
		},
		{
			name: "io caps", accel: AccelTCG, dir: "/s/ws-1",
			mutate:  func(s *hypervisor.InstanceSpec) { s.Quantum.DiskIOPS, s.Quantum.DiskBPS = 500, 10*model.MiB },
			contain: map[string]string{"-drive": ",throttling.iops-total=500,throttling.bps-total=10485760"},
		},
		{
			name: "no tsc", accel: AccelTCG, tsc: 0, dir: "/s/ws-1",
			checks: map[string]string{"-append": "console=ttyS0 root=/dev/vda"},
		},
		{
			name: "no initrd", accel: AccelTCG, dir: "/s/ws-1",
			mutate: func(s *hypervisor.InstanceSpec) { s.Image.Initrd = "" },
			hasNot: []string{"-initrd"},
		},
		{
			name: "comma in path", accel: AccelTCG, dir: "/s/a,b/ws-1",
			contain: map[string]string{
				"-drive": "file=/s/a,,b/ws-1/disk.qcow2,format",
				"-qmp":   "unix:/s/a,,b/ws-1/qmp.sock,server",
			},
			checks: map[string]string{"-pidfile": "/s/a,b/ws-1/qemu.pid"},
		},
		{
			name: "memory rounds up to MiB", accel: AccelTCG, dir: "/s/ws-1",
			mutate: func(s *hypervisor.InstanceSpec) { s.Quantum.Memory = 300*model.MiB + 1 },
			checks: map[string]string{"-m": "301", "-smp": "2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			if tt.mutate != nil {
				tt.mutate(&spec)
			}
			args := Argv(spec, instancePaths(tt.dir, DefaultRunDir), tt.accel, tt.tsc)
			for _, a := range tt.has {
				if !slices.Contains(args, a) {
					t.Errorf("no argument %q in %q", a, args)
				}
			}
			for _, a := range tt.hasNot {
				if slices.Contains(args, a) {
					t.Errorf("argument %q in %q", a, args)
				}
			}
			for flag, want := range tt.checks {
				if got := argAfter(args, flag, 0); got != want {
					t.Errorf("%s: got %q, want %q", flag, got, want)
				}
			}
			for flag, sub := range tt.contain {
				found := false
				for i := 0; argAfter(args, flag, i) != ""; i++ {
					if strings.Contains(argAfter(args, flag, i), sub) {
						found = true
					}
				}
				if !found {
					t.Errorf("no %s value contains %q: %q", flag, sub, args)
				}
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		in, accel string
		tsc       int64
		want      string
	}{
		{"console=ttyS0", AccelTCG, 2596134, "console=ttyS0 tsc_early_khz=2596134"},
		{"console=ttyS0", AccelKVM, 2596134, "console=ttyS0"},
		{"console=ttyS0 tsc_early_khz=1000", AccelTCG, 2596134, "console=ttyS0 tsc_early_khz=1000"},
		{"", AccelTCG, 5, "tsc_early_khz=5"},
		{"quiet", AccelTCG, 0, "quiet"},
	}
	for _, tt := range tests {
		if got := KernelCmdline(tt.in, tt.accel, tt.tsc); got != tt.want {
			t.Errorf("KernelCmdline(%q, %s, %d): got %q, want %q", tt.in, tt.accel, tt.tsc, got, tt.want)
		}
	}
}

func TestMAC(t *testing.T) {
	a, b := MAC("ws-1"), MAC("ws-2")
	if a == b || a != MAC("ws-1") || !strings.HasPrefix(a, "52:54:00:") || len(a) != 17 {
		t.Errorf("MAC: got %q and %q; want stable, distinct 52:54:00:xx:xx:xx", a, b)
	}
}

func TestInstancePaths(t *testing.T) {
	short := instancePaths("/var/lib/vgrid/instances/ws-1", "/run/vgrid")
	if short.SockDir != short.Dir || short.QMP != "/var/lib/vgrid/instances/ws-1/qmp.sock" {
		t.Errorf("short dir: got sockets in %q, want the instance dir", short.SockDir)
	}
	long := "/" + strings.Repeat("d", 90) + "/a-forty-byte-long-instance-id-0000000000"
	p := instancePaths(long, "/run/vgrid")
	if p.SockDir == p.Dir || !strings.HasPrefix(p.SockDir, "/run/vgrid/") {
		t.Errorf("long dir: got sockets in %q, want under /run/vgrid", p.SockDir)
	}
	if len(p.QMP) > maxSockPath || len(p.Agent) > maxSockPath {
		t.Errorf("socket paths too long: %q %q", p.QMP, p.Agent)
	}
	if again := instancePaths(long, "/run/vgrid"); again.SockDir != p.SockDir {
		t.Errorf("socket dir not stable: %q then %q", p.SockDir, again.SockDir)
	}
	if other := instancePaths(long+"x", "/run/vgrid"); other.SockDir == p.SockDir {
		t.Errorf("two instances share socket dir %q", p.SockDir)
	}
}
