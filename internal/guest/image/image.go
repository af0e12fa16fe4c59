package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"vgrid/internal/model"
)

// File names inside an image directory.
const (
	VmlinuxFile  = "vmlinux"
	InitrdFile   = "initrd.img"
	RootfsFile   = "rootfs.img"
	ManifestFile = "image.json"
)

// Cmdline is the kernel command line of a built image. The driver appends
// the host-specific tsc_early_khz=.
const Cmdline = "console=ttyS0 root=/dev/vda rw panic=-1 quiet cryptomgr.notests"

// Defaults of Options.
const (
	DefaultName       = "vgrid-guest"
	DefaultBootDir    = "/boot"
	DefaultBusybox    = "/bin/busybox"
	DefaultRootfsSize = 256 * model.MiB
)

// Options configure Build. Only OutDir and AgentBinary are required.
type Options struct {
	OutDir string
	Name   string // default "vgrid-guest"; also the guest's default hostname
	// KernelImage is a bzImage; default the newest /boot/vmlinuz-*-cloud-amd64.
	KernelImage string
	// ModulesDir defaults to /lib/modules/<release of KernelImage>.
	ModulesDir string
	// Modules are loaded by the initrd; default DefaultModules.
	Modules []string
	// Busybox is a static x86-64 busybox (default /bin/busybox); it is run
	// once on the build host with --list-full to find its applets.
	Busybox     string
	AgentBinary string // a static vgrid-guest-agent
	RootfsSize  model.ByteSize
	Log         io.Writer // progress; nil discards
}

func (o *Options) fill() error {
	if o.OutDir == "" {
		return fmt.Errorf("no output directory")
	}
	if o.AgentBinary == "" {
		return fmt.Errorf("no guest agent binary")
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.KernelImage == "" {
		k, _, err := FindKernel(DefaultBootDir)
		if err != nil {
			return err
		}
		o.KernelImage = k
	}
	if o.ModulesDir == "" {
		o.ModulesDir = filepath.Join("/lib/modules", KernelRelease(o.KernelImage))
	}
	if len(o.Modules) == 0 {
		o.Modules = DefaultModules
	}
	if o.Busybox == "" {
		o.Busybox = DefaultBusybox
	}
	if o.RootfsSize == 0 {
		o.RootfsSize = DefaultRootfsSize
	}
	if o.RootfsSize < 16*model.MiB {
		return fmt.Errorf("rootfs size %d is below 16 MiB", o.RootfsSize)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	var err error
	if o.OutDir, err = filepath.Abs(o.OutDir); err != nil {
		return err
	}
	for _, p := range []string{o.KernelImage, o.Busybox, o.AgentBinary, filepath.Join(o.ModulesDir, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	return nil
}

// Build writes a bootable guest image into opt.OutDir: the vmlinux
// extracted from the kernel, a gzip'ed cpio initrd, a raw ext4 rootfs and
// image.json. The three boot files are byte-for-byte reproducible from the
// same inputs. The returned Image boots directly (-M microvm, PVH).
func Build(ctx context.Context, opt Options) (model.Image, error) {
	if err := opt.fill(); err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(opt.Log, format+"\n", args...) }

	start := time.Now()
	bz, err := os.ReadFile(opt.KernelImage)
	if err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	vmlinux, err := ExtractVmlinux(ctx, bz)
	if err != nil {
		return model.Image{}, fmt.Errorf("build image from %s: %w", opt.KernelImage, err)
	}
	if err := writeFileAtomic(filepath.Join(opt.OutDir, VmlinuxFile), vmlinux, 0o644); err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	logf("vmlinux: %d bytes from %s (%s)", len(vmlinux), opt.KernelImage, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	initrd, err := buildInitrd(opt.Busybox, opt.ModulesDir, opt.Modules)
	if err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(opt.OutDir, InitrdFile), initrd, 0o644); err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	logf("initrd: %d bytes (%s)", len(initrd), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := buildRootfs(ctx, opt); err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	logf("rootfs: %d bytes ext4 (%s)", opt.RootfsSize, time.Since(start).Round(time.Millisecond))

	img := model.Image{
		Name:       opt.Name,
		Boot:       "direct",
		DiskFormat: "raw",
		Cmdline:    Cmdline,
		MinDisk:    opt.RootfsSize,
	}
	refs := map[string]*model.ImageFile{RootfsFile: &img.Disk, VmlinuxFile: {}, InitrdFile: {}}
	for name, ref := range refs {
		if *ref, err = describeFile(filepath.Join(opt.OutDir, name)); err != nil {
			return model.Image{}, fmt.Errorf("build image: %w", err)
		}
	}
	img.Kernel, img.Initrd = refs[VmlinuxFile], refs[InitrdFile]
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(opt.OutDir, ManifestFile), append(b, '\n'), 0o644); err != nil {
		return model.Image{}, fmt.Errorf("build image: %w", err)
	}
	return img, nil
}

// buildRootfs stages the root filesystem next to the output and turns it
// into rootfs.img.
func buildRootfs(ctx context.Context, opt Options) error {
	applets, err := busyboxApplets(ctx, opt.Busybox)
	if err != nil {
		return err
	}
	staging, err := os.MkdirTemp(opt.OutDir, ".rootfs-staging-")
	if err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	defer os.RemoveAll(staging)
	paths, err := stage(staging, rootfsLayout(opt.Busybox, opt.AgentBinary, applets, opt.Name))
	if err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	tmp := filepath.Join(opt.OutDir, "."+RootfsFile+".tmp")
	defer os.Remove(tmp)
	if err := makeExt4(ctx, tmp, staging, paths, int64(opt.RootfsSize), "vgrid-root", fsUUID("vgrid-rootfs:"+opt.Name)); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(opt.OutDir, RootfsFile)); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	return nil
}

// LoadManifest reads dir/image.json. File paths are rebased onto dir, so
// an image directory can be moved or copied.
func LoadManifest(dir string) (model.Image, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return model.Image{}, fmt.Errorf("load manifest: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(abs, ManifestFile))
	if err != nil {
		return model.Image{}, fmt.Errorf("load manifest: %w", err)
	}
	var img model.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return model.Image{}, fmt.Errorf("load manifest %s: %w", filepath.Join(abs, ManifestFile), err)
	}
	if img.Disk.Path == "" {
		return model.Image{}, fmt.Errorf("load manifest %s: no disk", filepath.Join(abs, ManifestFile))
	}
	img.Disk.Path = filepath.Join(abs, filepath.Base(img.Disk.Path))
	if img.Kernel != nil {
		img.Kernel.Path = filepath.Join(abs, filepath.Base(img.Kernel.Path))
	}
	if img.Initrd != nil {
		img.Initrd.Path = filepath.Join(abs, filepath.Base(img.Initrd.Path))
	}
	return img, nil
}

// describeFile hashes a file for the manifest.
func describeFile(path string) (model.ImageFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return model.ImageFile{}, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return model.ImageFile{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return model.ImageFile{Path: path, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
