package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"vgrid/internal/model"
)

// newImageImportCmd registers an ordinary disk image (for example a cloud
// image in qcow2 with cloud-init), booted by firmware; the context reaches
// it as a NoCloud seed.
func newImageImportCmd(g *globals) *cobra.Command {
	var disk, format, kernel, initrd, cmdline string
	c := &cobra.Command{
		Use:   "import NAME --disk FILE",
		Short: "Register a disk image (e.g. a cloud image with cloud-init) from a file in the control plane's image directories",
		Long: `Register a disk image (e.g. a cloud image with cloud-init) booted by firmware,
or by --kernel. Its files must be on the control plane's host, inside one of its
image directories: <data-dir>/images/<name>/ or a directory given to vgrid up or
vgrid server with --image. The control plane refuses any other path: a file
registered as an image can be downloaded by every host agent.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if disk == "" {
				return fmt.Errorf("--disk is required")
			}
			abs, err := filepath.Abs(disk)
			if err != nil {
				return err
			}
			info, err := qemuImgInfo(abs)
			if err != nil {
				return err
			}
			if format == "" {
				format = info.Format
			}
			df, err := imageFile(abs)
			if err != nil {
				return err
			}
			img := model.Image{Name: args[0], Boot: "firmware", Disk: df, DiskFormat: format,
				MinDisk: model.ByteSize(info.VirtualSize), Cmdline: cmdline}
			if kernel != "" {
				img.Boot = "direct"
				kf, err := imageFile(kernel)
				if err != nil {
					return err
				}
				img.Kernel = &kf
				if initrd != "" {
					inf, err := imageFile(initrd)
					if err != nil {
						return err
					}
					img.Initrd = &inf
				}
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			out, err := cl.RegisterImage(cmd.Context(), img)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s registered: %s %s, %s virtual, boot %s\n", out.Name, out.DiskFormat,
				model.ByteSize(out.Disk.Size), out.MinDisk, out.Boot)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&disk, "disk", "", "the disk image file")
	f.StringVar(&format, "format", "", "raw or qcow2 (default: what qemu-img says)")
	f.StringVar(&kernel, "kernel", "", "boot this kernel directly instead of the disk's boot loader")
	f.StringVar(&initrd, "initrd", "", "initrd for --kernel")
	f.StringVar(&cmdline, "cmdline", "", "kernel command line for --kernel")
	return c
}

type imgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

func qemuImgInfo(path string) (imgInfo, error) {
	var info imgInfo
	out, err := exec.Command("qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		return info, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info, nil
}

func imageFile(path string) (model.ImageFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return model.ImageFile{}, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return model.ImageFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return model.ImageFile{}, err
	}
	return model.ImageFile{Path: abs, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}
