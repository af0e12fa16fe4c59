package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
	"vgrid/internal/model"
)

func wsSave(g *globals) *cobra.Command {
	var image string
	var public, noWait bool
	var tags []string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "save NAME --image NEW [--public] [--tag T]... [--no-wait]",
		Short: "Save a workspace's disk as a new image of your project, to create workspaces from elsewhere",
		Long: `Save a workspace's disk as a standalone image (qcow2, its base image flattened
in) in the image repository, owned by your project. A running guest is asked
to sync its page cache to disk and its disk is copied at one point in time
while it goes on running: the image is crash-consistent (as if the guest
had crashed right after the sync). A stopped workspace's disk is copied as
its guest left it; a suspended one's as of the suspend. The workspace's host
makes the copy and uploads it. The command shows the progress and ends with
the image's name, digest and size; --no-wait returns once the save is
recorded (follow it with vgrid workspace events NAME).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if image == "" {
				return fmt.Errorf("--image: required: the name of the new image")
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			s, err := cl.SaveWorkspace(ctx, name, api.SaveRequest{Image: image, Public: public, Tags: tags})
			if err != nil {
				return err
			}
			if noWait {
				return printSave(cmd.OutOrStdout(), g.output, s)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "saving %s as image %s on host %s\n", name, image, s.Node)
			wctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			line := &redraw{w: cmd.ErrOrStderr()}
			s, err = cl.WaitSave(wctx, name, s.ID, time.Second, func(s model.Save) { line.show(describeSave(s)) })
			line.end()
			if err != nil {
				return fmt.Errorf("waiting for the save of %s: %w (it goes on; see vgrid workspace events %s)", name, err, name)
			}
			if s.State == model.SaveFailed {
				return fmt.Errorf("save of %s as image %s failed: %s", name, s.Image, s.Error)
			}
			return printSave(cmd.OutOrStdout(), g.output, s)
		},
	}
	c.Flags().StringVar(&image, "image", "", "name of the new image (a-z, 0-9, '.', '-'; unique across the grid)")
	c.Flags().BoolVar(&public, "public", false, "let every project see and use the image")
	c.Flags().StringArrayVar(&tags, "tag", nil, "a label for the image (repeat for more)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return once the save is recorded")
	c.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long to wait")
	return c
}

// describeSave is a save's progress as one line: a bar, the percent and
// the bytes of the disk copied.
func describeSave(s model.Save) string {
	p := s.Progress
	switch {
	case s.State == model.SavePending:
		return fmt.Sprintf("save %s: waiting for host %s", s.ID, s.Node)
	case s.State == model.SaveRunning && p.Total > 0 && p.Done >= p.Total:
		return fmt.Sprintf("save %s: %s 100%% %s copied; uploading", s.ID, bar(p.Total, p.Total, 20), model.ByteSize(p.Total).Human())
	case p.Total > 0:
		return fmt.Sprintf("save %s: %s %3d%% %s of %s", s.ID, bar(p.Done, p.Total, 20), p.Done*100/p.Total,
			model.ByteSize(p.Done).Human(), model.ByteSize(p.Total).Human())
	}
	return fmt.Sprintf("save %s: %s", s.ID, s.State)
}

// redraw keeps one line on a terminal, redrawn in place.
type redraw struct {
	w     io.Writer
	width int
	drawn bool
}

func (r *redraw) show(s string) {
	pad := max(r.width-len(s), 0)
	fmt.Fprintf(r.w, "\r%s%*s", s, pad, "")
	r.width, r.drawn = len(s), true
}

func (r *redraw) end() {
	if r.drawn {
		fmt.Fprintln(r.w)
	}
}

// printSave prints a save: its image's name, digest and size once done.
func printSave(w io.Writer, output string, s model.Save) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	switch s.State {
	case model.SaveDone:
		_, err := fmt.Fprintf(w, "image:       %s\ndigest:      %s\nsize:        %s (%d bytes)\nconsistency: %s\ntook:        %s\n",
			s.Image, s.Digest, model.ByteSize(s.Bytes).Human(), s.Bytes, s.Consistency, s.Took.D().Round(time.Millisecond))
		return err
	default:
		_, err := fmt.Fprintf(w, "save:   %s\nimage:  %s\nstate:  %s\nhost:   %s\n", s.ID, s.Image, s.State, s.Node)
		return err
	}
}
