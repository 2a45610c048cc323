package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/internal/human"
)

// Exit statuses of `ckanops check`.
const (
	exitCheckWarn = 1 // a check warns
	exitCheckFail = 2 // a check failed, or the report could not be had
)

// checkFailure gives an error of `check` the exit status of a failed
// check, unless it carries its own (bad usage).
func checkFailure(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitCheckFail, err: err}
}

// checkError is `check --json`'s answer when there is no report.
type checkError struct {
	Site  string `json:"site"`
	Error string `json:"error"`
}

// runCheck asks the gate for the site's checks report and prints it.
func runCheck(e *env, s siteClient, asJSON bool) error {
	rep, err := s.client.Health(e.context())
	if err != nil {
		if asJSON {
			if jerr := writeIndented(e, checkError{Site: s.site.Name, Error: err.Error()}); jerr != nil {
				return jerr
			}
		}
		return &exitError{code: exitCheckFail, err: fmt.Errorf("site %s: no checks report: %w", s.site.Name, err)}
	}
	if rep.Site == "" {
		rep.Site = s.site.Name
	}
	if asJSON {
		if err := writeIndented(e, rep); err != nil {
			return err
		}
	} else {
		printChecks(e, *rep)
	}
	var failed, warned []string
	for _, c := range rep.Checks {
		switch {
		case c.IsNotConfigured(), c.Status == api.CheckOK:
		case c.Status == api.CheckFail:
			failed = append(failed, c.Name)
		default:
			warned = append(warned, c.Name)
		}
	}
	switch rep.Overall() {
	case api.CheckOK:
		return nil
	case api.CheckFail:
		return &exitError{code: exitCheckFail, err: fmt.Errorf("site %s: %d check(s) failed: %s", s.site.Name, len(failed), strings.Join(failed, ", "))}
	case api.CheckWarn:
		return &exitError{code: exitCheckWarn, err: fmt.Errorf("site %s: %d check(s) warn: %s", s.site.Name, len(warned), strings.Join(warned, ", "))}
	}
	return &exitError{code: exitCheckWarn, err: fmt.Errorf("site %s: the gate reported no check", s.site.Name)}
}

func writeIndented(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printChecks prints the report as a table: NAME STATUS SUMMARY.
func printChecks(e *env, rep api.Report) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tSUMMARY")
	var oldest time.Time
	for _, c := range rep.Checks {
		status := c.Status
		if c.IsNotConfigured() {
			status = "-"
		} else if !c.ObservedAt.IsZero() && (oldest.IsZero() || c.ObservedAt.Before(oldest)) {
			oldest = c.ObservedAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, status, oneLine(c.Summary, 400))
	}
	tw.Flush()
	if !oldest.IsZero() {
		if age := time.Since(oldest); age >= time.Second {
			fmt.Fprintf(e.stdout, "%s: checked %s ago\n", rep.Site, human.Ago(age))
		}
	}
}
