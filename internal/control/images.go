package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
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

// receiveBlob copies exactly size bytes of body into a new temporary file
// of dir while hashing them. It returns the file's path and its hex
// SHA-256; on error the file is removed. A body shorter or longer than
// size is refused.
func receiveBlob(dir string, body io.Reader, size int64) (string, string, error) {
	f, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return "", "", fmt.Errorf("blob directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for n < size {
		want := int64(len(buf))
		if size-n < want {
			want = size - n
		}
		k, rerr := body.Read(buf[:want])
		if k > 0 {
			h.Write(buf[:k])
			if _, werr := f.Write(buf[:k]); werr != nil {
				return "", "", fmt.Errorf("write upload: %w", werr)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if errors.Is(rerr, context.Canceled) {
				return "", "", rerr
			}
			return "", "", invalid("invalid image push", api.FieldError{Field: "body",
				Reason: fmt.Sprintf("reading failed after %d of %d bytes: %v", n, size, rerr)})
		}
	}
	if n < size {
		return "", "", invalid("invalid image push", api.FieldError{Field: "body",
			Reason: fmt.Sprintf("ended after %d bytes, %d announced", n, size)})
	}
	var one [1]byte
	if k, _ := io.ReadFull(body, one[:]); k > 0 {
		return "", "", invalid("invalid image push", api.FieldError{Field: "body",
			Reason: fmt.Sprintf("longer than the %d bytes announced", size)})
	}
	if err := f.Sync(); err != nil {
		return "", "", fmt.Errorf("write upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("write upload: %w", err)
	}
	ok = true
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// imageInfo is what the control plane takes from qemu-img info.
type imageInfo struct {
	Format      string
	VirtualSize int64
	Backing     string // backing file, "" when none
	DataFile    string // a qcow2's external data file, "" when none
}

// parseImageInfo decodes the JSON of `qemu-img info --output=json`.
func parseImageInfo(b []byte) (imageInfo, error) {
	var raw struct {
		Format          string `json:"format"`
		VirtualSize     *int64 `json:"virtual-size"`
		BackingFilename string `json:"backing-filename"`
		FullBacking     string `json:"full-backing-filename"`
		FormatSpecific  *struct {
			Type string `json:"type"`
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return imageInfo{}, fmt.Errorf("qemu-img info: %w", err)
	}
	if raw.Format == "" {
		return imageInfo{}, errors.New("qemu-img info: no format")
	}
	if raw.VirtualSize == nil || *raw.VirtualSize < 0 {
		return imageInfo{}, errors.New("qemu-img info: no virtual size")
	}
	out := imageInfo{Format: raw.Format, VirtualSize: *raw.VirtualSize, Backing: raw.BackingFilename}
	if out.Backing == "" {
		out.Backing = raw.FullBacking
	}
	if fs := raw.FormatSpecific; fs != nil {
		out.DataFile = fs.Data.DataFile
	}
	return out, nil
}

// inspectImage checks an uploaded file's header itself (formats that
// would make qemu-img open other files are refused before it runs), then
// asks qemu-img what the file is.
func inspectImage(ctx context.Context, path string) (imageInfo, error) {
	head := make([]byte, 4096)
	f, err := os.Open(path)
	if err != nil {
		return imageInfo{}, err
	}
	k, _ := io.ReadFull(f, head)
	f.Close()
	if fe := sniffHeader(head[:k]); len(fe) > 0 {
		return imageInfo{}, invalid("invalid image push", fe...)
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuImg, "info", "--output=json", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limitedBuffer{b: &stdout, max: 1 << 20}
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	if err := cmd.Run(); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return imageInfo{}, ctx.Err()
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return imageInfo{}, invalid("invalid image push", api.FieldError{Field: "body",
				Reason: fmt.Sprintf("qemu-img info took longer than %s on it", inspectTimeout)})
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return imageInfo{}, fmt.Errorf("run %s: %w", qemuImg, err)
		}
		msg := strings.TrimSpace(strings.ReplaceAll(stderr.String(), path, "the upload"))
		return imageInfo{}, invalid("invalid image push", api.FieldError{Field: "body",
			Reason: "not a readable disk image: qemu-img: " + msg})
	}
	info, err := parseImageInfo(stdout.Bytes())
	if err != nil {
		return imageInfo{}, invalid("invalid image push", api.FieldError{Field: "body", Reason: "not a readable disk image: " + err.Error()})
	}
	return info, nil
}

// checkImageInfo compares what qemu-img found with what was declared.
func checkImageInfo(info imageInfo, format string, size int64) []api.FieldError {
	var f fieldErrs
	if info.Format != format {
		f.add("format", "the file is a %s image, not %s", quoteShort(info.Format), format)
	}
	if info.Backing != "" {
		f.add("body", "an image with a backing file (%s) is refused: it could read files of the hosts; flatten it first (qemu-img convert)", quoteShort(info.Backing))
	}
	if info.DataFile != "" {
		f.add("body", "an image with an external data file (%s) is refused: it could read files of the hosts", quoteShort(info.DataFile))
	}
	switch {
	case info.VirtualSize <= 0:
		f.add("body", "the image's virtual size is 0")
	case info.VirtualSize > int64(MaxImageMinDisk):
		f.add("body", "the image's virtual size %d is more than 1024Ti", info.VirtualSize)
	case format == "raw" && info.Format == "raw" && info.VirtualSize != size:
		f.add("body", "a raw image of %d bytes has a virtual size of %d", size, info.VirtualSize)
	}
	return f
}

// sniffHeader refuses, from its first bytes alone, a file that qemu-img
// would open together with other files: a qcow2 with a backing file, an
// external data file or encryption; and the formats whose headers or
// descriptors name other files (QED, VMDK, VHDX). It is pure.
func sniffHeader(h []byte) []api.FieldError {
	var f fieldErrs
	be32 := func(off int) uint32 {
		if len(h) < off+4 {
			return 0
		}
		return uint32(h[off])<<24 | uint32(h[off+1])<<16 | uint32(h[off+2])<<8 | uint32(h[off+3])
	}
	be64 := func(off int) uint64 { return uint64(be32(off))<<32 | uint64(be32(off+4)) }
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")):
		version := be32(4)
		if version < 2 {
			f.add("format", "a qcow (version %d) image is not accepted: convert it to qcow2 or raw", version)
			break
		}
		if len(h) < 72 {
			f.add("body", "a qcow2 header cut short (%d bytes)", len(h))
			break
		}
		if be64(8) != 0 || be32(16) != 0 {
			f.add("body", "a qcow2 image with a backing file is refused: it could read files of the hosts; flatten it first (qemu-img convert)")
		}
		if be32(32) != 0 {
			f.add("body", "an encrypted qcow2 image is not accepted")
		}
		if version >= 3 && len(h) >= 80 && be64(72)&(1<<2) != 0 {
			f.add("body", "a qcow2 image with an external data file is refused: it could read files of the hosts")
		}
	case bytes.HasPrefix(h, []byte("QED\x00")):
		f.add("format", "the file is a qed image, not accepted (raw or qcow2)")
	case bytes.HasPrefix(h, []byte("KDMV")), bytes.HasPrefix(h, []byte("COWD")),
		bytes.Contains(h[:min(len(h), 512)], []byte("# Disk DescriptorFile")):
		f.add("format", "the file is a vmdk image, not accepted (raw or qcow2)")
	case bytes.HasPrefix(h, []byte("vhdxfile")):
		f.add("format", "the file is a vhdx image, not accepted (raw or qcow2)")
	}
	return f
}

// limitedBuffer keeps at most max bytes written to it and drops the rest.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
