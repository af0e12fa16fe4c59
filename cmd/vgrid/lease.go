package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vgrid/api"
)

func newLeaseCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "lease",
		Aliases: []string{"leases"},
		Short:   "List, inspect and cancel the project's leases",
	}
	c.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	c.AddCommand(newLeaseExtendCmd(g))
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the project's leases (one per workspace run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			list, err := cl.Leases(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), api.LeaseList{Leases: list})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LEASE\tKIND\tSTATE\tHOSTS\tSTART\tEND\tREMAINING\tREASON")
			for _, l := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.Kind, l.State, hostsOf(l),
					when(l.Start, l.Planned), when(l.End, l.Planned), l.Remaining.D().Round(time.Second), dash(l.Reason))
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "get NAME",
		Short: "Show a lease (by workspace name or lease id)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			l, err := cl.GetLease(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printLease(cmd.OutOrStdout(), g.output, l)
		},
	}, &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a lease: its workspace stops (or never starts) and its slots are given back",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.dial()
			if err != nil {
				return err
			}
			l, err := cl.CancelLease(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printLease(cmd.OutOrStdout(), g.output, l)
		},
	})
	return c
}

func newCalendarCmd(g *globals) *cobra.Command {
	var hours, back float64
	var width int
	c := &cobra.Command{
		Use:   "calendar",
		Short: "Show the lease calendar as a text Gantt chart (admins see every project)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hours <= 0 || back < 0 {
				return fmt.Errorf("--hours must be positive and --back not negative")
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			now := time.Now()
			from := now.Add(-time.Duration(back * float64(time.Hour)))
			to := now.Add(time.Duration(hours * float64(time.Hour)))
			text, err := cl.Calendar(cmd.Context(), from, to, width)
			if err != nil {
				return err
			}
			if strings.TrimSpace(text) == "" {
				text = "(no hosts)\n"
			}
			_, err = io.WriteString(cmd.OutOrStdout(), text)
			return err
		},
	}
	c.Flags().Float64Var(&hours, "hours", 24, "how far ahead to show")
	c.Flags().Float64Var(&back, "back", 0, "how far back to show")
	c.Flags().IntVar(&width, "width", 72, "cells per row")
	return c
}

func printLease(out io.Writer, format string, l api.Lease) error {
	if format == "json" {
		return printJSON(out, l)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Lease", l.ID)
	row("Project", l.Project)
	row("Kind", l.Kind)
	state := l.State
	if l.Reason != "" {
		state += " (" + l.Reason + ")"
	}
	row("State", state)
	row("Hosts", hostsOf(l))
	row("Start", when(l.Start, l.Planned))
	row("End", when(l.End, l.Planned))
	row("Remaining", l.Remaining.D().Round(time.Second).String())
	if l.Suspensions > 0 || l.Requeues > 0 {
		row("Preempted", fmt.Sprintf("%d suspensions, %d requeues", l.Suspensions, l.Requeues))
	}
	row("Reserved", fmt.Sprintf("%.3f core-hours, %.3f GiB-hours", l.ReservedCoreHours, l.ReservedGiBHours))
	row("Used", fmt.Sprintf("%.1f CPU seconds (%.3f core-hours)", l.UsedCPUSeconds, l.UsedCoreHours))
	return tw.Flush()
}

func newUsageCmd(g *globals) *cobra.Command {
	var project, since string
	var all bool
	c := &cobra.Command{
		Use:   "usage",
		Short: "What projects reserved (core-hours, GiB-hours) and used (CPU time measured on the hosts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t time.Time
			if since != "" {
				var err error
				if t, err = time.Parse(time.RFC3339, since); err != nil {
					d, derr := time.ParseDuration(since)
					if derr != nil || d < 0 {
						return fmt.Errorf("--since: want an RFC 3339 time or a duration back from now (e.g. 24h)")
					}
					t = time.Now().Add(-d)
				}
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			u, err := cl.Usage(cmd.Context(), project, all, t)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), u)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROJECT\tLEASES\tRESERVED CORE-H\tRESERVED GIB-H\tUSED CPU-S\tUSED CORE-H\tUSED/RESERVED\tFAIR-SHARE CORE-H")
			for _, p := range u.Projects {
				ratio := "-"
				if p.ReservedCoreHours > 0 {
					ratio = fmt.Sprintf("%.0f%%", 100*p.UsedCoreHours/p.ReservedCoreHours)
				}
				fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.1f\t%.3f\t%s\t%.3f\n", p.Project, p.Leases, p.ReservedCoreHours,
					p.ReservedGiBHours, p.UsedCPUSeconds, p.UsedCoreHours, ratio, p.FairShareCoreHours)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&project, "project", "", "a project (admins: any; default: your own)")
	c.Flags().BoolVar(&all, "all", false, "every project (admins)")
	c.Flags().StringVar(&since, "since", "", "from this time (RFC 3339) or this long ago (e.g. 24h)")
	c.Flags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	return c
}

func hostsOf(l api.Lease) string {
	if len(l.Hosts) == 0 {
		return "-"
	}
	return strings.Join(l.Hosts, ",")
}

func when(t time.Time, planned bool) string {
	if t.IsZero() {
		return "-"
	}
	s := t.Local().Format(time.DateTime)
	if planned {
		s += " (planned)"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newLeaseExtendCmd(g *globals) *cobra.Command {
	var by time.Duration
	var until string
	c := &cobra.Command{
		Use:   "extend NAME (--by DURATION | --until TIME)",
		Short: "Lengthen a lease (--by 2h), shorten it (--by -30m) or move its end (--until 2026-12-01T18:00:00Z)",
		Long: `Lengthen a lease, or shorten it, while it waits or runs. A longer lease is
granted when its hosts can hold the longer window without breaking any
admitted reservation; otherwise the answer names the lease in the way and
the longest extension possible now. Shortening gives the time back to the
queue at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t time.Time
			switch {
			case until != "" && by != 0:
				return fmt.Errorf("give --by or --until, not both")
			case until != "":
				var err error
				if t, err = time.Parse(time.RFC3339, until); err != nil {
					return fmt.Errorf("--until: want an RFC 3339 time such as 2026-12-01T18:00:00Z")
				}
			case by == 0:
				return fmt.Errorf("give --by DURATION (negative to shorten) or --until TIME")
			}
			cl, err := g.dial()
			if err != nil {
				return err
			}
			l, err := cl.ExtendLease(cmd.Context(), args[0], by, t)
			if err != nil {
				return err
			}
			return printLease(cmd.OutOrStdout(), g.output, l)
		},
	}
	c.Flags().DurationVar(&by, "by", 0, "how much longer (negative: shorter)")
	c.Flags().StringVar(&until, "until", "", "the new end (RFC 3339)")
	return c
}
