package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"vgrid/api"
	"vgrid/internal/model"
	"vgrid/internal/store"
)

// The image repository. Images are records images/<name> (names unique
// across the grid). The operator's images (Project "") are registered
// from files on the control plane's disk and are public; a project's
// images are pushed through the API: their disk is a blob stored by
// content under <BlobDir>/sha256/<hex>, shared by every image with that
// content and removed when no image refers to it any more.

// ImagePush describes an upload of a disk image (PushImage).
type ImagePush struct {
	Name   string
	Format string // raw or qcow2
	Public bool
	Tags   []string
	Size   int64  // bytes the body carries (Content-Length)
	SHA256 string // expected hex digest, "" to skip the check
	// Like names an image (one the project sees) whose way of booting the
	// new one takes: a direct-boot image's kernel, initrd and command
	// line (a root filesystem saved from such a workspace has no boot
	// loader). "" : booted by firmware, as cloud images are.
	Like string
}

// Bounds of a push.
const (
	MaxImageTags   = 16
	MaxImageTagLen = 63
)

// ErrNotOwner says that the caller's project does not own an image it may
// see (a public image of another project, or the operator's): it may use
// it, not delete it.
var ErrNotOwner = errors.New("not the image's owner")

// blobMu serialises the steps that put a blob in place or remove one with
// the image records that refer to them, so that a blob is never removed
// while a push that shares it is being stored. Uploads themselves (the
// long part) run outside it.
var blobMu sync.Mutex

// qemuImg is the qemu-img binary that inspects uploads.
var qemuImg = "qemu-img"

// inspectTimeout bounds one qemu-img info.
const inspectTimeout = 2 * time.Minute

// images returns every image record by name.
func (ctl *Controller) images(ctx context.Context) (map[string]model.Image, error) {
	kvs, err := ctl.store.List(ctx, "images/")
	if err != nil {
		return nil, err
	}
	out := map[string]model.Image{}
	for _, kv := range kvs {
		var img model.Image
		if err := json.Unmarshal(kv.Value, &img); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out[img.Name] = normImage(img)
	}
	return out, nil
}

// normImage fills in what records stored before the repository lack: the
// operator's images are public and their digest is their disk's.
func normImage(img model.Image) model.Image {
	if img.Project == "" {
		img.Public = true
	}
	if img.Digest == "" && img.Disk.SHA256 != "" {
		img.Digest = "sha256:" + img.Disk.SHA256
	}
	if img.Size == 0 {
		img.Size = img.Disk.Size
	}
	return img
}

// imageVisible reports whether project sees img (admin: every image).
func imageVisible(img model.Image, project string, admin bool) bool {
	return admin || img.Public || img.Project == "" || (project != "" && img.Project == project)
}

// visibleImages are the images project may see and build workspaces from.
func (ctl *Controller) visibleImages(ctx context.Context, project string) (map[string]model.Image, error) {
	all, err := ctl.images(ctx)
	if err != nil {
		return nil, err
	}
	for n, img := range all {
		if !imageVisible(img, project, false) {
			delete(all, n)
		}
	}
	return all, nil
}

// Images lists every image by name (the operator's and every project's).
func (ctl *Controller) Images(ctx context.Context) ([]model.Image, error) {
	return ctl.VisibleImages(ctx, "", true)
}

// VisibleImages lists, by name, the images project sees: the public ones
// and its own (admin: all).
func (ctl *Controller) VisibleImages(ctx context.Context, project string, admin bool) ([]model.Image, error) {
	imgs, err := ctl.images(ctx)
	if err != nil {
		return nil, err
	}
	out := []model.Image{}
	for _, img := range imgs {
		if imageVisible(img, project, admin) {
			out = append(out, img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Image returns one image project sees; one it cannot see is not found.
func (ctl *Controller) Image(ctx context.Context, project, name string, admin bool) (model.Image, error) {
	img, _, err := ctl.imageRecord(ctx, name)
	if err != nil {
		return model.Image{}, err
	}
	if !imageVisible(img, project, admin) {
		return model.Image{}, notFound(fmt.Sprintf("image %q", name))
	}
	return img, nil
}

// imageRecord reads images/<name> with its revision; a missing one is a
// not-found *Error.
func (ctl *Controller) imageRecord(ctx context.Context, name string) (model.Image, int64, error) {
	kv, err := ctl.store.Get(ctx, "images/"+name)
	if errors.Is(err, store.ErrNotFound) {
		return model.Image{}, 0, notFound(fmt.Sprintf("image %q", name))
	}
	if err != nil {
		return model.Image{}, 0, err
	}
	var img model.Image
	if err := json.Unmarshal(kv.Value, &img); err != nil {
		return model.Image{}, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return normImage(img), kv.Revision, nil
}

// RegisterImage validates (when check is set) and stores an operator's
// image record: its files stay where they are and are served to agents
// from there. It is public and belongs to no project; a project's image
// of that name is not replaced.
func (ctl *Controller) RegisterImage(ctx context.Context, img model.Image, check bool) error {
	if check {
		if err := validImage(img, ctl.imageRoots(), ctl.now()); err != nil {
			return err
		}
	}
	if img.CreatedAt.IsZero() {
		img.CreatedAt = ctl.now()
	}
	img.Project, img.Public, img.UploadedAt = "", true, time.Time{}
	img.Digest, img.Size = "", 0
	img = normImage(img)
	blobMu.Lock()
	defer blobMu.Unlock()
	cur, rev, err := ctl.imageRecord(ctx, img.Name)
	switch {
	case isNotFound(err):
		rev = store.OpMustNotExist
	case err != nil:
		return err
	case cur.Project != "":
		return conflict(fmt.Sprintf("image %q is project %s's: the operator's image needs another name", img.Name, cur.Project))
	}
	b, _ := json.Marshal(img)
	if _, err := ctl.store.Txn(ctx, []store.Op{{Key: "images/" + img.Name, Value: b, Rev: rev}}); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
			return conflict(fmt.Sprintf("image %q changed while it was registered; register it again", img.Name))
		}
		return err
	}
	return nil
}

// ImageFile is one file of an image ("disk", "kernel" or "initrd"), with
// the path it is served from.
func (ctl *Controller) ImageFile(ctx context.Context, name, file string) (*model.ImageFile, error) {
	img, _, err := ctl.imageRecord(ctx, name)
	if err != nil {
		return nil, err
	}
	var f *model.ImageFile
	switch file {
	case "disk":
		f = &img.Disk
	case "kernel":
		f = img.Kernel
	case "initrd":
		f = img.Initrd
	}
	if f == nil {
		return nil, notFound(fmt.Sprintf("file %q of image %s", file, img.Name))
	}
	// Again at each download: a file swapped for a symlink to elsewhere
	// since it was registered is not served. A pushed image's disk is a
	// blob, served from the blob directory only; the operator's files
	// from the image directories (without image directories, an embedded
	// controller, each file stays in its own directory).
	var roots []string
	switch {
	case ctl.isBlob(f.Path):
		roots = []string{resolvedDir(filepath.Join(ctl.blobRoot(), "sha256"))}
	case len(ctl.cfg.ImageDirs) == 0:
		roots = fileDirRoot(f.Path)
	default:
		roots = ctl.imageRoots()
	}
	real, _, err := resolveImageFile(f.Path, roots)
	if err != nil {
		ctl.log.Warn("image file refused", "image", img.Name, "file", file, "path", f.Path, "err", err)
		return nil, conflict(fmt.Sprintf("file %q of image %s is not served: it is no longer a regular file inside the image directories", file, img.Name))
	}
	out := *f
	out.Path = real
	return &out, nil
}

// validImage checks an image registered through the API: ValidateImage,
// then each file: it must resolve (symbolic links followed) to a regular
// file inside one of roots, the image directories, of the size given.
func validImage(img model.Image, roots []string, now time.Time) error {
	fe := ValidateImage(img, now)
	bad := map[string]bool{}
	for _, f := range fe {
		bad[f.Field] = true
	}
	for _, f := range imageFiles(img) {
		if f.f == nil || bad[f.name+".path"] {
			continue
		}
		if len(roots) == 0 {
			fe = append(fe, api.FieldError{Field: f.name + ".path", Reason: "the control plane has no image directory: images are registered from <data-dir>/images or --image directories only"})
			continue
		}
		_, st, err := resolveImageFile(f.f.Path, roots)
		if err != nil {
			fe = append(fe, api.FieldError{Field: f.name + ".path", Reason: err.Error()})
			continue
		}
		if !bad[f.name+".size"] && st.Size() != f.f.Size {
			fe = append(fe, api.FieldError{Field: f.name + ".size", Reason: fmt.Sprintf("the file has %d bytes, not %d", st.Size(), f.f.Size)})
		}
	}
	if len(fe) > 0 {
		return invalid("invalid image", fe...)
	}
	return nil
}

// blobRoot is the absolute blob directory ("" when none is configured).
func (ctl *Controller) blobRoot() string {
	if ctl.cfg.BlobDir == "" {
		return ""
	}
	abs, err := filepath.Abs(ctl.cfg.BlobDir)
	if err != nil {
		return ""
	}
	return abs
}

// blobPath is where the blob of a hex digest lives.
func (ctl *Controller) blobPath(hexDigest string) string {
	return filepath.Join(ctl.blobRoot(), "sha256", hexDigest)
}

// isBlob says whether p is (lexically) a blob of the blob directory.
func (ctl *Controller) isBlob(p string) bool {
	root := ctl.blobRoot()
	if root == "" {
		return false
	}
	dir, base := filepath.Split(p)
	return filepath.Clean(dir) == filepath.Join(root, "sha256") && sha256RE.MatchString(base)
}

// validPush checks a push's parameters; the field names are the query
// parameters of PUT /images/{name}.
func validPush(project string, req ImagePush) []api.FieldError {
	var f fieldErrs
	if project == "" {
		f.add("project", "required: an image is pushed into a project")
	}
	if !NameRE.MatchString(req.Name) {
		f.add("name", "must be a lower-case name (a-z, 0-9, '.', '-'; at most 63)")
	}
	if req.Format != "raw" && req.Format != "qcow2" {
		f.add("format", `want "raw" or "qcow2", got %s`, quoteShort(req.Format))
	}
	if len(req.Tags) > MaxImageTags {
		f.add("tag", "at most %d tags, got %d", MaxImageTags, len(req.Tags))
	}
	seen := map[string]bool{}
	for i, t := range req.Tags {
		switch {
		case !tagOK(t):
			f.add(fmt.Sprintf("tag[%d]", i), "want 1 to %d of a-z A-Z 0-9 . _ -, got %s", MaxImageTagLen, quoteShort(t))
		case seen[t]:
			f.add(fmt.Sprintf("tag[%d]", i), "%q given twice", t)
		}
		seen[t] = true
	}
	switch {
	case req.Size <= 0:
		f.add("size", "the body's length (Content-Length) is required and must be more than 0")
	case req.Size > int64(MaxImageFile):
		f.add("size", "at most 1024Ti, got %d bytes", req.Size)
	}
	if req.Like != "" && !NameRE.MatchString(req.Like) {
		f.add("like", "must name an image (a-z, 0-9, '.', '-'; at most 63)")
	}
	if req.SHA256 != "" && !sha256RE.MatchString(req.SHA256) {
		f.add("sha256", "want 64 lower-case hex digits")
	}
	return f
}

func tagOK(t string) bool {
	if t == "" || len(t) > MaxImageTagLen {
		return false
	}
	for _, c := range t {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ownsName returns why project may not push an image named name over cur
// (nil if it may: cur is its own).
func ownsName(cur model.Image, project string) error {
	switch cur.Project {
	case project:
		return nil
	case "":
		return conflict(fmt.Sprintf("image %q is the operator's: push under another name", cur.Name))
	default:
		return conflict(fmt.Sprintf("image %q belongs to another project: image names are unique across the grid, push under another name", cur.Name))
	}
}

// PushImage stores an uploaded disk image as project's image req.Name:
// body (req.Size bytes) is streamed into a temporary file in the blob
// directory while it is hashed, checked (digest, then the file's format
// with qemu-img: the declared one, no backing or external data file,
// readable) and moved into place by content; then the record is stored.
// An image of the same name of project is replaced (not while workspaces
// use it, unless the content is the same); one of another project or of
// the operator is a conflict. On any refusal nothing is kept.
func (ctl *Controller) PushImage(ctx context.Context, project string, req ImagePush, body io.Reader) (model.Image, error) {
	if fe := validPush(project, req); len(fe) > 0 {
		return model.Image{}, invalid("invalid image push", fe...)
	}
	root := ctl.blobRoot()
	if root == "" {
		return model.Image{}, conflict("this control plane keeps no image blobs (no blob directory): images cannot be pushed")
	}
	// Refused before a byte is read: another project's name.
	if cur, _, err := ctl.imageRecord(ctx, req.Name); err == nil {
		if err := ownsName(cur, project); err != nil {
			return model.Image{}, err
		}
	} else if !isNotFound(err) {
		return model.Image{}, err
	}
	var like model.Image
	if req.Like != "" {
		var err error
		if like, err = ctl.Image(ctx, project, req.Like, false); err != nil {
			if isNotFound(err) {
				return model.Image{}, invalid("invalid image push", api.FieldError{Field: "like", Reason: fmt.Sprintf("no image %q that project %s sees", req.Like, project)})
			}
			return model.Image{}, err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "sha256"), 0o700); err != nil {
		return model.Image{}, fmt.Errorf("blob directory: %w", err)
	}
	tmp, digest, err := receiveBlob(root, body, req.Size)
	if err != nil {
		return model.Image{}, err
	}
	defer os.Remove(tmp) // gone once renamed into place
	if req.SHA256 != "" && req.SHA256 != digest {
		return model.Image{}, invalid("invalid image push", api.FieldError{Field: "sha256",
			Reason: fmt.Sprintf("the body's digest is sha256:%s, not the expected sha256:%s: nothing was kept", digest, req.SHA256)})
	}
	info, err := inspectImage(ctx, tmp)
	if err != nil {
		return model.Image{}, err
	}
	if fe := checkImageInfo(info, req.Format, req.Size); len(fe) > 0 {
		return model.Image{}, invalid("invalid image push", fe...)
	}

	blobMu.Lock()
	defer blobMu.Unlock()
	cur, rev, err := ctl.imageRecord(ctx, req.Name)
	exists := err == nil
	switch {
	case isNotFound(err):
		rev = store.OpMustNotExist
	case err != nil:
		return model.Image{}, err
	default:
		if err := ownsName(cur, project); err != nil {
			return model.Image{}, err
		}
		if cur.Disk.SHA256 != digest || cur.DiskFormat != req.Format {
			if users := ctl.imageUsers(ctx, req.Name, project, false); users != "" {
				return model.Image{}, conflict(fmt.Sprintf("image %q is used by %s: it cannot be replaced with other content; push under another name", req.Name, users))
			}
		}
	}
	final := ctl.blobPath(digest)
	placed := false
	if st, err := os.Lstat(final); err == nil && st.Mode().IsRegular() && st.Size() == req.Size {
		// The same content is stored already: shared.
	} else {
		if err := os.Rename(tmp, final); err != nil {
			return model.Image{}, fmt.Errorf("store blob: %w", err)
		}
		syncDir(filepath.Dir(final))
		placed = true
	}
	now := ctl.now()
	img := model.Image{
		Name: req.Name, Boot: "firmware", DiskFormat: req.Format,
		Disk:    model.ImageFile{Path: final, SHA256: digest, Size: req.Size},
		MinDisk: model.ByteSize(info.VirtualSize), CreatedAt: now,
		Project: project, Public: req.Public, Tags: append([]string(nil), req.Tags...),
		Digest: "sha256:" + digest, Size: req.Size, UploadedAt: now,
	}
	if like.Boot == "direct" {
		img.Boot, img.Kernel, img.Initrd, img.Cmdline = like.Boot, like.Kernel, like.Initrd, like.Cmdline
	}
	if exists {
		img.CreatedAt = cur.CreatedAt
	}
	b, _ := json.Marshal(img)
	if _, err := ctl.store.Txn(ctx, []store.Op{{Key: "images/" + req.Name, Value: b, Rev: rev}}); err != nil {
		if placed {
			ctl.dropBlobIfUnused(ctx, digest)
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
			return model.Image{}, conflict(fmt.Sprintf("image %q changed during the upload: push again", req.Name))
		}
		return model.Image{}, err
	}
	if exists && cur.Disk.SHA256 != digest && ctl.isBlob(cur.Disk.Path) {
		ctl.dropBlobIfUnused(ctx, cur.Disk.SHA256)
	}
	ctl.log.Info("image pushed", "image", img.Name, "project", project, "digest", img.Digest, "size", img.Size, "format", img.DiskFormat, "shared", !placed)
	return img, nil
}

// DeleteImage removes an image: only its project deletes it (an admin
// any), and not while a workspace or cluster that is not deleted uses it.
// Its blob goes when no other image refers to it; the operator's files
// stay where they are.
func (ctl *Controller) DeleteImage(ctx context.Context, project, name string, admin bool) error {
	blobMu.Lock()
	defer blobMu.Unlock()
	img, rev, err := ctl.imageRecord(ctx, name)
	if err != nil {
		return err
	}
	if !imageVisible(img, project, admin) {
		return notFound(fmt.Sprintf("image %q", name))
	}
	if !admin && img.Project != project {
		if img.Project == "" {
			return fmt.Errorf("%w: image %q is the operator's: only an admin deletes it", ErrNotOwner, name)
		}
		return fmt.Errorf("%w: image %q belongs to another project: only that project or an admin deletes it", ErrNotOwner, name)
	}
	if users := ctl.imageUsers(ctx, name, project, admin); users != "" {
		return conflict(fmt.Sprintf("image %q is used by %s: delete them first", name, users))
	}
	if err := ctl.store.Delete(ctx, "images/"+name, rev); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return conflict(fmt.Sprintf("image %q changed meanwhile: try again", name))
		}
		return err
	}
	if ctl.isBlob(img.Disk.Path) {
		ctl.dropBlobIfUnused(ctx, img.Disk.SHA256)
	}
	ctl.log.Info("image deleted", "image", name, "project", project, "digest", img.Digest)
	return nil
}

// imageUsers names the workspaces and clusters that are not deleted and
// use image name ("" when none), as project's caller may see them: other
// projects' are counted, not named, unless admin.
func (ctl *Controller) imageUsers(ctx context.Context, name, project string, admin bool) string {
	var wss, cls []string
	var otherWS, otherCL int
	add := func(list *[]string, other *int, p, n string) {
		if admin || p == project {
			*list = append(*list, p+"/"+n)
		} else {
			*other++
		}
	}
	if all, err := ctl.listWS(ctx, "ws/"); err == nil {
		for _, w := range all {
			if w.Spec.Image == name && w.Desired != model.DesiredDeleted {
				add(&wss, &otherWS, w.Project, w.Spec.Name)
			}
		}
	} else {
		return "workspaces that could not be listed (" + err.Error() + ")"
	}
	kvs, err := ctl.store.List(ctx, "clusters/")
	if err != nil {
		return "clusters that could not be listed (" + err.Error() + ")"
	}
	for _, kv := range kvs {
		var c model.Cluster
		if json.Unmarshal(kv.Value, &c) != nil || c.Desired == model.DesiredDeleted {
			continue
		}
		for _, r := range c.Spec.Roles {
			if r.Image == name {
				add(&cls, &otherCL, c.Project, c.Spec.Name)
				break
			}
		}
	}
	var parts []string
	phrase := func(kind string, names []string, others int) {
		sort.Strings(names)
		of := "of other projects"
		if others == 1 {
			of = "of another project"
		}
		switch {
		case len(names) == 0 && others == 1:
			parts = append(parts, "1 "+kind+" "+of)
		case len(names) == 0 && others > 1:
			parts = append(parts, fmt.Sprintf("%d %ss %s", others, kind, of))
		case len(names) > 0 && others > 0:
			parts = append(parts, fmt.Sprintf("%ss %s and %d %s", kind, strings.Join(names, ", "), others, of))
		case len(names) > 0:
			parts = append(parts, kind+"s "+strings.Join(names, ", "))
		}
	}
	phrase("workspace", wss, otherWS)
	phrase("cluster", cls, otherCL)
	return strings.Join(parts, " and ")
}

// dropBlobIfUnused removes the blob of hexDigest when no image record
// refers to it. The caller holds blobMu.
func (ctl *Controller) dropBlobIfUnused(ctx context.Context, hexDigest string) {
	imgs, err := ctl.images(ctx)
	if err != nil {
		ctl.log.Warn("image blob kept: images not listed", "digest", hexDigest, "err", err)
		return
	}
	p := ctl.blobPath(hexDigest)
	for _, img := range imgs {
		if img.Disk.SHA256 == hexDigest && img.Disk.Path == p {
			return
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		ctl.log.Warn("remove image blob", "path", p, "err", err)
		return
	}
	syncDir(filepath.Dir(p))
}

// SweepBlobs removes what a crash may have left in the blob directory:
// uploads not written to for an hour, and blobs that no image refers to
// and that have not changed for an hour (a push between putting its blob
// in place and storing its record is younger).
func (ctl *Controller) SweepBlobs(ctx context.Context) error {
	root := ctl.blobRoot()
	if root == "" {
		return nil
	}
	blobMu.Lock()
	defer blobMu.Unlock()
	imgs, err := ctl.images(ctx)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, img := range imgs {
		used[img.Disk.Path] = true
	}
	old := ctl.now().Add(-time.Hour)
	stale := func(p string) bool {
		st, err := os.Lstat(p)
		return err == nil && st.Mode().IsRegular() && st.ModTime().Before(old)
	}
	tmps, _ := filepath.Glob(filepath.Join(root, ".upload-*"))
	blobs, _ := filepath.Glob(filepath.Join(root, "sha256", "*"))
	for _, p := range tmps {
		if stale(p) {
			os.Remove(p)
		}
	}
	for _, p := range blobs {
		if !used[p] && stale(p) {
			ctl.log.Info("unreferenced image blob removed", "path", p)
			os.Remove(p)
		}
	}
	return nil
}
