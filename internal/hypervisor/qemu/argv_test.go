package qemu

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"vgrid/internal/guest/proto"
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
		"-append", "console=ttyS0 root=/dev/vda tsc_early_khz=2596134 tsc=reliable",
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
		"-device", "virtio-balloon-device,id=balloon",
		"-pidfile", "/var/lib/vgrid/ws-1/qemu.pid", "-daemonize",
		"-D", "/var/lib/vgrid/ws-1/qemu.log",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// testNICs are two interfaces on taps.
func testNICs() []hypervisor.NIC {
	return []hypervisor.NIC{
		{Tap: "vgt-ws-1-0", MAC: "02:AA:bb:cc:dd:01", Address: netip.MustParsePrefix("10.77.0.2/24"), Gateway: netip.MustParseAddr("10.77.0.1")},
		{Tap: "vgt-ws-1-1", MAC: "02:aa:bb:cc:dd:02", Address: netip.MustParsePrefix("10.78.0.2/16")},
	}
}

// With NICs, each is a virtio-net interface on its tap, in order, and
// there is no user-mode interface; the rest of the command line is as
// without.
func TestArgvNICs(t *testing.T) {
	p := instancePaths("/var/lib/vgrid/ws-1", DefaultRunDir)
	spec := testSpec()
	plain := Argv(spec, p, AccelTCG, 2596134)
	spec.NICs = testNICs()
	got := Argv(spec, p, AccelTCG, 2596134)
	i := slices.Index(plain, "-netdev")
	want := slices.Concat(plain[:i], []string{
		"-netdev", "tap,id=n0,ifname=vgt-ws-1-0,script=no,downscript=no",
		"-device", "virtio-net-device,netdev=n0,mac=02:aa:bb:cc:dd:01",
		"-netdev", "tap,id=n1,ifname=vgt-ws-1-1,script=no,downscript=no",
		"-device", "virtio-net-device,netdev=n1,mac=02:aa:bb:cc:dd:02",
	}, plain[i+4:])
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	spec.Image.Boot, spec.Image.Kernel, spec.Image.Initrd = "firmware", "", ""
	fw := Argv(spec, p, AccelTCG, 0)
	if !slices.Contains(fw, "virtio-net-pci,netdev=n1,mac=02:aa:bb:cc:dd:02") || slices.Contains(fw, "user,id=n0") {
		t.Errorf("firmware boot: %q", fw)
	}
	// The overlay's MTU reaches the guest through the device.
	spec.NICs[1].MTU = 1450
	if mtu := Argv(spec, p, AccelTCG, 0); !slices.Contains(mtu, "virtio-net-pci,netdev=n1,mac=02:aa:bb:cc:dd:02,host_mtu=1450") {
		t.Errorf("nic with an MTU: %q", mtu)
	}
	if err := checkNICs(spec.NICs); err != nil {
		t.Errorf("mtu 1450: %v", err)
	}
	spec.NICs[1].MTU = 100
	if err := checkNICs(spec.NICs); err == nil {
		t.Error("mtu 100 accepted")
	}
}

func TestCheckNICs(t *testing.T) {
	if err := checkNICs(testNICs()); err != nil {
		t.Fatalf("good nics: %v", err)
	}
	if err := checkNICs(nil); err != nil {
		t.Fatalf("no nics: %v", err)
	}
	tests := []struct {
		name   string
		mutate func([]hypervisor.NIC)
		msg    string
	}{
		{"no tap", func(n []hypervisor.NIC) { n[0].Tap = "" }, `nic 0: tap ""`},
		{"long tap", func(n []hypervisor.NIC) { n[1].Tap = "abcdefghijklmnop" }, "nic 1: tap"},
		{"tap with comma", func(n []hypervisor.NIC) { n[0].Tap = "a,script=/x" }, "tap"},
		{"upper-case tap", func(n []hypervisor.NIC) { n[0].Tap = "Tap0" }, "tap"},
		{"same tap", func(n []hypervisor.NIC) { n[1].Tap = n[0].Tap }, "nic 0 has it too"},
		{"bad mac", func(n []hypervisor.NIC) { n[0].MAC = "02:00:00:00:00" }, "mac"},
		{"dashed mac", func(n []hypervisor.NIC) { n[0].MAC = "02-00-00-00-00-01" }, "mac"},
		{"mac with option", func(n []hypervisor.NIC) { n[0].MAC = "02:00:00:00:00:01,x=y" }, "mac"},
		{"multicast mac", func(n []hypervisor.NIC) { n[0].MAC = "03:00:00:00:00:01" }, "multicast"},
		{"zero mac", func(n []hypervisor.NIC) { n[0].MAC = "00:00:00:00:00:00" }, "non-zero"},
		{"same mac", func(n []hypervisor.NIC) { n[1].MAC = "02:aa:bb:cc:dd:01" }, "nic 0 has it too"},
		{"no address", func(n []hypervisor.NIC) { n[0].Address = netip.Prefix{} }, "no address"},
		{"ipv6", func(n []hypervisor.NIC) { n[0].Address = netip.MustParsePrefix("fd00::2/64") }, "want IPv4"},
		{"mapped", func(n []hypervisor.NIC) { n[0].Address = netip.MustParsePrefix("::ffff:10.0.0.2/120") }, "want IPv4"},
		{"slash 0", func(n []hypervisor.NIC) { n[0].Address = netip.MustParsePrefix("10.0.0.2/0") }, "prefix length"},
		{"loopback", func(n []hypervisor.NIC) { n[0].Address = netip.MustParsePrefix("127.0.0.2/8") }, "unicast"},
		{"v6 gateway", func(n []hypervisor.NIC) { n[0].Gateway = netip.MustParseAddr("fd00::1") }, "gateway"},
		{"gateway elsewhere", func(n []hypervisor.NIC) { n[0].Gateway = netip.MustParseAddr("10.78.0.1") }, "not in 10.77.0.0/24"},
		{"gateway is self", func(n []hypervisor.NIC) { n[0].Gateway = n[0].Address.Addr() }, "own address"},
	}
	for _, tt := range tests {
		nics := testNICs()
		tt.mutate(nics)
		err := checkNICs(nics)
		if !errors.Is(err, hypervisor.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: got %v, want ErrInvalid saying %q", tt.name, err, tt.msg)
		}
	}
	many := testNICs()
	for i := range MaxNICs {
		many = append(many, hypervisor.NIC{Tap: fmt.Sprintf("t%d", i), MAC: fmt.Sprintf("02:00:00:00:01:%02x", i), Address: netip.MustParsePrefix("10.1.0.2/24")})
	}
	if err := checkNICs(many); !errors.Is(err, hypervisor.ErrInvalid) || !strings.Contains(err.Error(), "at most 8") {
		t.Errorf("%d nics: got %v, want ErrInvalid", len(many), err)
	}
	// Start and Adopt check them before anything else.
	spec := testSpec()
	spec.NICs = testNICs()
	spec.NICs[0].Tap = "bad tap"
	d := &Driver{}
	if _, err := d.Start(context.Background(), spec); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("Start: got %v, want ErrInvalid", err)
	}
	if _, err := d.Adopt(context.Background(), spec, t.TempDir()); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("Adopt: got %v, want ErrInvalid", err)
	}
}

// The NICs are kept in spec.json, which adoption and resume read.
func TestSpecKeepsNICs(t *testing.T) {
	p := instancePaths(t.TempDir(), DefaultRunDir)
	spec := testSpec()
	spec.NICs = testNICs()
	if err := writeJSON(p.Spec, spec); err != nil {
		t.Fatal(err)
	}
	back, err := readSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.NICs, spec.NICs) {
		t.Errorf("got %+v, want %+v", back.NICs, spec.NICs)
	}
	if a, b := Argv(spec, p, AccelTCG, 0), Argv(back, p, AccelTCG, 0); !slices.Equal(a, b) {
		t.Errorf("argv from the stored spec differs:\n%q\n%q", a, b)
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
			has:     []string{"q35", "virtio-serial-pci", "virtio-blk-pci,drive=root,bootindex=0", "virtio-blk-pci,drive=seed", "virtio-balloon-pci,id=balloon"},
			hasNot:  []string{"-kernel", "-initrd", "-append", "microvm", "virtio-blk-device,drive=root", "virtio-balloon-device,id=balloon"},
			contain: map[string]string{"-device": "virtio-serial-pci"},
		},
		{
			name: "io caps", accel: AccelTCG, dir: "/s/ws-1",
			mutate:  func(s *hypervisor.InstanceSpec) { s.Quantum.DiskIOPS, s.Quantum.DiskBPS = 500, 10*model.MiB },
			contain: map[string]string{"-drive": ",throttling.iops-total=500,throttling.bps-total=10485760"},
		},
		{
			name: "no tsc", accel: AccelTCG, tsc: 0, dir: "/s/ws-1",
			checks: map[string]string{"-append": "console=ttyS0 root=/dev/vda tsc=reliable"},
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
			name: "max memory is the RAM", accel: AccelTCG, dir: "/s/ws-1",
			mutate: func(s *hypervisor.InstanceSpec) { s.MaxMemory = 768 * model.MiB },
			has:    []string{"virtio-balloon-device,id=balloon"},
			hasNot: []string{"virtio-balloon-pci,id=balloon"},
			checks: map[string]string{"-m": "768"},
		},
		{
			name: "max memory below memory", accel: AccelTCG, dir: "/s/ws-1",
			mutate: func(s *hypervisor.InstanceSpec) { s.MaxMemory = 128 * model.MiB },
			checks: map[string]string{"-m": "512"},
		},
		{
			name: "max memory on firmware boot", accel: AccelTCG, dir: "/s/ws-1",
			mutate: func(s *hypervisor.InstanceSpec) {
				s.Image.Boot, s.Image.Kernel, s.Image.Initrd = "firmware", "", ""
				s.MaxMemory = 1 * model.GiB
			},
			has:    []string{"virtio-balloon-pci,id=balloon"},
			checks: map[string]string{"-m": "1024"},
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
		{"console=ttyS0", AccelTCG, 2596134, "console=ttyS0 tsc_early_khz=2596134 tsc=reliable"},
		{"console=ttyS0", AccelKVM, 2596134, "console=ttyS0"},
		{"console=ttyS0 tsc_early_khz=1000", AccelTCG, 2596134, "console=ttyS0 tsc_early_khz=1000 tsc=reliable"},
		{"", AccelTCG, 5, "tsc_early_khz=5 tsc=reliable"},
		{"quiet", AccelTCG, 0, "quiet tsc=reliable"},
		{"quiet tsc=unstable", AccelTCG, 7, "quiet tsc=unstable tsc_early_khz=7"},
		{"tsc_known_freq", AccelTCG, 0, "tsc_known_freq tsc=reliable"},
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

// testVolumes are three network volumes: a plain writable one, a
// read-only one with I/O caps, and one on another TLS directory.
func testVolumes() []hypervisor.VolumeAttachment {
	return []hypervisor.VolumeAttachment{
		{Name: "data", Serial: "vgv-0a1b", Host: "10.0.0.5", Port: 10809, Export: "vol-0a1b", Mount: "/data", TLSDir: "/etc/vgrid/nbd"},
		{Name: "ref", Serial: "vgv-ffff", Host: "fd00::5", Port: 10810, Export: "vol,ffff", ReadOnly: true, Mount: "/ref",
			IOPS: 200, BPS: 10 << 20, TLSDir: "/etc/vgrid/nbd"},
		{Name: "raw", Serial: "vgv-raw", Host: "10.0.0.6", Port: 10809, Export: "vol-raw", BPS: 1 << 20, TLSDir: "/etc/other,dir"},
	}
}

// Volumes come after every other device (which keep their places), with
// one TLS object per directory, an NBD node each (reconnecting), a
// throttle node over it when capped, and a virtio-blk device with the
// serial.
func TestArgvVolumes(t *testing.T) {
	p := instancePaths("/var/lib/vgrid/ws-1", DefaultRunDir)
	spec := testSpec()
	plain := Argv(spec, p, AccelTCG, 0)
	spec.Volumes = testVolumes()
	got := Argv(spec, p, AccelTCG, 0)
	i := slices.Index(plain, "-pidfile")
	nbd := func(node, host, port, export, tls, mode string) string {
		return "driver=nbd,node-name=" + node + ",server.type=inet,server.host=" + host + ",server.port=" + port +
			",export=" + export + ",tls-creds=" + tls + ",reconnect-delay=30,open-timeout=10" + mode
	}
	want := slices.Concat(plain[:i], []string{
		"-object", "tls-creds-x509,id=vtls0,endpoint=client,dir=/etc/vgrid/nbd",
		"-object", "tls-creds-x509,id=vtls1,endpoint=client,dir=/etc/other,,dir",
		"-blockdev", nbd("vol0", "10.0.0.5", "10809", "vol-0a1b", "vtls0", ",discard=unmap"),
		"-device", "virtio-blk-device,drive=vol0,id=vol0-blk,serial=vgv-0a1b",
		"-object", "throttle-group,id=tg1,x-iops-total=200,x-bps-total=10485760",
		"-blockdev", nbd("vol1-nbd", "fd00::5", "10810", "vol,,ffff", "vtls0", ",read-only=on"),
		"-blockdev", "driver=throttle,node-name=vol1,throttle-group=tg1,file=vol1-nbd,read-only=on",
		"-device", "virtio-blk-device,drive=vol1,id=vol1-blk,serial=vgv-ffff",
		"-object", "throttle-group,id=tg2,x-bps-total=1048576",
		"-blockdev", nbd("vol2-nbd", "10.0.0.6", "10809", "vol-raw", "vtls1", ",discard=unmap"),
		"-blockdev", "driver=throttle,node-name=vol2,throttle-group=tg2,file=vol2-nbd,discard=unmap",
		"-device", "virtio-blk-device,drive=vol2,id=vol2-blk,serial=vgv-raw",
	}, plain[i:])
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if err := checkSpec(spec); err != nil {
		t.Errorf("the test volumes are refused: %v", err)
	}

	tests := []struct {
		name   string
		mutate func(*hypervisor.InstanceSpec)
		has    []string
		hasNot []string
	}{
		{
			name: "firmware boot: PCI devices",
			mutate: func(s *hypervisor.InstanceSpec) {
				s.Image.Boot, s.Image.Kernel, s.Image.Initrd = "firmware", "", ""
			},
			has:    []string{"virtio-blk-pci,drive=vol0,id=vol0-blk,serial=vgv-0a1b", "virtio-blk-pci,drive=vol2,id=vol2-blk,serial=vgv-raw"},
			hasNot: []string{"virtio-blk-device,drive=vol0,id=vol0-blk,serial=vgv-0a1b"},
		},
		{
			name:   "iops only",
			mutate: func(s *hypervisor.InstanceSpec) { s.Volumes = s.Volumes[:1]; s.Volumes[0].IOPS = 50 },
			has: []string{"throttle-group,id=tg0,x-iops-total=50",
				"driver=throttle,node-name=vol0,throttle-group=tg0,file=vol0-nbd,discard=unmap"},
		},
		{
			name:   "one TLS directory, one object",
			mutate: func(s *hypervisor.InstanceSpec) { s.Volumes[2].TLSDir = s.Volumes[0].TLSDir },
			hasNot: []string{"tls-creds-x509,id=vtls1,endpoint=client,dir=/etc/other,,dir"},
		},
		{
			name:   "no volumes: nothing",
			mutate: func(s *hypervisor.InstanceSpec) { s.Volumes = nil },
			hasNot: []string{"-blockdev", "-object"},
		},
	}
	for _, tt := range tests {
		spec := testSpec()
		spec.Volumes = testVolumes()
		tt.mutate(&spec)
		args := Argv(spec, p, AccelTCG, 0)
		for _, a := range tt.has {
			if !slices.Contains(args, a) {
				t.Errorf("%s: no argument %q in %q", tt.name, a, args)
			}
		}
		for _, a := range tt.hasNot {
			if slices.Contains(args, a) {
				t.Errorf("%s: argument %q in %q", tt.name, a, args)
			}
		}
		if n := strings.Count(strings.Join(args, " "), "tls-creds-x509"); tt.name == "one TLS directory, one object" && n != 1 {
			t.Errorf("%s: %d TLS objects", tt.name, n)
		}
	}
}

// The seed lists the volumes for the guest agent; spec.json keeps them,
// so that a resume, an adoption and a migration's destination attach
// the same.
func TestVolumesSeedAndSpec(t *testing.T) {
	spec := testSpec()
	if _, ok := SeedFiles(spec)[proto.SeedVolumes]; ok {
		t.Error("a seed without volumes has a volumes file")
	}
	spec.Volumes = testVolumes()
	want := `[
  {
    "name": "data",
    "serial": "vgv-0a1b",
    "mount": "/data"
  },
  {
    "name": "ref",
    "serial": "vgv-ffff",
    "mount": "/ref",
    "read_only": true
  },
  {
    "name": "raw",
    "serial": "vgv-raw"
  }
]
`
	if got := string(SeedFiles(spec)[proto.SeedVolumes]); got != want {
		t.Errorf("volumes file:\n%s\nwant\n%s", got, want)
	}
	p := instancePaths(t.TempDir(), DefaultRunDir)
	if err := writeJSON(p.Spec, spec); err != nil {
		t.Fatal(err)
	}
	back, err := readSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Volumes, spec.Volumes) {
		t.Errorf("spec.json: got %+v, want %+v", back.Volumes, spec.Volumes)
	}
	// Start refuses bad volumes before anything else.
	spec.Volumes[0].TLSDir = ""
	d := &Driver{}
	if _, err := d.Start(context.Background(), spec); !errors.Is(err, hypervisor.ErrInvalid) || !strings.Contains(err.Error(), "tls dir") {
		t.Errorf("Start: got %v, want ErrInvalid about the tls dir", err)
	}
	if _, err := d.PrepareIncoming(context.Background(), spec, "127.0.0.1:0"); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("PrepareIncoming: got %v, want ErrInvalid", err)
	}
}
