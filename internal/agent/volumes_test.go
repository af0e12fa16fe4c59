package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
	"vgrid/internal/storage"
	"vgrid/internal/testenv"
)

// memStore is a VolumeStore in memory.
type memStore struct {
	mu   sync.Mutex
	addr string
	vols map[string]*storage.Volume
	ops  []string
}

func newMemStore(addr string) *memStore {
	return &memStore{addr: addr, vols: map[string]*storage.Volume{}}
}

func (m *memStore) log(op string) { m.ops = append(m.ops, op) }

func (m *memStore) Create(_ context.Context, name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log("create " + name)
	if _, ok := m.vols[name]; ok {
		return storage.ErrExists
	}
	m.vols[name] = &storage.Volume{Name: name, Size: size}
	return nil
}

func (m *memStore) Export(_ context.Context, name string, ro bool) (storage.Export, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vols[name]
	if !ok {
		return storage.Export{}, storage.ErrNotFound
	}
	v.Exported, v.ReadOnly = true, ro
	return storage.Export{Name: name, Addr: m.addr, ReadOnly: ro}, nil
}

func (m *memStore) Unexport(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log("unexport " + name)
	if v, ok := m.vols[name]; ok {
		v.Exported = false
		return nil
	}
	return storage.ErrNotFound
}

func (m *memStore) Delete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log("delete " + name)
	v, ok := m.vols[name]
	switch {
	case !ok:
		return storage.ErrNotFound
	case v.Exported:
		return storage.ErrExported
	}
	delete(m.vols, name)
	return nil
}

func (m *memStore) Resize(_ context.Context, name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log(fmt.Sprintf("resize %s %d", name, size))
	v, ok := m.vols[name]
	if !ok {
		return storage.ErrNotFound
	}
	v.Size = size
	return nil
}

func (m *memStore) Snapshot(_ context.Context, name, snap string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log("snapshot " + name + " " + snap)
	v, ok := m.vols[name]
	if !ok {
		return storage.ErrNotFound
	}
	m.vols[snap] = &storage.Volume{Name: snap, Size: v.Size}
	return nil
}

func (m *memStore) Volumes() ([]storage.Volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.Volume
	for _, v := range m.vols {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memStore) Close() error { return nil }

func (m *memStore) has(name string) (storage.Volume, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vols[name]
	if !ok {
		return storage.Volume{}, false
	}
	return *v, true
}

func (r *rig) waitVolume(name string, want model.VolumeState) model.Volume {
	r.t.Helper()
	var v model.Volume
	r.eventually("volume "+name+" "+string(want), func() bool {
		var err error
		v, err = r.user.GetVolume(context.Background(), name)
		return err == nil && v.State == want
	})
	return v
}

// The storage host's side with the fake driver and a store in memory: an
// assigned volume is made, exported and reported ready with its
// endpoint; grown; copied for a snapshot; removed and forgotten. A
// workspace attaching it starts with it in its InstanceSpec (serial from
// its ID, the endpoint, the caps, a private TLS directory).
func TestAgentServesAndAttachesVolumes(t *testing.T) {
	mem := newMemStore("127.0.0.1:10809")
	rec := &specs{got: map[string]hypervisor.InstanceSpec{}}
	r := newRigAgent(t, nil, func(c *Config) {
		c.StorageListen, c.Volumes = "127.0.0.1:10809", mem
		rec.Driver = c.Driver
		c.Driver = rec
	})
	ctx := context.Background()
	r.eventually("storage host known", func() bool {
		_, err := r.user.CreateVolume(ctx, api.VolumesPost{Name: "data", Size: 64 * model.MiB, IOPS: 200, BPS: 4 << 20})
		return err == nil
	})
	v := r.waitVolume("data", model.VolumeReady)
	if v.Node != "h1" || v.Endpoint == nil || *v.Endpoint != (model.VolumeEndpoint{Host: "127.0.0.1", Port: 10809, Export: v.ID}) {
		t.Fatalf("ready volume %+v endpoint %+v", v, v.Endpoint)
	}
	if got, ok := mem.has(v.ID); !ok || got.Size != int64(64*model.MiB) || !got.Exported {
		t.Fatalf("in the store: %+v %v", got, ok)
	}

	ws := "name: w1\nimage: vgrid-guest\nquantum: {vcpus: 1, memory: 256Mi, disk: 1Gi}\nduration: 1h\nvolumes: [{name: data, mount: /data}]\n"
	if _, err := r.user.CreateWorkspace(ctx, []byte(ws)); err != nil {
		t.Fatal(err)
	}
	w := r.waitState("w1", model.StateRunning)
	sp, ok := rec.spec(w.ID)
	if !ok || len(sp.Volumes) != 1 {
		t.Fatalf("instance spec volumes: %+v", sp.Volumes)
	}
	a := sp.Volumes[0]
	if a.Name != "data" || a.Serial != model.VolumeSerial(v.ID) || len(a.Serial) > 20 || a.Host != "127.0.0.1" || a.Port != 10809 ||
		a.Export != v.ID || a.Mount != "/data" || a.ReadOnly || a.IOPS != 200 || a.BPS != 4<<20 {
		t.Fatalf("attachment %+v", a)
	}
	st, err := os.Stat(a.TLSDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("TLS dir %s: %v %v", a.TLSDir, st, err)
	}
	for _, f := range []string{"ca-cert.pem", "client-cert.pem", "client-key.pem"} {
		if fi, err := os.Stat(filepath.Join(a.TLSDir, f)); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}

	if _, err := r.user.ResizeVolume(ctx, "data", 128*model.MiB); err != nil {
		t.Fatal(err)
	}
	r.waitVolume("data", model.VolumeReady)
	if got, _ := mem.has(v.ID); got.Size != int64(128*model.MiB) {
		t.Fatalf("after resize: %d bytes", got.Size)
	}
	s, err := r.user.SnapshotVolume(ctx, "data", "copy")
	if err != nil {
		t.Fatal(err)
	}
	r.waitVolume("copy", model.VolumeReady)
	if got, ok := mem.has(s.ID); !ok || got.Size != int64(128*model.MiB) {
		t.Fatalf("snapshot in the store: %+v %v", got, ok)
	}
	if _, err := r.user.DeleteVolume(ctx, "copy"); err != nil {
		t.Fatal(err)
	}
	r.eventually("copy forgotten", func() bool {
		_, err := r.user.GetVolume(ctx, "copy")
		_, there := mem.has(s.ID)
		return err != nil && !there
	})
}

// With the real qemu-storage-daemon: an assigned volume is created and
// reported ready with its endpoint, reachable over TCP.
func TestAgentVolumeRealDaemon(t *testing.T) {
	if _, err := exec.LookPath("qemu-storage-daemon"); err != nil {
		testenv.Skip(t, "no qemu-storage-daemon")
	}
	port := freePort(t)
	listen := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	r := newRigAgent(t, nil, func(c *Config) { c.StorageListen = listen })
	ctx := context.Background()
	r.eventually("storage host known", func() bool {
		_, err := r.user.CreateVolume(ctx, api.VolumesPost{Name: "real", Size: 32 * model.MiB})
		return err == nil
	})
	v := r.waitVolume("real", model.VolumeReady)
	if v.Endpoint == nil || v.Endpoint.Port != port || v.Endpoint.Host != "127.0.0.1" || v.Endpoint.Export != v.ID {
		t.Fatalf("endpoint %+v", v.Endpoint)
	}
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatalf("NBD server: %v", err)
	}
	c.Close()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestStorageAddress(t *testing.T) {
	for _, c := range []struct {
		listen, host, want string
		bad                bool
	}{
		{"10.0.0.2:10809", "", "10.0.0.2:10809", false},
		{"0.0.0.0:10809", "10.0.0.3", "10.0.0.3:10809", false},
		{":10809", "10.0.0.3:8443", "10.0.0.3:10809", false},
		{"0.0.0.0:10809", "", "", true},
		{"host:10809", "", "", true},
		{"10.0.0.2", "", "", true},
		{"10.0.0.2:0", "", "", true},
	} {
		got, err := storageAddress(c.listen, c.host)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("storageAddress(%q, %q) = %q, %v; want %q (error: %v)", c.listen, c.host, got, err, c.want, c.bad)
		}
	}
	if DefaultStorageListen("10.0.0.4") != "10.0.0.4:10809" || DefaultStorageListen("") != "" || DefaultStorageListen("10.0.0.4:1") != "10.0.0.4:10809" {
		t.Error("DefaultStorageListen")
	}
}
