package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"vgrid/api"
	"vgrid/internal/client"
	"vgrid/internal/model"
)

// addImageRepoCmds adds the image repository's commands (list, get,
// push, pull, delete) to the image command.
func addImageRepoCmds(c *cobra.Command, g *globals) {
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(imageList(g), imageGet(g), imagePush(g), imagePull(g), imageDelete(g))
}

func imageList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the images the project sees: the public ones and its own (admin: all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			imgs, err := cl.Images(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.ImageList{Images: imgs})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPROJECT\tFORMAT\tSIZE\tDIGEST\tTAGS")
			for _, im := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", im.Name, imageOwner(im), im.DiskFormat,
					model.ByteSize(im.Size).Human(), shortDigest(im.Digest), dash(strings.Join(im.Tags, ",")))
			}
			return tw.Flush()
		},
	}
}

func imageGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			img, err := cl.GetImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printImage(cmd.OutOrStdout(), g.output, img)
		},
	}
}

func imagePush(g *globals) *cobra.Command {
	var format, like string
	var public bool
	var tags []string
	c := &cobra.Command{
		Use:   "push NAME FILE",
		Short: "Upload a disk image (raw or qcow2) into the project's images",
		Long: `Upload a disk image file as the project's image NAME, booted by firmware
(a cloud image with cloud-init, for example). The file is hashed here and
streamed; the control plane checks the digest and the file's format with
qemu-img (a qcow2 with a backing file is refused) and keeps it by content.
Pushing again under the same name replaces the image (not with other
content while workspaces use it). --public lets every project see and use
it; others see only their own.`,
		Example: "  vgrid image push debian-12 debian-12-genericcloud-amd64.qcow2 --tag debian --tag 12",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			if format == "" {
				f, err := detectFormat(cmd.Context(), file)
				if err != nil {
					return err
				}
				format = f
			}
			if format != "raw" && format != "qcow2" {
				return fmt.Errorf("--format: want raw or qcow2, got %q", format)
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() || st.Size() == 0 {
				return fmt.Errorf("%s: not a regular, non-empty file", file)
			}
			// The digest first: the control plane refuses a body that
			// arrives different.
			sum, err := hashFile(f, newProgress(cmd.ErrOrStderr(), "hash "+filepath.Base(file)))
			if err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			pb := newProgress(cmd.ErrOrStderr(), "push "+name)
			img, err := cl.PushImage(cmd.Context(), name, f, st.Size(), client.PushOptions{Format: format, Public: public, Tags: tags, SHA256: sum, Like: like, Progress: pb.update})
			pb.finish(err == nil)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), img)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s pushed: %s %s, %s virtual, %s\n", img.Name, img.DiskFormat,
				model.ByteSize(img.Size).Human(), img.MinDisk.Human(), img.Digest)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&format, "format", "", "raw or qcow2 (default: detected with qemu-img info)")
	f.BoolVar(&public, "public", false, "every project may see and use the image")
	f.StringArrayVar(&tags, "tag", nil, "a tag of the image (repeatable)")
	f.StringVar(&like, "like", "", "boot it the way image NAME boots (a direct-boot image's kernel, initrd and command line), for a root filesystem without a boot loader")
	return c
}

func imagePull(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pull NAME FILE",
		Short: "Download an image's disk into FILE, checked against its digest",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			cl, err := g.dial()
			if err != nil {
				return err
			}
			// Into a temporary file beside FILE, renamed once verified:
			// FILE never holds a partial or wrong download.
			tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".part-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			pb := newProgress(cmd.ErrOrStderr(), "pull "+name)
			img, err := cl.PullImage(cmd.Context(), name, tmp, pb.update)
			pb.finish(err == nil)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), img)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s pulled to %s: %s %s, %s (verified)\n", img.Name, file, img.DiskFormat,
				model.ByteSize(img.Size).Human(), img.Digest)
			return nil
		},
	}
}

func imageDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete one of the project's images (refused while workspaces or clusters use it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			if err := cl.DeleteImage(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s deleted\n", args[0])
			return nil
		},
	}
}

// imageOwner is an image's project as the list shows it.
func imageOwner(im model.Image) string {
	owner := im.Project
	if owner == "" {
		owner = "(operator)"
	}
	if im.Public {
		owner += ", public"
	}
	return owner
}

// shortDigest is the first 12 hex digits of a "sha256:<hex>" digest.
func shortDigest(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return dash(h)
}

// printImage prints one image for a person, or as JSON.
func printImage(out io.Writer, format string, im model.Image) error {
	if format == "json" {
		return printJSON(out, im)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", im.Name)
	row("Project", imageOwner(im))
	row("Boot", im.Boot)
	row("Format", im.DiskFormat)
	row("Size", fmt.Sprintf("%s (%d bytes)", model.ByteSize(im.Size).Human(), im.Size))
	row("Min disk", im.MinDisk.Human())
	row("Digest", dash(im.Digest))
	row("Tags", dash(strings.Join(im.Tags, ", ")))
	row("Created", im.CreatedAt.Local().Format(time.DateTime))
	if !im.UploadedAt.IsZero() {
		row("Uploaded", im.UploadedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// detectFormat asks qemu-img what format file has.
func detectFormat(ctx context.Context, file string) (string, error) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return "", fmt.Errorf("--format not given and qemu-img not found to detect it: give --format raw or --format qcow2")
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", file).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("detect the format of %s: %s (or give --format)", file, msg)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return "", fmt.Errorf("detect the format of %s: qemu-img info gave no format (give --format)", file)
	}
	return info.Format, nil
}

// hashFile returns the hex SHA-256 of f from where it is, reporting to pb.
func hashFile(f *os.File, pb *progress) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var done int64
	for {
		n, err := f.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			done += int64(n)
			pb.update(done, st.Size())
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			pb.finish(false)
			return "", err
		}
	}
	pb.finish(true)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// progress draws a transfer's progress on a terminal: bytes done of the
// total, percent and rate, redrawn at most every redrawEvery; elsewhere
// (a file, a pipe) one line when it ends. No progress-bar module is in
// go.mod, and this needs a few lines only.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	label   string
	start   time.Time
	last    time.Time
	done    int64
	total   int64
	drawn   bool
	stopped bool
	now     func() time.Time
}

const redrawEvery = 200 * time.Millisecond

func newProgress(w io.Writer, label string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	return &progress{w: w, tty: tty, label: label, start: time.Now(), now: time.Now}
}

// update takes the bytes done of total.
func (p *progress) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	if !p.tty || p.stopped {
		return
	}
	if now := p.now(); !p.drawn || now.Sub(p.last) >= redrawEvery {
		p.last, p.drawn = now, true
		fmt.Fprintf(p.w, "\r%s\033[K", p.line())
	}
}

// finish draws the last line (ok: the transfer completed).
func (p *progress) finish(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	line := p.line()
	if !ok {
		line += " (stopped)"
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\033[K\n", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// line is the progress as text: label, bar, done/total, percent, rate.
func (p *progress) line() string {
	el := p.now().Sub(p.start).Seconds()
	rate := int64(0)
	if el > 0 {
		rate = int64(float64(p.done) / el)
	}
	pct := 0.0
	if p.total > 0 {
		pct = float64(p.done) * 100 / float64(p.total)
	}
	return fmt.Sprintf("%s %s %s/%s %5.1f%% %s/s", p.label, bar(p.done, p.total, 24),
		model.ByteSize(p.done).Human(), model.ByteSize(p.total).Human(), pct, model.ByteSize(rate).Human())
}
