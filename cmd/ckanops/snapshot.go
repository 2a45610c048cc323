package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/ckanops/ckanops/runbook/snapshot"
)

func init() {
	register(&command{
		name:    "snapshot",
		summary: "check a snapshot a runbook wrote (snapshot verify DIR)",
		usage: `snapshot verify [--json] [--pg-restore PROGRAM] DIR
Re-reads every file of the snapshot against its manifest (size and sha256),
runs 'pg_restore --list' on each database dump and reads the storage tar
to its end. Runs on the host that holds the snapshot; needs no gate.

Exit status: 0 every file checks out; 1 a file does not; 2 bad usage or no
manifest.`,
		run: func(e *env, args []string) error {
			if len(args) == 0 || args[0] != "verify" {
				if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
					fs := newFlags(e, commands["snapshot"])
					return parse(e, fs, args)
				}
				return usageErr("want 'ckanops snapshot verify DIR'")
			}
			fs := newFlags(e, commands["snapshot"])
			asJSON := fs.Bool("json", false, "print the report as JSON")
			pgRestore := fs.String("pg-restore", snapshot.DefaultPGRestore, "the pg_restore program")
			if err := parse(e, fs, args[1:]); err != nil {
				return err
			}
			if fs.NArg() != 1 {
				return usageErr("give exactly one snapshot DIR")
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			rep, err := snapshot.Verify(ctx, fs.Arg(0), *pgRestore)
			if err != nil {
				return usageErr("%v", err)
			}
			if *asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				m := rep.Manifest
				fmt.Fprintf(e.stdout, "snapshot %s\nsite %s, CKAN %s, mode version %d, taken %s .. %s\nverdict: %s\n",
					rep.Dir, m.Site, m.CKANVersion, m.ModeVersion, m.Times.Started.Format("2006-01-02 15:04:05Z"), m.Times.Ended.Format("15:04:05Z"), m.Verdict)
				for _, c := range m.Changed {
					fmt.Fprintf(e.stdout, "  changed: %s\n", c)
				}
				for _, f := range rep.Files {
					if f.OK {
						fmt.Fprintf(e.stdout, "ok    %s\n", f.Name)
					} else {
						fmt.Fprintf(e.stdout, "FAIL  %s: %s\n", f.Name, f.Problem)
					}
				}
			}
			if !rep.OK {
				return &exitError{code: exitFail, err: errors.New("the snapshot does not match its manifest")}
			}
			return nil
		},
	})
}
