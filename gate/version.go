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
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

// GateUserAgent is the User-Agent of the requests the gate itself sends
// to CKAN (reading its version, learning actions), so that CKAN's logs
// tell them from the traffic the gate forwards.
const GateUserAgent = "ckanops-gate"

// Timings of the version watch.
var (
	versionInterval = time.Minute     // how often CKAN's version is read again
	migrateInterval = 2 * time.Second // how often the runbook is looked at for a migration
)

// rules is the classifier the gate applies, and why.
type rules struct {
	key  string // the surfaces key it was built from (a version, strictestKey or givenKey)
	cl   *classify.Classifier
	sf   *surface.Surface
	info api.SurfaceInfo
	// known are the actions the policy or learning classes, beyond the
	// surface: name -> api.SourcePolicy or api.SourceLearned.
	known map[string]string
	// learnedClass is what CKAN said of each learned action.
	learnedClass map[string]string
}

// surfaces builds and keeps one classifier per surface (and the
// strictest), all under the same policy and the learned reads of their
// time (reset when learning changes them).
type surfaces struct {
	policy classify.Policy
	given  *surface.Surface // Options.Surface, for givenKey
	// learnedRoot is the root path learned from status_show, used when
	// policy.RootPath is not set; a root path classify refuses is
	// dropped (logged by learnRoot).
	learnedRoot string

	mu    sync.Mutex
	built map[string]*rules
}

// Keys of surfaces besides the versions.
const (
	strictestKey = "strictest" // the strictest combination of every known surface
	givenKey     = "given"     // Options.Surface
)

// load returns the surface of key.
func (s *surfaces) load(key string) (*surface.Surface, error) {
	switch key {
	case strictestKey:
		all := make([]*surface.Surface, 0, len(surface.Versions))
		for _, v := range surface.Versions {
			all = append(all, surface.MustLoad(v))
		}
		return surface.Strictest(all...), nil
	case givenKey:
		return s.given, nil
	}
	return surface.Load(key)
}

// build returns the rules of key (a surface version, strictestKey or
// givenKey) with the learned actions (name -> class), built once until
// reset.
func (s *surfaces) build(key, ckanVersion string, learned map[string]string) (*rules, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cacheKey := key + "|" + ckanVersion + "|" + s.learnedRoot // what is learned holds for one CKAN version
	if r, ok := s.built[cacheKey]; ok {
		return r, nil
	}
	sf, err := s.load(key)
	if err != nil {
		return nil, err
	}
	p := s.policy
	if p.RootPath == "" {
		p.RootPath = s.learnedRoot
	}
	r := &rules{key: key, sf: sf, known: map[string]string{}, learnedClass: map[string]string{}}
	if key != strictestKey {
		// Learned reads pass as allow_actions do (deny_actions still
		// wins); a learned write or unknown stays what it was: a write.
		p.AllowActions = slices.Clone(p.AllowActions)
		for name, class := range learned {
			if _, inSurface := sf.Actions[name]; inSurface {
				continue // the surface data knows better
			}
			r.known[name] = api.SourceLearned
			r.learnedClass[name] = class
			if _, denied := classify.DeniedByDefault(name); class == api.ActionRead && !denied {
				p.AllowActions = append(p.AllowActions, name)
			}
		}
	}
	for _, n := range s.policy.AllowActions {
		r.known[n] = api.SourcePolicy
	}
	for _, n := range s.policy.DenyActions {
		r.known[n] = api.SourcePolicy
	}
	if r.cl, err = classify.New(sf, p); err != nil {
		return nil, err
	}
	if s.built == nil {
		s.built = map[string]*rules{}
	}
	s.built[cacheKey] = r
	return r, nil
}

// reset forgets every built rule set (what was learned changed).
func (s *surfaces) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.built = nil
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
	return g.applyRules(givenKey, "", "pinned", "")
}

// applyRules makes the surface of key the one the gate applies; it logs a
// change.
func (g *Gate) applyRules(key, ckanVersion, reason, warning string) error {
	var learned map[string]string
	if key != strictestKey {
		learned = g.learned.forVersion(ckanVersion)
	}
	r, err := g.surfaces.build(key, ckanVersion, learned)
	if err != nil {
		return err
	}
	info := api.SurfaceInfo{Applied: r.sf.Version, CKANVersion: ckanVersion, Reason: reason, Warning: warning, RootPath: r.cl.RootPath()}
	nr := *r
	nr.info = info
	old := g.rules.Swap(&nr)
	if old == nil || old.info.Applied != info.Applied || old.info.Warning != info.Warning {
		if warning != "" {
			g.log.Warn("CKAN surface applied", "surface", info.Applied, "ckan_version", ckanVersion, "reason", reason, "warning", warning)
		} else {
			g.log.Info("CKAN surface applied", "surface", info.Applied, "ckan_version", ckanVersion, "reason", reason)
		}
	}
	return nil
}

// reapplyRules rebuilds the rules in force (learning changed what they
// allow).
func (g *Gate) reapplyRules() {
	g.surfaces.reset()
	r := g.rules.Load()
	if err := g.applyRules(r.key, r.info.CKANVersion, r.info.Reason, r.info.Warning); err != nil {
		g.log.Error("rules not rebuilt", "err", err.Error())
	}
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
// ckan_version is "auto", and learns the root path from status_show when
// [gate] root_path is not set; otherwise it returns at once.
func (g *Gate) WatchVersion(ctx context.Context) {
	auto, learnRoot := g.opts.CKANVersion == VersionAuto, g.opts.RootPath == ""
	if !auto && !learnRoot {
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
			st, err := g.readStatusShow(ctx)
			v := st.version
			if ctx.Err() != nil {
				return
			}
			if err == nil && learnRoot {
				g.learnRoot(st.root)
			}
			if err == nil {
				if v != version && version != "" {
					go g.relearnAfterUpgrade(ctx, v)
				}
				version, readErr = v, nil
				nextRead = time.Now().Add(versionInterval)
			} else {
				// Not known: the strictest rules, and another try soon.
				version, readErr = "", err
				nextRead = time.Now().Add(5 * migrateInterval)
			}
		}
		if auto {
			g.decideRules(version, readErr, migrating)
		}
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
	st, err := g.readStatusShow(ctx)
	return st.version, err
}

// statusShow is what the gate reads of CKAN's status_show.
type statusShow struct {
	version string
	// root is the root path CKAN's answer shows: the path of its help URL
	// before /api/3/action/help_show (CKAN builds it with url_for and
	// _external, which adds ckan.root_path: ckan/views/api.py,
	// ckan/lib/helpers.py _local_url), else the path of site_url (which
	// CKAN's config declaration says must not hold it); "/" none; ""
	// not known.
	root string
}

// readStatusShow asks CKAN for status_show: at upstream, and, when that
// is not found and a root path is known, below it (a web server between
// the gate and CKAN that strips the prefix).
func (g *Gate) readStatusShow(ctx context.Context) (statusShow, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, status, err := g.getStatusShow(ctx, "")
	if status == http.StatusNotFound {
		if root := g.rootPath(); root != "" {
			st, _, err = g.getStatusShow(ctx, root)
		}
	}
	return st, err
}

func (g *Gate) getStatusShow(ctx context.Context, root string) (statusShow, int, error) {
	u := *g.opts.Upstream
	u.Path = strings.TrimSuffix(u.Path, "/") + root + "/api/3/action/status_show"
	u.RawQuery = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return statusShow{}, 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", GateUserAgent)
	res, err := g.opts.Transport.RoundTrip(req)
	if err != nil {
		return statusShow{}, 0, fmt.Errorf("status_show: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return statusShow{}, res.StatusCode, fmt.Errorf("status_show answered %s", res.Status)
	}
	var body struct {
		Help    string `json:"help"`
		Success bool   `json:"success"`
		Result  struct {
			CKANVersion string `json:"ckan_version"`
			SiteURL     string `json:"site_url"`
		} `json:"result"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		return statusShow{}, res.StatusCode, fmt.Errorf("status_show: %w", err)
	}
	if !body.Success || body.Result.CKANVersion == "" {
		return statusShow{}, res.StatusCode, fmt.Errorf("status_show gave no ckan_version")
	}
	return statusShow{version: body.Result.CKANVersion, root: rootFromStatus(body.Help, body.Result.SiteURL)}, res.StatusCode, nil
}

// rootFromStatus reads the root path off status_show's help URL, else
// off site_url's path; "" when neither says.
func rootFromStatus(help, siteURL string) string {
	if u, err := url.Parse(help); err == nil {
		if p, ok := strings.CutSuffix(u.Path, "/api/3/action/help_show"); ok {
			return cmp.Or(p, "/")
		}
	}
	if u, err := url.Parse(siteURL); err == nil && strings.Trim(u.Path, "/") != "" {
		return "/" + strings.Trim(u.Path, "/")
	}
	return ""
}

// rootPath is the root path in force: [gate] root_path, else the one
// learned; "" none.
func (g *Gate) rootPath() string {
	return g.classifier().RootPath()
}

// learnRoot applies the root path status_show showed, when [gate]
// root_path is not set and it changed. One that classify refuses (a CKAN
// route, say) is ignored, with a warning: logins under it are then
// refused, never a write passed.
func (g *Gate) learnRoot(root string) {
	if root == "" {
		return // status_show did not say
	}
	if root == "/" {
		root = ""
	}
	g.surfaces.mu.Lock()
	same := g.surfaces.learnedRoot == root
	g.surfaces.mu.Unlock()
	if same {
		return
	}
	if root != "" {
		if _, err := classify.New(g.rules.Load().sf, classify.Policy{RootPath: root}); err != nil {
			g.log.Warn("root path from status_show not used: set [gate] root_path", "root_path", root, "err", err.Error())
			return
		}
	}
	g.surfaces.mu.Lock()
	g.surfaces.learnedRoot = root
	g.surfaces.mu.Unlock()
	g.log.Info("root path learned from status_show", "root_path", cmp.Or(root, "/"))
	g.reapplyRules() // forgets the rules built, with the old root
}
