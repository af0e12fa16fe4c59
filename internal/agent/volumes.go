package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/hypervisor"
	"vgrid/internal/model"
	"vgrid/internal/storage"
)

// Network volumes on this host, two sides (see api/volumes.go):
//
//   - as a storage host (Config.StorageListen set), the agent runs one
//     supervised qemu-storage-daemon (internal/storage) and makes, exports,
//     grows, copies and removes the volumes its assignments list
//     (Assignments.Volumes), reporting each one;
//   - for its workspaces, it gives QEMU the volumes they attach
//     (Assignments.VolumeEndpoints), served by whichever host stores them,
//     over TLS with this host's certificate.

// VolumeStore is what the agent needs of a storage daemon
// (*storage.Daemon); tests give a fake.
type VolumeStore interface {
	Create(ctx context.Context, name string, size int64) error
	Export(ctx context.Context, name string, readOnly bool) (storage.Export, error)
	Unexport(ctx context.Context, name string) error
	Delete(ctx context.Context, name string) error
	Resize(ctx context.Context, name string, size int64) error
	Snapshot(ctx context.Context, name, snap string) error
	Volumes() ([]storage.Volume, error)
	Close() error
}

// DefaultStoragePort is where an agent serves volumes by default.
const DefaultStoragePort = 10809

// errVolumePending says a volume a workspace attaches is not served yet
// (not in the host's assignments): its start waits.
var errVolumePending = errors.New("volume not served yet")

// volumeSide is the agent's volume state.
type volumeSide struct {
	mu sync.Mutex
	// store is the storage daemon (nil: the host stores no volumes);
	// addr is where other hosts reach it.
	store VolumeStore
	addr  string
	// serve and endpoints are the last assignments' lists.
	serve     []api.VolumeServe
	endpoints map[string]api.VolumeEndpoint // by project/name
	// reported is the last report sent for each volume ID (not resent
	// while the control plane's state has not caught up).
	reported map[string]string
	// kick wakes the volume loop.
	kick chan struct{}
	// tlsMu serialises writing the QEMU client TLS directory.
	tlsMu sync.Mutex
}

// startVolumes starts the storage daemon when the agent serves volumes
// and tells the control plane where. A daemon that cannot start is
// logged: the host then stores no volumes (its workspaces still attach
// others' volumes).
func (a *Agent) startVolumes(ctx context.Context) {
	v := &a.vol
	v.mu.Lock()
	v.kick = make(chan struct{}, 1)
	v.reported = map[string]string{}
	st := a.cfg.Volumes
	v.mu.Unlock()
	if a.cfg.StorageListen == "" && st == nil {
		return
	}
	addr, err := storageAddress(a.cfg.StorageListen, a.cfg.Node.Address)
	if err != nil {
		a.log.Warn("no volumes served", "err", err)
		return
	}
	if st == nil {
		cfg, err := a.storageConfig()
		if err != nil {
			a.log.Warn("no volumes served: the storage daemon's TLS", "err", err)
			return
		}
		d, err := storage.Start(ctx, cfg)
		if err != nil {
			a.log.Warn("no volumes served: the storage daemon did not start", "listen", a.cfg.StorageListen, "err", err)
			return
		}
		st = d
	}
	if err := a.client().SetStorage(ctx, a.node, addr); err != nil {
		a.log.Warn("no volumes served: the control plane did not take the storage address", "address", addr, "err", err)
		_ = st.Close()
		return
	}
	v.mu.Lock()
	v.store, v.addr = st, addr
	v.mu.Unlock()
	a.log.Info("serving volumes", "listen", a.cfg.StorageListen, "address", addr)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.volumeLoop(ctx)
	}()
}

// storageConfig is the storage daemon's configuration: its directory in
// the agent's data directory, the host's certificate and key, the CA.
func (a *Agent) storageConfig() (storage.Config, error) {
	cert, err := os.ReadFile(CertFile(a.cfg.DataDir))
	if err != nil {
		return storage.Config{}, err
	}
	key, err := os.ReadFile(KeyFile(a.cfg.DataDir))
	if err != nil {
		return storage.Config{}, err
	}
	if a.cfg.Server.CACert == "" {
		return storage.Config{}, errors.New("no CA certificate (the agent's --ca): volumes are served over TLS only")
	}
	return storage.Config{
		Dir: filepath.Join(a.cfg.DataDir, "volumes"), Listen: a.cfg.StorageListen,
		CACert: []byte(a.cfg.Server.CACert), Cert: cert, Key: key, Log: a.log.With("part", "storage"),
	}, nil
}

// storageAddress is where other hosts reach volumes served on listen: its
// host, or the host's address when it listens on every address.
func storageAddress(listen, hostAddr string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("storage listen address %q: want host:port", listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("storage listen address %q: want a port of 1 to 65535", listen)
	}
	ip, err := netip.ParseAddr(host)
	if host == "" || err == nil && ip.IsUnspecified() {
		if h, _, err := net.SplitHostPort(hostAddr); err == nil {
			hostAddr = h
		}
		if ip, err = netip.ParseAddr(hostAddr); err != nil {
			return "", fmt.Errorf("storage listen address %q is on every address: give the host's address (--address)", listen)
		}
		host = ip.String()
	} else if err != nil {
		return "", fmt.Errorf("storage listen address %q: want an IP address", listen)
	}
	return net.JoinHostPort(host, port), nil
}

// DefaultStorageListen is the default storage address of a host with
// address hostAddr (an IP, or IP:port): port DefaultStoragePort on it; ""
// when the host has no address.
func DefaultStorageListen(hostAddr string) string {
	if h, _, err := net.SplitHostPort(hostAddr); err == nil {
		hostAddr = h
	}
	ip, err := netip.ParseAddr(hostAddr)
	if err != nil || ip.IsUnspecified() {
		return ""
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(DefaultStoragePort))
}

// setVolumes takes the assignments' volume lists and wakes the volume
// loop.
func (a *Agent) setVolumes(as api.Assignments) {
	v := &a.vol
	v.mu.Lock()
	v.serve = as.Volumes
	v.endpoints = make(map[string]api.VolumeEndpoint, len(as.VolumeEndpoints))
	for _, e := range as.VolumeEndpoints {
		v.endpoints[e.Project+"/"+e.Name] = e
	}
	kick := v.kick
	v.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// volumeLoop converges the stored volumes on the assignments, at each
// change and at the resync pace, until ctx ends; then it closes the
// daemon (its exports end with it; the volumes' files stay).
func (a *Agent) volumeLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		a.syncVolumes(ctx)
		select {
		case <-ctx.Done():
			a.vol.mu.Lock()
			st := a.vol.store
			a.vol.mu.Unlock()
			if err := st.Close(); err != nil {
				a.log.Warn("storage daemon close", "err", err)
			}
			return
		case <-a.vol.kick:
		case <-t.C:
		}
	}
}

// syncVolumes does what each assigned volume needs: made (or copied from
// its snapshot's source), grown, exported, or removed, and reported.
func (a *Agent) syncVolumes(ctx context.Context) {
	v := &a.vol
	v.mu.Lock()
	st, serve := v.store, append([]api.VolumeServe(nil), v.serve...)
	v.mu.Unlock()
	if st == nil || len(serve) == 0 {
		return
	}
	have, err := st.Volumes()
	if err != nil {
		a.log.Warn("volumes: list", "err", err)
		return
	}
	byName := map[string]storage.Volume{}
	for _, h := range have {
		byName[h.Name] = h
	}
	for _, s := range serve {
		if ctx.Err() != nil {
			return
		}
		rep, ok := a.convergeVolume(ctx, st, s, byName)
		if !ok {
			continue
		}
		key := fmt.Sprintf("%s %v %d %v %s", rep.State, rep.Deleted, rep.Size, rep.Endpoint, rep.Reason)
		v.mu.Lock()
		same := v.reported[s.ID] == key
		v.mu.Unlock()
		if same && s.State == rep.State {
			continue // said already, and the control plane has it
		}
		if err := a.client().ReportVolume(ctx, a.node, s.Project, s.Name, rep); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("volume report", "volume", s.Project+"/"+s.Name, "id", s.ID, "err", err)
			}
			continue
		}
		v.mu.Lock()
		v.reported[s.ID] = key
		if rep.Deleted {
			delete(v.reported, s.ID)
		}
		v.mu.Unlock()
	}
}

// convergeVolume does what volume s needs and returns the report to
// send (false: none).
func (a *Agent) convergeVolume(ctx context.Context, st VolumeStore, s api.VolumeServe, have map[string]storage.Volume) (api.VolumeReport, bool) {
	log := a.log.With("volume", s.Project+"/"+s.Name, "id", s.ID)
	cur, exists := have[s.ID]
	if s.Want == api.VolumeWantDelete {
		if exists {
			if cur.Exported {
				if err := st.Unexport(ctx, s.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
					log.Warn("volume: unexport", "err", err)
					return api.VolumeReport{}, false // tried again at the next pass
				}
			}
			if err := st.Delete(ctx, s.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				log.Warn("volume: delete", "err", err)
				return api.VolumeReport{}, false
			}
			log.Info("volume deleted")
		}
		return api.VolumeReport{ID: s.ID, Deleted: true}, true
	}
	if s.State == model.VolumeFailed {
		return api.VolumeReport{}, false // the control plane knows; the user deletes it
	}
	fail := func(what string, err error) (api.VolumeReport, bool) {
		log.Warn("volume: "+what, "err", err)
		r := api.VolumeReport{ID: s.ID, State: model.VolumeFailed, Reason: what + ": " + err.Error()}
		if exists {
			r.Size = model.ByteSize(cur.Size)
		}
		return r, true
	}
	switch {
	case !exists && s.From != "":
		if err := st.Snapshot(ctx, s.From, s.ID); err != nil {
			return fail("snapshot of "+s.From, err)
		}
		log.Info("volume copied from its snapshot's source", "from", s.From)
		cur = storage.Volume{Name: s.ID, Size: int64(s.Size)}
		if l, err := st.Volumes(); err == nil {
			for _, h := range l {
				if h.Name == s.ID {
					cur = h
				}
			}
		}
	case !exists:
		if err := st.Create(ctx, s.ID, int64(s.Size)); err != nil {
			return fail("create", err)
		}
		log.Info("volume created", "size", s.Size.Human())
		cur = storage.Volume{Name: s.ID, Size: int64(s.Size)}
	}
	if cur.Size < int64(s.Size) {
		if err := st.Resize(ctx, s.ID, int64(s.Size)); err != nil {
			exists = true
			return fail("resize", err)
		}
		log.Info("volume grown", "from", model.ByteSize(cur.Size).Human(), "to", s.Size.Human())
		cur.Size = int64(s.Size)
	}
	exp, err := st.Export(ctx, s.ID, false)
	if err != nil {
		exists = true
		return fail("export", err)
	}
	ep, err := a.endpointOf(exp, s.ID)
	if err != nil {
		exists = true
		return fail("export", err)
	}
	return api.VolumeReport{ID: s.ID, State: model.VolumeReady, Size: model.ByteSize(cur.Size), Endpoint: &ep}, true
}

// endpointOf is where other hosts reach export exp: its address, its
// host replaced by the advertised storage address's when it listens on
// every address.
func (a *Agent) endpointOf(exp storage.Export, id string) (model.VolumeEndpoint, error) {
	a.vol.mu.Lock()
	adv := a.vol.addr
	a.vol.mu.Unlock()
	addr := exp.Addr
	if addr == "" {
		addr = adv
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return model.VolumeEndpoint{}, fmt.Errorf("export address %q: %w", addr, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsUnspecified() {
		if h, _, err := net.SplitHostPort(adv); err == nil {
			host = h
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return model.VolumeEndpoint{}, fmt.Errorf("export address %q: bad port", addr)
	}
	name := exp.Name
	if name == "" {
		name = id
	}
	return model.VolumeEndpoint{Host: host, Port: p, Export: name}, nil
}

// volumeAttachments are the volumes w attaches, as QEMU takes them:
// where each is served (the assignments), its caps, and this host's TLS
// client files. errVolumePending: one is not served yet.
func (a *Agent) volumeAttachments(w model.Workspace) ([]hypervisor.VolumeAttachment, error) {
	if len(w.Spec.Volumes) == 0 {
		return nil, nil
	}
	a.vol.mu.Lock()
	eps := a.vol.endpoints
	a.vol.mu.Unlock()
	out := make([]hypervisor.VolumeAttachment, 0, len(w.Spec.Volumes))
	for _, m := range w.Spec.Volumes {
		e, ok := eps[w.Project+"/"+m.Name]
		if !ok {
			return nil, fmt.Errorf("%w: %s", errVolumePending, m.Name)
		}
		out = append(out, hypervisor.VolumeAttachment{
			Name: m.Name, Serial: model.VolumeSerial(e.ID), Host: e.Host, Port: e.Port, Export: e.Export,
			ReadOnly: m.ReadOnly, Mount: m.Mount, IOPS: e.IOPS, BPS: e.BPS,
			// Every host certificate names its node: the check holds
			// whatever address the storage host is reached at.
			TLSHostname: e.Node,
		})
	}
	dir, err := a.volumeTLSDir()
	if err != nil {
		return nil, fmt.Errorf("volume TLS files: %w", err)
	}
	for i := range out {
		out[i].TLSDir = dir
	}
	return out, nil
}

// volumeTLSDir writes (when they changed) the files QEMU's TLS client
// credentials read, in a private directory of the agent's: the CA, the
// host's certificate and key.
func (a *Agent) volumeTLSDir() (string, error) {
	a.vol.tlsMu.Lock()
	defer a.vol.tlsMu.Unlock()
	if a.cfg.Server.CACert == "" {
		return "", errors.New("no CA certificate (the agent's --ca)")
	}
	cert, err := os.ReadFile(CertFile(a.cfg.DataDir))
	if err != nil {
		return "", err
	}
	key, err := os.ReadFile(KeyFile(a.cfg.DataDir))
	if err != nil {
		return "", err
	}
	dir, err := filepath.Abs(filepath.Join(a.cfg.DataDir, "volume-tls"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"ca-cert.pem", []byte(a.cfg.Server.CACert)}, {"client-cert.pem", cert}, {"client-key.pem", key}} {
		p := filepath.Join(dir, f.name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := writeFileAtomic(p, f.data, 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}
