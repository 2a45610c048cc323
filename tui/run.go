package tui

import (
	"context"
	"errors"
	"fmt"
	"os"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
)

// Run opens the console on the terminal (the alternate screen) for every
// site of sites, and returns when the operator quits (q or ctrl+c) or ctx
// ends. Unset Options take sites.toml's [console] values; $NO_COLOR turns
// colour off. Options.OnQuit, if set, gets Model.QuitSummary once the
// terminal is restored.
func Run(ctx context.Context, sites *config.Sites, opts Options) error {
	if sites == nil || len(sites.Sites) == 0 {
		return errors.New("tui: no sites to show: add a [[site]] to sites.toml")
	}
	if opts.Refresh <= 0 {
		opts.Refresh = sites.Defaults.Refresh.Duration
	}
	if os.Getenv("NO_COLOR") != "" {
		opts.NoColor = true
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "ckanops-console"
	}
	m := New(SitesFromConfig(sites, ckanclient.Options{UserAgent: opts.UserAgent}), opts)
	defer m.Close()
	popts := []tea.ProgramOption{tea.WithContext(ctx)}
	if opts.NoColor {
		popts = append(popts, tea.WithColorProfile(colorprofile.Ascii))
	}
	_, err := tea.NewProgram(m, popts...).Run()
	if opts.OnQuit != nil {
		opts.OnQuit(m.QuitSummary())
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.Is(err, tea.ErrProgramKilled):
		return nil // the caller ended the console
	case errors.Is(err, tea.ErrInterrupted):
		return nil
	}
	return fmt.Errorf("tui: %w", err)
}
