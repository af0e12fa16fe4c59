package image

import (
	"reflect"
	"testing"
)

const testModulesDep = `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko
kernel/drivers/cdrom/cdrom.ko:
kernel/fs/x/dash-name.ko.xz:
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
kernel/c.ko: kernel/missing.ko
`

func TestModuleName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kernel/drivers/virtio/virtio_ring.ko", "virtio_ring"},
		{"kernel/fs/x/dash-name.ko.xz", "dash_name"},
		{"evdev.ko.zst", "evdev"},
	}
	for _, tt := range tests {
		if got := moduleName(tt.in); got != tt.want {
			t.Errorf("moduleName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	deps, err := parseModulesDep([]byte(testModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		want    []string
		order   []string
		wantErr bool
	}{
		{
			name:  "ring before virtio, even when asked the other way",
			want:  []string{"virtio", "virtio_ring"},
			order: []string{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"},
		},
		{
			name: "deps pulled in once",
			want: []string{"virtio_mmio", "virtio_net", "isofs"},
			order: []string{
				"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
				"kernel/drivers/virtio/virtio_mmio.ko",
				"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
				"kernel/drivers/net/virtio_net.ko",
				"kernel/drivers/cdrom/cdrom.ko", "kernel/fs/isofs/isofs.ko",
			},
		},
		{name: "dash or underscore", want: []string{"dash-name"}, order: []string{"kernel/fs/x/dash-name.ko.xz"}},
		{name: "unknown", want: []string{"nope"}, wantErr: true},
		{name: "missing dependency", want: []string{"c"}, wantErr: true},
		{name: "cycle", want: []string{"a"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := deps.loadOrder(tt.want)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.order) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.order)
		}
	}
	if _, err := parseModulesDep([]byte("no colon here\n")); err == nil {
		t.Error("parseModulesDep accepted a line without a colon")
	}
}
