package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// Saving a workspace's disk as an image (vgrid workspace save):
//
//	saves/<node>/<id>    model.Save: the request, for the host's agent, and how it went
//
// CreateSave checks the workspace (the caller's, on a host, Running,
// Stopped or Suspended and staying so, not moving or migrating) and the
// image name (valid, free, not the name of another save under way) and
// records the save pending. The host's long poll lists its pending and
// running saves (Assignments.Saves) and is woken when one is recorded
// (its hostWaker). Its agent saves the disk with its driver and reports
// progress or failure (SaveReport); then it uploads the file
// (SaveUpload), which goes into the repository through PushImage as the
// project's image, and the save is done with the image's digest, or
// failed with the reason. Each end is an event of the workspace.
//
// An agent that restarts mid-save finds the save still running in its
// assignments and carries it out again from the start. Finished saves
// are kept for saveKeep, then deleted when the next save is recorded.

// Bounds of saves.
const (
	// saveKeep is how long a finished save stays listed.
	saveKeep = 7 * 24 * time.Hour
	// MaxSaveError bounds a failure's reason.
	MaxSaveError = MaxReason
)

var saveIDRE = regexp.MustCompile(`^s[0-9a-f]{12}$`)

func newSaveID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "s" + hex.EncodeToString(b)
}

func saveKey(node, id string) string { return "saves/" + node + "/" + id }

// saveState is the controller's share of saves: mu serialises the check
// that an image name is free with the write that takes it.
type saveState struct {
	mu    sync.Mutex
	waker hostWaker // of saves/: a save recorded wakes its host
}

func (ctl *Controller) saves() *saveState { return &ctl.saveSt }

// ValidateSave checks a save request as the user sends it. The image's
// name and tags follow the rules of a push. It is pure.
func ValidateSave(req api.SaveRequest) []api.FieldError {
	var f fieldErrs
	if req.Image == "" {
		f.add("image", "required: the name of the new image")
	} else if !NameRE.MatchString(req.Image) {
		f.add("image", "must be a lower-case name (a-z, 0-9, '.', '-'; at most 63), got %s", quoteShort(req.Image))
	}
	if len(req.Tags) > MaxImageTags {
		f.add("tags", "at most %d tags, got %d", MaxImageTags, len(req.Tags))
	}
	seen := map[string]bool{}
	for i, t := range req.Tags {
		switch {
		case !tagOK(t):
			f.add(fmt.Sprintf("tags[%d]", i), "want 1 to %d of a-z A-Z 0-9 . _ -, got %s", MaxImageTagLen, quoteShort(t))
		case seen[t]:
			f.add(fmt.Sprintf("tags[%d]", i), "%q given twice", t)
		}
		seen[t] = true
	}
	return f
}

// saveRefusal says why ws's disk cannot be saved now ("" if it can): it
// must be on a host, Running, Stopped or Suspended, and staying so. It is
// pure.
func saveRefusal(ws model.Workspace) string {
	st, name := ws.Status, ws.Spec.Name
	switch {
	case ws.Desired == model.DesiredDeleted:
		return fmt.Sprintf("workspace %q is being deleted", name)
	case st.Migration != nil:
		return fmt.Sprintf("workspace %q is migrating to host %s: save it once it runs there", name, st.Migration.To)
	case st.Move != nil:
		return fmt.Sprintf("workspace %q is moving to host %s (state %s): save it once it is there", name, st.Node, st.State)
	case st.Node == "":
		return fmt.Sprintf("workspace %q is %s: it is on no host, so it has no disk yet", name, st.State)
	}
	switch st.State {
	case model.StateRunning:
		if ws.Desired != model.DesiredRunning {
			return fmt.Sprintf("workspace %q is Running but is to be %s: save it once it is", name, ws.Desired)
		}
	case model.StateStopped:
		if ws.Desired == model.DesiredRunning {
			return fmt.Sprintf("workspace %q is Stopped and about to start: save it once it runs", name)
		}
	case model.StateSuspended:
		if ws.Desired == model.DesiredRunning {
			return fmt.Sprintf("workspace %q is Suspended and about to resume: save it once it runs", name)
		}
	default:
		return fmt.Sprintf("workspace %q is %s: a disk is saved while Running, Stopped or Suspended", name, st.State)
	}
	return ""
}

func decodeSave(kv store.KV) (model.Save, error) {
	var s model.Save
	if err := json.Unmarshal(kv.Value, &s); err != nil {
		return s, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return s, nil
}

// allSaves reads every save record, with their store keys and revisions.
func (ctl *Controller) allSaves(ctx context.Context, prefix string) ([]model.Save, []store.KV, error) {
	kvs, err := ctl.store.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	out := make([]model.Save, 0, len(kvs))
	keep := kvs[:0:0]
	for _, kv := range kvs {
		s, err := decodeSave(kv)
		if err != nil {
			ctl.log.Warn("save: decode record", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, s)
		keep = append(keep, kv)
	}
	return out, keep, nil
}

// CreateSave records a save of project's workspace name as image
// req.Image, for the workspace's host to carry out.
func (ctl *Controller) CreateSave(ctx context.Context, project, name string, req api.SaveRequest) (model.Save, error) {
	if fe := ValidateSave(req); len(fe) > 0 {
		return model.Save{}, invalid("invalid save: "+fe[0].Field+": "+fe[0].Reason, fe...)
	}
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return model.Save{}, err
	}
	if reason := saveRefusal(ws); reason != "" {
		return model.Save{}, conflict(reason)
	}
	if ctl.blobRoot() == "" {
		return model.Save{}, conflict("this control plane keeps no image blobs (no blob directory): images cannot be saved")
	}
	ss := ctl.saves()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, _, err := ctl.imageRecord(ctx, req.Image); err == nil {
		return model.Save{}, conflict(fmt.Sprintf("image %q exists: image names are unique across the grid; save under another name", req.Image))
	} else if !isNotFound(err) {
		return model.Save{}, err
	}
	saves, kvs, err := ctl.allSaves(ctx, "saves/")
	if err != nil {
		return model.Save{}, err
	}
	now := ctl.now()
	for i, s := range saves {
		if s.State.Finished() {
			if now.Sub(s.DoneAt) > saveKeep {
				if err := ctl.store.Delete(ctx, kvs[i].Key, kvs[i].Revision); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
					ctl.log.Warn("save: delete an old record", "key", kvs[i].Key, "err", err)
				}
			}
			continue
		}
		switch {
		case s.Image == req.Image:
			return model.Save{}, conflict(fmt.Sprintf("image %q is being made by another save (%s): save under another name", req.Image, s.ID))
		case s.Project == project && s.WorkspaceID == ws.ID:
			return model.Save{}, conflict(fmt.Sprintf("workspace %q is being saved already (%s, as image %q, %s): wait for it to end", name, s.ID, s.Image, s.State))
		}
	}
	s := model.Save{
		ID: newSaveID(), Project: project, Workspace: name, WorkspaceID: ws.ID, Node: ws.Status.Node,
		Image: req.Image, Public: req.Public, Tags: slices.Clone(req.Tags), State: model.SavePending, CreatedAt: now,
	}
	b, _ := json.Marshal(s)
	if _, err := ctl.store.Create(ctx, saveKey(s.Node, s.ID), b); err != nil {
		return model.Save{}, err
	}
	ctl.event(ctx, ws, "save", fmt.Sprintf("saving as image %s (%s on host %s)", s.Image, ws.Status.State, s.Node))
	return s, nil
}

// Saves returns the saves of project's workspace name, newest first.
func (ctl *Controller) Saves(ctx context.Context, project, name string) ([]model.Save, error) {
	ws, err := ctl.getWS(ctx, project, name)
	if err != nil {
		return nil, err
	}
	all, _, err := ctl.allSaves(ctx, "saves/")
	if err != nil {
		return nil, err
	}
	out := []model.Save{}
	for _, s := range all {
		if s.Project == project && s.WorkspaceID == ws.ID {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b model.Save) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// pendingSaves are the saves node's agent is to carry out: pending, or
// running (an agent that restarted carries them out again).
func (ctl *Controller) pendingSaves(ctx context.Context, node string) ([]model.Save, error) {
	all, _, err := ctl.allSaves(ctx, "saves/"+node+"/")
	if err != nil {
		return nil, err
	}
	var out []model.Save
	for _, s := range all {
		if !s.State.Finished() && s.Node == node {
			out = append(out, s)
		}
	}
	return out, nil
}

// ValidateSaveReport checks what an agent says of a save. It is pure.
func ValidateSaveReport(r api.SaveReport) []api.FieldError {
	var f fieldErrs
	switch {
	case r.Progress == nil && r.Failed == "":
		f.add("report", "want progress or failed")
	case r.Progress != nil && r.Failed != "":
		f.add("report", "give progress or failed, not both")
	}
	if p := r.Progress; p != nil {
		if p.Total < 0 || p.Done < 0 || p.Done > p.Total {
			f.add("progress", "want 0 <= done <= total, got %d of %d", p.Done, p.Total)
		}
	}
	if len(r.Failed) > MaxSaveError {
		f.add("failed", "at most %d bytes, got %d", MaxSaveError, len(r.Failed))
	}
	return f
}

// mutateSave applies fn to node's save id, which must not have finished.
func (ctl *Controller) mutateSave(ctx context.Context, node, id string, fn func(*model.Save) error) (model.Save, error) {
	if !saveIDRE.MatchString(id) {
		return model.Save{}, invalid("invalid save id", api.FieldError{Field: "id", Reason: "want s and 12 hex digits, got " + quoteShort(id)})
	}
	for attempt := 0; ; attempt++ {
		kv, err := ctl.store.Get(ctx, saveKey(node, id))
		if errors.Is(err, store.ErrNotFound) {
			return model.Save{}, gone("no such save for this host")
		}
		if err != nil {
			return model.Save{}, err
		}
		s, err := decodeSave(kv)
		if err != nil {
			return model.Save{}, err
		}
		if s.State.Finished() {
			return s, gone(fmt.Sprintf("save %s is %s already", id, s.State))
		}
		if err := fn(&s); err != nil {
			return s, err
		}
		b, _ := json.Marshal(s)
		_, err = ctl.store.Update(ctx, kv.Key, b, kv.Revision)
		if errors.Is(err, store.ErrConflict) && attempt < 50 {
			continue
		}
		return s, err
	}
}

// SaveReport takes node's agent's word on save id: progress (the save is
// running), or its failure.
func (ctl *Controller) SaveReport(ctx context.Context, node, id string, r api.SaveReport) (model.Save, error) {
	if fe := ValidateSaveReport(r); len(fe) > 0 {
		return model.Save{}, invalid("invalid save report", fe...)
	}
	s, err := ctl.mutateSave(ctx, node, id, func(s *model.Save) error {
		if r.Failed != "" {
			s.State, s.Error, s.DoneAt = model.SaveFailed, r.Failed, ctl.now()
			return nil
		}
		s.State, s.Progress = model.SaveRunning, *r.Progress
		return nil
	})
	if err != nil {
		return s, err
	}
	if s.State == model.SaveFailed {
		ctl.saveEvent(ctx, s, "save failed: "+s.Error)
	}
	return s, nil
}

// SaveUpload describes the image file an agent uploads for a save.
type SaveUpload struct {
	Size        int64  // bytes of the body (Content-Length)
	SHA256      string // hex digest of the body
	Consistency string
	Took        time.Duration
}

// ValidateSaveUpload checks an upload's description. It is pure.
func ValidateSaveUpload(u SaveUpload) []api.FieldError {
	var f fieldErrs
	if u.Size <= 0 {
		f.add("size", "the body's length (Content-Length) is required and must be more than 0")
	}
	if !sha256RE.MatchString(u.SHA256) {
		f.add(api.SaveParamSHA256, "want 64 lower-case hex digits, got %s", quoteShort(u.SHA256))
	}
	if len(u.Consistency) > 128 {
		f.add(api.SaveParamConsistency, "at most 128 bytes, got %d", len(u.Consistency))
	}
	if u.Took < 0 {
		f.add(api.SaveParamTook, "must not be negative, got %s", u.Took)
	}
	return f
}

// SaveUpload stores the image file node's agent made for save id (body,
// u.Size bytes) as the save's project's image, through PushImage (which
// checks it), and ends the save: done with the image's digest, or failed
// with the reason. Uploading for a save that has ended is gone.
func (ctl *Controller) SaveUpload(ctx context.Context, node, id string, u SaveUpload, body io.Reader) (model.Save, error) {
	if fe := ValidateSaveUpload(u); len(fe) > 0 {
		return model.Save{}, invalid("invalid save upload", fe...)
	}
	s, err := ctl.mutateSave(ctx, node, id, func(s *model.Save) error {
		s.State = model.SaveRunning
		s.Consistency, s.Took, s.Bytes = u.Consistency, model.Duration(u.Took), u.Size
		return nil
	})
	if err != nil {
		return s, err
	}
	// The image boots the way its workspace's image does.
	var like string
	if ws, err := ctl.getWS(ctx, s.Project, s.Workspace); err == nil && ws.ID == s.WorkspaceID {
		like = ws.Spec.Image
	}
	img, perr := ctl.PushImage(ctx, s.Project, ImagePush{Name: s.Image, Format: "qcow2", Public: s.Public, Tags: s.Tags,
		Size: u.Size, SHA256: u.SHA256, Like: like}, body)
	end := func(s *model.Save) error {
		s.DoneAt = ctl.now()
		if perr != nil {
			s.State, s.Error = model.SaveFailed, "upload: "+perr.Error()
			if len(s.Error) > MaxSaveError {
				s.Error = s.Error[:MaxSaveError]
			}
			return nil
		}
		s.State, s.Digest, s.Bytes = model.SaveDone, img.Digest, img.Size
		return nil
	}
	// Recorded whatever the caller's context: the image is made (or not).
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s, err = ctl.mutateSave(wctx, node, id, end)
	if err != nil {
		return s, err
	}
	if perr != nil {
		ctl.saveEvent(wctx, s, "save failed: "+s.Error)
		return s, perr
	}
	ctl.saveEvent(wctx, s, fmt.Sprintf("saved as image %s (%d bytes, %s, took %s)", s.Image, s.Bytes, s.Consistency, s.Took.D().Round(time.Millisecond)))
	return s, nil
}

// saveEvent records msg in the history of the save's workspace, if it
// is still the one saved.
func (ctl *Controller) saveEvent(ctx context.Context, s model.Save, msg string) {
	ws, err := ctl.getWS(ctx, s.Project, s.Workspace)
	if err != nil || ws.ID != s.WorkspaceID {
		return
	}
	ctl.event(ctx, ws, "save", msg)
}

// waitSave is waitChange's part for saves: whether node has had a new
// save after rev (or whether that cannot be told); else a channel closed
// at its next one.
func (ctl *Controller) waitSave(node string, rev int64) (<-chan struct{}, bool) {
	return ctl.saves().waker.check(ctl.store, node, rev)
}

// saveWakeHosts: a save written pending wakes its host (progress and
// ends give its agent nothing new to do).
func saveWakeHosts(ev store.Event) []string {
	if ev.Type != store.EventPut {
		return nil
	}
	var v struct {
		State model.SaveState `json:"state"`
	}
	if json.Unmarshal(ev.KV.Value, &v) != nil || v.State != model.SavePending {
		return nil
	}
	node, _, _ := strings.Cut(strings.TrimPrefix(ev.KV.Key, "saves/"), "/")
	return []string{node}
}
