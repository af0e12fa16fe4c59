package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"vgrid/api"
	"vgrid/internal/calendar"
	"vgrid/internal/model"
	"vgrid/internal/spec"
	"vgrid/internal/store"
)

// Network volumes: a volume is stored at volumes/<project>/<name> and
// lives on one storage host (Volume.Node), a Ready host whose agent said
// where it serves volumes (model.Node.Storage, set with PUT /nodes/{node}/storage).
// That host's assignments list the volumes it serves (api.VolumeServe);
// its agent makes, exports, grows, copies and removes them and reports
// each one (VolumeReport). A workspace attaches volumes of its project by
// name in its spec; the hosts of such workspaces find where each volume
// is served in their assignments (api.VolumeEndpoint), whichever host
// stores it.

// DefaultVolumeBytes is the site default of a project's storage quota:
// the sum of its volumes' sizes.
const DefaultVolumeBytes = 100 * model.GiB

func volumeKey(project, name string) string { return "volumes/" + project + "/" + name }

// volumeState is the controller's state for volumes: mu serialises the
// decisions that count the project's quota and the hosts' room with the
// writes that take them; waker wakes storage hosts' long polls.
type volumeState struct {
	mu    sync.Mutex
	waker hostWaker // of volumes/, with wake's state
	wake  volumeWake
}

func newVolumeID() string { return "v" + newID()[1:] }

func decodeVolume(kv store.KV) (model.Volume, error) {
	var v model.Volume
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	v.Revision = kv.Revision
	return v, nil
}

func (ctl *Controller) getVolume(ctx context.Context, project, name string) (model.Volume, error) {
	kv, err := ctl.store.Get(ctx, volumeKey(project, name))
	if errors.Is(err, store.ErrNotFound) {
		// The same answer whether it does not exist or is another
		// project's.
		return model.Volume{}, notFound(fmt.Sprintf("volume %q", name))
	}
	if err != nil {
		return model.Volume{}, err
	}
	return decodeVolume(kv)
}

func (ctl *Controller) listVolumes(ctx context.Context, prefix string) ([]model.Volume, error) {
	kvs, err := ctl.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]model.Volume, 0, len(kvs))
	for _, kv := range kvs {
		v, err := decodeVolume(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// putVolume writes v with a conditional write on its revision (0: it
// must not exist).
func (ctl *Controller) putVolume(ctx context.Context, v model.Volume) (model.Volume, error) {
	rev := v.Revision
	if rev == 0 {
		rev = store.OpMustNotExist
	}
	v.Revision = 0
	b, _ := json.Marshal(v)
	if _, err := ctl.store.Txn(ctx, []store.Op{{Key: volumeKey(v.Project, v.Name), Value: b, Rev: rev}}); err != nil {
		return v, err
	}
	if kv, err := ctl.store.Get(ctx, volumeKey(v.Project, v.Name)); err == nil {
		v.Revision = kv.Revision
	}
	return v, nil
}

// volumeLimit is project's storage quota: its own, else the site's, else
// DefaultVolumeBytes.
func (ctl *Controller) volumeLimit(ctx context.Context, project string) (model.ByteSize, error) {
	n := ctl.cfg.Limits.VolumeBytes
	if n <= 0 {
		n = DefaultVolumeBytes
	}
	kv, err := ctl.store.Get(ctx, "projects/"+project)
	if errors.Is(err, store.ErrNotFound) {
		return n, nil
	}
	if err != nil {
		return 0, err
	}
	var p projectRecord
	if err := json.Unmarshal(kv.Value, &p); err == nil && p.Limits != nil && p.Limits.VolumeBytes > 0 {
		n = p.Limits.VolumeBytes
	}
	return n, nil
}

// checkQuota refuses more bytes of volumes for project when the sum of
// its volumes' sizes and more would pass its quota. vols.mu is held.
func (ctl *Controller) checkQuota(ctx context.Context, project string, more model.ByteSize) error {
	limit, err := ctl.volumeLimit(ctx, project)
	if err != nil {
		return err
	}
	vols, err := ctl.listVolumes(ctx, volumeKey(project, ""))
	if err != nil {
		return err
	}
	var used model.ByteSize
	for _, v := range vols {
		used += v.Size
	}
	if used+more > limit {
		return &Error{Kind: KindLimit, Msg: fmt.Sprintf("project %s storage quota: %s used, %s asked, limit %s: delete volumes, or ask an admin to raise it (volume_bytes in PUT /projects/%s/limits)",
			project, used.Human(), more.Human(), limit.Human(), project)}
	}
	return nil
}

// storageHost is a host that may store volumes, with its room.
type storageHost struct {
	Name    string
	Address string
	Free    model.ByteSize
}

// storageHosts lists the Ready, uncordoned hosts with a storage address,
// each with its free room: its capacity's disk less the sizes of the
// volumes it stores.
func (ctl *Controller) storageHosts(ctx context.Context) ([]storageHost, error) {
	nodes, err := ctl.nodes(ctx)
	if err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, n := range nodes {
		addrs[n.Name] = n.Storage
	}
	vols, err := ctl.listVolumes(ctx, "volumes/")
	if err != nil {
		return nil, err
	}
	used := map[string]model.ByteSize{}
	for _, v := range vols {
		used[v.Node] += v.Size
	}
	var out []storageHost
	for _, n := range nodes {
		st := hostState(n, ctl.now(), ctl.started, ctl.cfg.NodeTimeout, ctl.cfg.NodeLostAfter)
		if st != model.NodeReady || n.Cordoned || addrs[n.Name] == "" {
			continue
		}
		out = append(out, storageHost{Name: n.Name, Address: addrs[n.Name], Free: n.Capacity.Disk - used[n.Name]})
	}
	return out, nil
}

// pickStorageHost chooses where a volume of size goes: the host with the
// most free room (by name on a tie), or want when an admin named one.
// It is pure.
func pickStorageHost(hosts []storageHost, size model.ByteSize, want string) (string, error) {
	if len(hosts) == 0 {
		return "", conflict("no storage host: no ready host's agent serves volumes (vgrid agent --storage-listen)")
	}
	if want != "" {
		for _, h := range hosts {
			if h.Name == want {
				if h.Free < size {
					return "", conflict(fmt.Sprintf("storage host %s has %s free, not the %s asked", want, h.Free.Human(), size.Human()))
				}
				return want, nil
			}
		}
		return "", invalid("invalid volume", api.FieldError{Field: "node", Reason: fmt.Sprintf("%s is not a ready storage host (its agent serves no volumes, or it is cordoned or not ready)", want)})
	}
	best := hosts[0]
	for _, h := range hosts[1:] {
		if h.Free > best.Free || h.Free == best.Free && h.Name < best.Name {
			best = h
		}
	}
	if best.Free < size {
		return "", conflict(fmt.Sprintf("no storage host has room for %s: the most free is %s on %s", size.Human(), best.Free.Human(), best.Name))
	}
	return best.Name, nil
}

// validVolumeRequest checks a POST /volumes body's fields.
func validVolumeRequest(req api.VolumesPost, admin bool) []api.FieldError {
	var fe []api.FieldError
	if why := spec.ValidVolumeName(req.Name); why != "" {
		fe = append(fe, fieldErr("name", why))
	}
	if why := spec.ValidVolumeSize(req.Size); why != "" {
		fe = append(fe, fieldErr("size", why))
	}
	if req.IOPS < 0 || req.IOPS > spec.MaxDiskIOPS {
		fe = append(fe, fieldErr("iops", fmt.Sprintf("want 0 (no cap) to %d, got %d", spec.MaxDiskIOPS, req.IOPS)))
	}
	if req.BPS < 0 || req.BPS > int64(spec.MaxDiskBPS) {
		fe = append(fe, fieldErr("bps", fmt.Sprintf("want 0 (no cap) to %d bytes per second, got %d", int64(spec.MaxDiskBPS), req.BPS)))
	}
	if req.Node != "" {
		switch {
		case !admin:
			fe = append(fe, fieldErr("node", "only an admin picks a volume's storage host"))
		case !NameRE.MatchString(req.Node):
			fe = append(fe, fieldErr("node", fmt.Sprintf("%q is not a host name", req.Node)))
		}
	}
	return fe
}

// CreateVolume stores a new volume of project on a storage host (req.Node
// when an admin names one, else the host with the most room), within the
// project's storage quota. Its host's agent makes it; it is ready when
// that agent says so.
func (ctl *Controller) CreateVolume(ctx context.Context, project string, req api.VolumesPost, admin bool) (model.Volume, error) {
	if fe := validVolumeRequest(req, admin); len(fe) > 0 {
		return model.Volume{}, invalid("invalid volume", fe...)
	}
	ctl.mu.Lock() // the calendar places it (before vols.mu: the lock order)
	defer ctl.mu.Unlock()
	ctl.vols.mu.Lock()
	defer ctl.vols.mu.Unlock()
	if _, err := ctl.store.Get(ctx, volumeKey(project, req.Name)); err == nil {
		return model.Volume{}, invalid("invalid volume", fieldErr("name", fmt.Sprintf("a volume named %q already exists in project %s", req.Name, project)))
	} else if !errors.Is(err, store.ErrNotFound) {
		return model.Volume{}, err
	}
	if err := ctl.checkQuota(ctx, project, req.Size); err != nil {
		return model.Volume{}, err
	}
	node, err := ctl.placeVolume(ctx, project, req.Name, req.Size, req.Node)
	if err != nil {
		return model.Volume{}, err
	}
	v := model.Volume{ID: newVolumeID(), Name: req.Name, Project: project, Size: req.Size, Node: node,
		IOPS: req.IOPS, BPS: req.BPS, State: model.VolumeCreating, CreatedAt: ctl.now()}
	v, err = ctl.putVolume(ctx, v)
	if err != nil {
		ctl.unplaceVolume(project, req.Name)
	}
	if errors.Is(err, store.ErrExists) {
		return model.Volume{}, invalid("invalid volume", fieldErr("name", "already exists"))
	}
	if err != nil {
		return model.Volume{}, err
	}
	ctl.log.Info("volume created", "project", project, "volume", v.Name, "id", v.ID, "node", node, "size", v.Size.Human())
	return v, nil
}

// Volume returns one volume of project, with the workspaces using it.
func (ctl *Controller) Volume(ctx context.Context, project, name string) (model.Volume, error) {
	v, err := ctl.getVolume(ctx, project, name)
	if err != nil {
		return v, err
	}
	wss, err := ctl.listWS(ctx, wsKey(project, ""))
	if err != nil {
		return v, err
	}
	v.Attached = attachedTo(wss, name, false)
	return v, nil
}

// Volumes lists project's volumes by name, with the workspaces using
// each.
func (ctl *Controller) Volumes(ctx context.Context, project string) ([]model.Volume, error) {
	vols, err := ctl.listVolumes(ctx, volumeKey(project, ""))
	if err != nil {
		return nil, err
	}
	wss, err := ctl.listWS(ctx, wsKey(project, ""))
	if err != nil {
		return nil, err
	}
	for i := range vols {
		vols[i].Attached = attachedTo(wss, vols[i].Name, false)
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
	return vols, nil
}

// attachedTo lists the workspaces (of one project) whose specs attach
// volume name, by name; with live, only those not being deleted. It is
// pure.
func attachedTo(wss []model.Workspace, name string, live bool) []string {
	var out []string
	for _, w := range wss {
		if live && w.Desired == model.DesiredDeleted {
			continue
		}
		for _, m := range w.Spec.Volumes {
			if m.Name == name {
				out = append(out, w.Spec.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// DeleteVolume asks the volume's storage host to remove it; the record
// goes when its agent says it has. It is refused while a workspace that
// is not being deleted attaches it, or while a snapshot of it is being
// made.
func (ctl *Controller) DeleteVolume(ctx context.Context, project, name string) (model.Volume, error) {
	ctl.vols.mu.Lock()
	defer ctl.vols.mu.Unlock()
	for attempt := 0; ; attempt++ {
		v, err := ctl.getVolume(ctx, project, name)
		if err != nil {
			return v, err
		}
		if v.State == model.VolumeDeleting {
			return v, nil
		}
		wss, err := ctl.listWS(ctx, wsKey(project, ""))
		if err != nil {
			return v, err
		}
		if v.ScratchOf != "" {
			if w, err := ctl.getWS(ctx, project, v.ScratchOf); err == nil && w.Cluster != nil {
				return v, conflict(fmt.Sprintf("volume %q is the scratch volume of cluster member %s: it is deleted with that member (delete the cluster, or scale its role down)", name, v.ScratchOf))
			} else if !isNotFound(err) {
				return v, err
			}
		}
		if using := attachedTo(wss, name, true); len(using) > 0 {
			return v, conflict(fmt.Sprintf("volume %q is attached to workspace %s: delete the workspace first", name, strings.Join(using, ", ")))
		}
		vols, err := ctl.listVolumes(ctx, volumeKey(project, ""))
		if err != nil {
			return v, err
		}
		for _, o := range vols {
			if o.SnapshotOf == name && o.State == model.VolumeCreating {
				return v, conflict(fmt.Sprintf("volume %q is being copied to snapshot %s: delete it once that is ready", name, o.Name))
			}
		}
		v.State, v.Reason, v.Endpoint = model.VolumeDeleting, "", nil
		nv, err := ctl.putVolume(ctx, v)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue // changed meanwhile (attached, reported): look again
		}
		if err != nil {
			return v, err
		}
		ctl.log.Info("volume deleting", "project", project, "volume", name, "id", v.ID, "node", v.Node)
		return nv, nil
	}
}

// ResizeVolume grows a volume to size (within the quota); its storage
// host's agent grows it and reports it ready again.
func (ctl *Controller) ResizeVolume(ctx context.Context, project, name string, size model.ByteSize) (model.Volume, error) {
	if why := spec.ValidVolumeSize(size); why != "" {
		return model.Volume{}, invalid("invalid resize", fieldErr("size", why))
	}
	ctl.mu.Lock() // the calendar checks the growth (before vols.mu: the lock order)
	defer ctl.mu.Unlock()
	ctl.vols.mu.Lock()
	defer ctl.vols.mu.Unlock()
	v, err := ctl.getVolume(ctx, project, name)
	if err != nil {
		return v, err
	}
	switch {
	case v.State != model.VolumeReady:
		return v, conflict(fmt.Sprintf("volume %q is %s: resize it when it is ready", name, v.State))
	case size < v.Size:
		return v, invalid("invalid resize", fieldErr("size", fmt.Sprintf("volumes only grow: %s is smaller than its %s", size, v.Size)))
	case size == v.Size:
		return v, nil
	}
	if err := ctl.checkQuota(ctx, project, size-v.Size); err != nil {
		return v, err
	}
	c, err := ctl.calendarLocked(ctx)
	if err != nil {
		return v, err
	}
	if err := ctl.syncCalendarVolumes(ctx, c); err != nil {
		return v, err
	}
	if err := c.ResizeVolume(project+"/"+name, size, ctl.now()); err != nil {
		var vr *calendar.VolumeRefusal
		if errors.As(err, &vr) {
			return v, conflict(vr.Error())
		}
		return v, err
	}
	v.State, v.Size, v.Reason = model.VolumeResizing, size, ""
	nv, err := ctl.putVolume(ctx, v)
	if err != nil {
		ctl.cal = nil // ahead of the store: restored at its next use
	}
	if errors.Is(err, store.ErrConflict) {
		return v, conflict(fmt.Sprintf("volume %q changed meanwhile; try again", name))
	}
	return nv, err
}

// SnapshotVolume makes a new volume, to, of project with the content of
// volume name now, on the same storage host (whose agent copies it),
// within the quota.
func (ctl *Controller) SnapshotVolume(ctx context.Context, project, name, to string) (model.Volume, error) {
	if why := spec.ValidVolumeName(to); why != "" {
		return model.Volume{}, invalid("invalid snapshot", fieldErr("to", why))
	}
	ctl.vols.mu.Lock()
	defer ctl.vols.mu.Unlock()
	src, err := ctl.getVolume(ctx, project, name)
	if err != nil {
		return src, err
	}
	if src.State != model.VolumeReady {
		return model.Volume{}, conflict(fmt.Sprintf("volume %q is %s: snapshot it when it is ready", name, src.State))
	}
	if _, err := ctl.store.Get(ctx, volumeKey(project, to)); err == nil {
		return model.Volume{}, invalid("invalid snapshot", fieldErr("to", fmt.Sprintf("a volume named %q already exists in project %s", to, project)))
	} else if !errors.Is(err, store.ErrNotFound) {
		return model.Volume{}, err
	}
	if err := ctl.checkQuota(ctx, project, src.Size); err != nil {
		return model.Volume{}, err
	}
	hosts, err := ctl.storageHosts(ctx)
	if err != nil {
		return model.Volume{}, err
	}
	if _, err := pickStorageHost(hosts, src.Size, src.Node); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Kind == KindInvalid {
			return model.Volume{}, conflict(fmt.Sprintf("volume %q's storage host %s is not ready: a snapshot is made there", name, src.Node))
		}
		return model.Volume{}, err
	}
	v := model.Volume{ID: newVolumeID(), Name: to, Project: project, Size: src.Size, Node: src.Node,
		IOPS: src.IOPS, BPS: src.BPS, State: model.VolumeCreating, SnapshotOf: name, CreatedAt: ctl.now()}
	v, err = ctl.putVolume(ctx, v)
	if errors.Is(err, store.ErrExists) {
		return model.Volume{}, invalid("invalid snapshot", fieldErr("to", "already exists"))
	}
	if err != nil {
		return model.Volume{}, err
	}
	ctl.log.Info("volume snapshot", "project", project, "volume", name, "to", to, "id", v.ID, "node", v.Node)
	return v, nil
}

// SetStorageHost records where node's agent serves volumes (host:port);
// an empty address says it serves none.
func (ctl *Controller) SetStorageHost(ctx context.Context, node string, sh api.StorageHost) error {
	if sh.Address != "" {
		if why := validHostPort(sh.Address); why != "" {
			return invalid("invalid storage host", fieldErr("address", why))
		}
	}
	var n model.Node
	for attempt := 0; ; attempt++ {
		kv, err := ctl.store.Get(ctx, "nodes/"+node)
		if err != nil {
			return err
		}
		n = model.Node{}
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if n.Storage == sh.Address {
			return nil // unchanged: no write
		}
		n.Storage = sh.Address
		b, _ := json.Marshal(n)
		_, err = ctl.store.Update(ctx, kv.Key, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	ctl.updateHost(ctx, n) // the calendar places volumes on storage hosts
	return nil
}

// validHostPort says why s is not an IP address and port ("" when it is).
func validHostPort(s string) string {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case len(s) > 64:
		return fmt.Sprintf("at most 64 bytes, got %d", len(s))
	case err != nil:
		return fmt.Sprintf("%q: want an IP address and a port (10.0.0.2:10809)", s)
	case ap.Port() == 0:
		return "want a port other than 0"
	case ap.Addr().IsUnspecified():
		return "want the address other hosts reach, not " + ap.Addr().String()
	}
	return ""
}

// ValidateVolumeReport checks a storage host's report on a volume.
func ValidateVolumeReport(rep api.VolumeReport) []api.FieldError {
	var fe []api.FieldError
	if rep.ID == "" || len(rep.ID) > 64 {
		fe = append(fe, fieldErr("report.id", "want the volume's ID"))
	}
	if len(rep.Reason) > MaxReason {
		fe = append(fe, fieldErr("report.reason", fmt.Sprintf("at most %d bytes, got %d", MaxReason, len(rep.Reason))))
	}
	if rep.Size < 0 {
		fe = append(fe, fieldErr("report.size", "must not be negative"))
	}
	switch {
	case rep.Deleted:
		if rep.State != "" || rep.Endpoint != nil {
			fe = append(fe, fieldErr("report.deleted", "a report that the volume is deleted says nothing else"))
		}
	case rep.State == model.VolumeReady:
		e := rep.Endpoint
		if e == nil {
			fe = append(fe, fieldErr("report.endpoint", "required with state ready"))
			break
		}
		if _, err := netip.ParseAddr(e.Host); err != nil {
			fe = append(fe, fieldErr("report.endpoint.host", fmt.Sprintf("%q: want an IP address", e.Host)))
		} else if netip.MustParseAddr(e.Host).IsUnspecified() {
			fe = append(fe, fieldErr("report.endpoint.host", "want the address other hosts reach"))
		}
		if e.Port < 1 || e.Port > 65535 {
			fe = append(fe, fieldErr("report.endpoint.port", fmt.Sprintf("want 1 to 65535, got %d", e.Port)))
		}
		if e.Export != rep.ID {
			fe = append(fe, fieldErr("report.endpoint.export", fmt.Sprintf("want the volume's ID %q, got %q", rep.ID, e.Export)))
		}
	case rep.State == model.VolumeFailed:
		if rep.Reason == "" {
			fe = append(fe, fieldErr("report.reason", "required with state failed"))
		}
		if rep.Endpoint != nil {
			fe = append(fe, fieldErr("report.endpoint", "only with state ready"))
		}
	default:
		fe = append(fe, fieldErr("report.state", fmt.Sprintf("%q: want ready or failed, or deleted: true", rep.State)))
	}
	return fe
}

// VolumeReport takes what a storage host's agent says of a volume it
// serves: ready (made, grown or copied, with its endpoint), failed (with
// why), or deleted (the record goes). A host that is not the volume's,
// or a report on an earlier volume of the name, is a KindGone error.
func (ctl *Controller) VolumeReport(ctx context.Context, node, project, name string, rep api.VolumeReport) (model.Volume, error) {
	if fe := ValidateVolumeReport(rep); len(fe) > 0 {
		return model.Volume{}, invalid("invalid volume report", fe...)
	}
	for attempt := 0; ; attempt++ {
		v, err := ctl.getVolume(ctx, project, name)
		if err != nil {
			if isNotFound(err) && rep.Deleted {
				return v, nil // gone already
			}
			return v, err
		}
		if v.Node != node || v.ID != rep.ID {
			return v, gone("no such volume on this node")
		}
		next, del, changed := reportedVolume(v, rep)
		if !changed {
			return v, nil
		}
		if del {
			err := ctl.store.Delete(ctx, volumeKey(project, name), v.Revision)
			if errors.Is(err, store.ErrConflict) && attempt < 20 {
				continue
			}
			if err == nil || errors.Is(err, store.ErrNotFound) {
				ctl.log.Info("volume deleted", "project", project, "volume", name, "id", v.ID, "node", node)
				return v, nil
			}
			return v, err
		}
		nv, err := ctl.putVolume(ctx, next)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return v, err
		}
		if nv.State != v.State {
			ctl.log.Info("volume "+string(nv.State), "project", project, "volume", name, "id", v.ID, "node", node, "reason", nv.Reason)
		}
		return nv, nil
	}
}

// reportedVolume is what a (valid) report makes of a volume: its next
// value, whether its record goes, and whether anything changed. It is
// pure.
func reportedVolume(v model.Volume, rep api.VolumeReport) (model.Volume, bool, bool) {
	if rep.Deleted {
		return v, v.State == model.VolumeDeleting, v.State == model.VolumeDeleting
	}
	if v.State == model.VolumeDeleting {
		return v, false, false // a report from before the delete
	}
	next := v
	switch rep.State {
	case model.VolumeReady:
		ep := *rep.Endpoint
		next.Endpoint = &ep
		if v.State == model.VolumeResizing && rep.Size < v.Size {
			// Not grown yet: the endpoint only.
			break
		}
		next.State, next.Reason = model.VolumeReady, ""
	case model.VolumeFailed:
		if v.State == model.VolumeResizing && rep.Size > 0 {
			// The volume is still there, at the size it has.
			next.State, next.Size, next.Reason = model.VolumeReady, rep.Size, "resize failed: "+rep.Reason
			break
		}
		next.State, next.Reason, next.Endpoint = model.VolumeFailed, rep.Reason, nil
	}
	a, _ := json.Marshal(v)
	b, _ := json.Marshal(next)
	return next, false, string(a) != string(b)
}
