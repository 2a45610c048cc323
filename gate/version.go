package gate

// Which CKAN surface the gate applies. With [policy] ckan_version = "auto"
// the gate reads CKAN's version from status_show (at start, every minute,
// and right after a runbook's migrate step) and applies that version's
// surface. Until the version is known, while a migration runs, and when
// the version cannot be read, it applies the strictest combination of
// every known surface: a request passes only if it is a read in every
// known version. A CKAN newer than any known surface gets the newest, with
// a warning in status, health and the console.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/gate/classify"
	"github.com/ckanops/ckanops/internal/surface"
)

// VersionAuto is [policy] ckan_version's default: follow CKAN's version.
const VersionAuto = "auto"

// Timings of the version watch.
var (
	versionInterval = time.Minute     // how often CKAN's version is read again
	migrateInterval = 2 * time.Second // how often the runbook is looked at for a migration
)

// rules is the classifier the gate applies, and why.
type rules struct {
	cl   *classify.Classifier
	info api.SurfaceInfo
}

// surfaces builds and keeps one classifier per surface (and the
// strictest), all under the same policy.
type surfaces struct {
	policy classify.Policy

	mu    sync.Mutex
	built map[string]builtRules
}

type builtRules struct {
	cl   *classify.Classifier
	name string // the surface's Version
}

// strictestKey names the strictest combination among the built ones.
const strictestKey = "strictest"

// classifier returns the classifier of a surface version (or
// strictestKey), and the surface's name.
func (s *surfaces) classifier(version string) (*classify.Classifier, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.built[version]; ok {
		return b.cl, b.name, nil
	}
	var sf *surface.Surface
	if version == strictestKey {
		all := make([]*surface.Surface, 0, len(surface.Versions))
		for _, v := range surface.Versions {
			all = append(all, surface.MustLoad(v))
		}
		sf = surface.Strictest(all...)
	} else {
		var err error
		if sf, err = surface.Load(version); err != nil {
			return nil, "", err
		}
	}
	cl, err := classify.New(sf, s.policy)
	if err != nil {
		return nil, "", err
	}
	if s.built == nil {
		s.built = map[string]builtRules{}
	}
	s.built[version] = builtRules{cl, sf.Version}
	return cl, sf.Version, nil
}

// initialRules are the rules a new gate starts with: the pinned surface
// (Options.Surface, or [policy] ckan_version), or, with "auto", the
// strictest until CKAN's version is read.
func (g *Gate) initialRules() error {
	o := g.opts
	switch {
	case o.CKANVersion == VersionAuto:
		return g.applyRules(strictestKey, "", "CKAN's version is not known yet", "")
	case o.CKANVersion != "":
		if !slices.Contains(surface.Versions, o.CKANVersion) {
			return fmt.Errorf("gate: [policy] ckan_version %q: no surface for it (have %s, or \"auto\")", o.CKANVersion, strings.Join(surface.Versions, ", "))
		}
		return g.applyRules(o.CKANVersion, "", "pinned by [policy] ckan_version", "")
	}
	cl, err := classify.New(o.Surface, o.Policy)
	if err != nil {
		return err
	}
	g.rules.Store(&rules{cl: cl, info: api.SurfaceInfo{Applied: o.Surface.Version, Reason: "pinned"}})
	return nil
}

// applyRules makes the surface version (or strictestKey) the one the gate
// applies; it logs a change.
func (g *Gate) applyRules(version, ckanVersion, reason, warning string) error {
	cl, name, err := g.surfaces.classifier(version)
	if err != nil {
		return err
	}
	info := api.SurfaceInfo{Applied: name, CKANVersion: ckanVersion, Reason: reason, Warning: warning}
	old := g.rules.Swap(&rules{cl: cl, info: info})
	if old == nil || old.info.Applied != info.Applied || old.info.Warning != info.Warning {
		if warning != "" {
			g.log.Warn("CKAN surface applied", "surface", name, "ckan_version", ckanVersion, "reason", reason, "warning", warning)
		} else {
			g.log.Info("CKAN surface applied", "surface", name, "ckan_version", ckanVersion, "reason", reason)
		}
	}
	return nil
}

// classifier is the classifier in force.
func (g *Gate) classifier() *classify.Classifier { return g.rules.Load().cl }

// surfaceInfo says which surface is applied and why.
func (g *Gate) surfaceInfo() api.SurfaceInfo { return g.rules.Load().info }

// decideRules applies the surface for what is known: CKAN's version (""
// when unknown), read or not, and whether a migration runs.
func (g *Gate) decideRules(ckanVersion string, readErr error, migrating bool) {
	var err error
	switch {
	case migrating:
		err = g.applyRules(strictestKey, ckanVersion, "a runbook's migrate step runs: CKAN's version may change under it", "")
	case ckanVersion == "":
		why := "CKAN's version is not known yet"
		if readErr != nil {
			why = "CKAN's version could not be read: " + readErr.Error()
		}
		err = g.applyRules(strictestKey, "", why, "")
	default:
		v, exact := surface.Match(ckanVersion)
		switch {
		case v == "":
			err = g.applyRules(strictestKey, ckanVersion, "status_show reports a version no surface matches", fmt.Sprintf("CKAN %q is not a version ckanops can read: the strictest rules apply", ckanVersion))
		case exact:
			err = g.applyRules(v, ckanVersion, "status_show reports CKAN "+ckanVersion, "")
		default:
			err = g.applyRules(v, ckanVersion, "status_show reports CKAN "+ckanVersion+", which has no surface of its own",
				fmt.Sprintf("surface %s applied to CKAN %s; unknown actions are refused", v, ckanVersion))
		}
	}
	if err != nil {
		g.log.Error("CKAN surface not applied", "err", err.Error())
	}
}

// WatchVersion follows CKAN's version until ctx ends, when [policy]
// ckan_version is "auto"; otherwise it returns at once.
func (g *Gate) WatchVersion(ctx context.Context) {
	if g.opts.CKANVersion != VersionAuto {
		return
	}
	var (
		version   string
		readErr   error
		migrating bool
		nextRead  time.Time // zero: now
	)
	tick := time.NewTicker(migrateInterval)
	defer tick.Stop()
	for {
		m := g.migrating()
		if migrating && !m {
			nextRead = time.Time{} // the migration ended: read the version now
		}
		migrating = m
		if !migrating && !time.Now().Before(nextRead) {
			v, err := g.readCKANVersion(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				version, readErr = v, nil
				nextRead = time.Now().Add(versionInterval)
			} else {
				// Not known: the strictest rules, and another try soon.
				version, readErr = "", err
				nextRead = time.Now().Add(5 * migrateInterval)
			}
		}
		g.decideRules(version, readErr, migrating)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// migrating says whether the site's runbook is in its migrate step (or
// stopped in it: CKAN may be half upgraded).
func (g *Gate) migrating() bool {
	e := g.runbook.Load()
	if e == nil {
		return false
	}
	rb, err := e.Current()
	if err != nil || !rb.Active() || rb.Step != api.StepMigrate {
		return false
	}
	switch rb.StepByName(api.StepMigrate).State {
	case api.StepRunning, api.StepFailed, api.StepInterrupted:
		return true
	}
	return false
}

// readCKANVersion asks CKAN (upstream, not through the gate) for
// status_show's ckan_version.
func (g *Gate) readCKANVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := *g.opts.Upstream
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/3/action/status_show"
	u.RawQuery = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	res, err := g.opts.Transport.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("status_show: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status_show answered %s", res.Status)
	}
	var body struct {
		Success bool `json:"success"`
		Result  struct {
			CKANVersion string `json:"ckan_version"`
		} `json:"result"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("status_show: %w", err)
	}
	if !body.Success || body.Result.CKANVersion == "" {
		return "", fmt.Errorf("status_show gave no ckan_version")
	}
	return body.Result.CKANVersion, nil
}
