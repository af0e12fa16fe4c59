package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"vgrid/internal/controlplane"
	"vgrid/internal/store/bolt"
)

func newStoreCmd() *cobra.Command {
	var dataDir string
	c := &cobra.Command{
		Use:   "store",
		Short: "Check, back up and restore the control plane's store",
		Long: fmt.Sprintf(`The control plane keeps its state (projects, tokens, workspaces, leases)
in one file, <data-dir>/store.db. At every start vgrid checks it, refuses a
damaged one or a missing one where vgrid ran before, and backs it up into
<data-dir>/backups before it writes anything (keeping the newest %d).

  vgrid store check [FILE]     check the store, or a backup file
  vgrid store backup FILE      write a consistent copy, also while vgrid runs
  vgrid store restore FILE     put a backup in place (with vgrid stopped)
  vgrid store reset --yes      start anew with an empty store (vgrid stopped)

See docs/operations-store.md.`, controlplane.KeepBackups),
	}
	c.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data directory of the control plane")

	c.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Check the store (or a backup FILE): every page, key, value and log entry",
		Long: `Check the store file and change nothing. While vgrid runs it holds the
store, so the check is of a consistent copy that the running vgrid takes for
it (kept with the backups). The exit status is 1 if the store is damaged,
missing where vgrid ran before, or not the store this data directory had.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				rep, err := bolt.Check(args[0])
				printReport(cmd.OutOrStdout(), rep, "")
				return err
			}
			rep, online, err := controlplane.CheckStore(cmd.Context(), dataDir)
			printReport(cmd.OutOrStdout(), rep, online)
			return err
		},
	})

	c.AddCommand(&cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the store to FILE, also while vgrid runs",
		Long: fmt.Sprintf(`Write a consistent copy of the store, as of one moment, to FILE: a store
file that 'vgrid store check' and 'vgrid store restore' take. FILE appears
whole and checked, or not at all.

If vgrid is stopped the copy is read from the store file. If vgrid runs
(it holds the store's lock), the running vgrid takes the copy on request
over <data-dir>/backup.sock, into <data-dir>/backups (kept among the
newest %d), and this command copies it to FILE.`, controlplane.KeepBackups),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, online, err := controlplane.BackupStore(cmd.Context(), dataDir, args[0])
			if err != nil {
				return err
			}
			how := "read from the file: no vgrid is running"
			if online {
				how = "taken by the running vgrid"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "store %s backed up to %s (%s): revision %d, %d keys, %d bytes\n",
				controlplane.StorePath(dataDir), args[0], how, rep.Revision, rep.Keys, rep.Size)
			return nil
		},
	})

	c.AddCommand(&cobra.Command{
		Use:   "restore FILE",
		Short: "Put the backup FILE in place of the store (vgrid must be stopped)",
		Long: `Check the backup FILE and put a copy of it in place of <data-dir>/store.db.
The file that was there, damaged or not, is kept beside it as
store.db.before-restore-<UTC time>; FILE itself is left as it is. A damaged
backup is refused, and so is a restore while vgrid runs: stop it first
('vgrid down', or stop its service), then start it again after the restore.
What changed after the backup was taken is not in it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := controlplane.RestoreStore(dataDir, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "store %s restored from %s: revision %d, %d keys\n",
				controlplane.StorePath(dataDir), args[0], res.Report.Revision, res.Report.Keys)
			if res.Aside != "" {
				fmt.Fprintf(out, "the file that was there is kept as %s\n", res.Aside)
			}
			fmt.Fprintln(out, "start vgrid again (vgrid up, or vgrid server)")
			return nil
		},
	})

	var yes bool
	reset := &cobra.Command{
		Use:   "reset",
		Short: "Set the store aside and start anew with an empty one (vgrid must be stopped)",
		Long: `Set <data-dir>/store.db aside (as store.db.reset-<UTC time>), damaged or
not, and put a new, empty store in its place. The next start then makes a
new default project, admin token and join token: every project, token and
workspace of the old store is forgotten, and guests still running are no
longer known. Only for starting anew on purpose; to get the state back,
restore a backup instead ('vgrid store restore').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes {
				return errors.New("vgrid store reset forgets every project, token and workspace of " +
					controlplane.StorePath(dataDir) + " (the file is kept aside): add --yes if that is what you mean; " +
					"to get them back instead, restore a backup from " + controlplane.BackupDir(dataDir) +
					" with `vgrid store restore FILE`")
			}
			aside, rep, err := controlplane.ResetStore(dataDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "store %s reset: a new, empty store (ID %s)\n", controlplane.StorePath(dataDir), rep.ID)
			if aside != "" {
				fmt.Fprintf(out, "the old file is kept as %s\n", aside)
			}
			fmt.Fprintln(out, "the next start makes a new default project, admin token and join token")
			return nil
		},
	}
	reset.Flags().BoolVar(&yes, "yes", false, "yes, forget everything the store held")
	c.AddCommand(reset)
	return c
}

// printReport prints what a check found; online names the copy checked
// for a running vgrid.
func printReport(w io.Writer, rep bolt.Report, online string) {
	if rep.Path == "" || rep.Size == 0 && rep.OK() {
		return // nothing was read; the error says why
	}
	state := "sound"
	if !rep.OK() {
		state = "DAMAGED"
	}
	fmt.Fprintf(w, "store %s: %s\n", rep.Path, state)
	if online != "" {
		fmt.Fprintf(w, "  checked: a copy the running vgrid took just now, %s\n", online)
	}
	if rep.PageSize > 0 {
		if rep.OK() {
			fmt.Fprintf(w, "  revision %d, %d keys, %d log entries, ID %s\n", rep.Revision, rep.Keys, rep.LogEntries, orNone(rep.ID))
		}
		fmt.Fprintf(w, "  file: %d bytes, %d pages of %d bytes (%d free), transaction %d\n",
			rep.Size, rep.Pages, rep.PageSize, rep.FreePages, rep.TxID)
	}
	for _, s := range rep.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", s)
	}
	for _, s := range rep.Problems {
		fmt.Fprintf(w, "  problem: %s\n", s)
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none yet)"
	}
	return s
}
