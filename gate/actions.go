package gate

// Actions the surface data does not know: an extension's (harvest, dcat,
// scheming...) or a client's typo. The gate refuses them in read-only mode
// (deny by default), counts them as it sees them (a bounded map: the names
// come from clients), lists them (GET /-/ckanops/actions) and, when an
// operator asks (POST /-/ckanops/actions/learn), asks CKAN about each with
// a GET on /api/3/action/NAME and no parameters. For that request CKAN's
// action view (ckan/views/api.py, the same in 2.10, 2.11 and 2.12) looks
// the action up ("Bad request - Action name not known: NAME", 400), and
// reads the request data with try_url_params = the action's
// side_effect_free flag: a GET on an action that is not side_effect_free
// raises "Invalid request. Please use POST method for your request" (400)
// before the action runs. Only a side_effect_free action runs, as it
// would for any client's GET. What CKAN said is kept in [policy]
// learned_file, per CKAN version: a learned read passes in read-only
// mode, a learned write and an action CKAN does not know stay refused, and
// allow_actions / deny_actions still win.

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/atomicfile"
)

// Bounds of the map of unknown actions seen.
const (
	maxSeenActions   = 1000 // names kept; the least recently seen goes first
	maxActionNameLen = 100  // longer names are not counted (no CKAN action is that long)
	maxLearnAtOnce   = 200  // actions asked about in one learn call
)

// seenActions counts the unknown action names seen in traffic, the least
// recently seen dropped past maxSeenActions. Safe for concurrent use.
type seenActions struct {
	mu sync.Mutex
	ll *list.List // of *seenAction, most recent first
	m  map[string]*list.Element
}

type seenAction struct {
	name          string
	seen, refused int64
	last          time.Time
}

// validActionName is what CKAN action names are made of. Anything else is
// not counted (a client's garbage need not fill the map).
func validActionName(s string) bool {
	if s == "" || len(s) > maxActionNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// record counts one request for name; refused counts a refusal (the
// request was counted as seen already).
func (s *seenActions) record(name string, refused bool, t time.Time) {
	if !validActionName(name) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.ll, s.m = list.New(), map[string]*list.Element{}
	}
	el, ok := s.m[name]
	if !ok {
		if s.ll.Len() >= maxSeenActions {
			old := s.ll.Back()
			s.ll.Remove(old)
			delete(s.m, old.Value.(*seenAction).name)
		}
		el = s.ll.PushFront(&seenAction{name: name})
		s.m[name] = el
	} else {
		s.ll.MoveToFront(el)
	}
	a := el.Value.(*seenAction)
	if refused {
		a.refused++
	} else {
		a.seen++
	}
	a.last = t
}

// list returns a copy, most recent first.
func (s *seenActions) list() []seenAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ll == nil {
		return nil
	}
	out := make([]seenAction, 0, s.ll.Len())
	for el := s.ll.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*seenAction))
	}
	return out
}

// learnedFile is [policy] learned_file: what CKAN said, per CKAN version.
type learnedFile struct {
	Versions map[string]*learnedVersion `json:"versions"`
}

type learnedVersion struct {
	LearnedAt time.Time         `json:"learned_at"`
	Actions   map[string]string `json:"actions"` // name -> api.ActionRead, api.ActionWrite or api.ActionUnknown
	Answers   map[string]string `json:"answers,omitempty"`
}

// learned holds the learned file in memory. Safe for concurrent use.
type learned struct {
	path string

	mu   sync.Mutex
	file learnedFile
	err  error // why the file could not be read; nil when it could
}

func loadLearned(path string) *learned {
	l := &learned{path: path, file: learnedFile{Versions: map[string]*learnedVersion{}}}
	if path == "" {
		return l
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		l.err = err
	default:
		if err := json.Unmarshal(b, &l.file); err != nil {
			l.err = fmt.Errorf("%s is damaged: %w (remove it and learn again)", path, err)
		}
		if l.file.Versions == nil {
			l.file.Versions = map[string]*learnedVersion{}
		}
	}
	return l
}

// problem is why the learned file could not be read; nil when it could
// (or has been written since).
func (l *learned) problem() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// forVersion returns a copy of the learned actions of CKAN version v: the
// entry of v; with v unknown (""), the most recently learned entry. (A
// copy: store changes the entries while rules are built from them.)
func (l *learned) forVersion(v string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v != "" {
		if e := l.file.Versions[v]; e != nil {
			return maps.Clone(e.Actions)
		}
		return nil
	}
	var newest *learnedVersion
	for _, e := range l.file.Versions {
		if newest == nil || e.LearnedAt.After(newest.LearnedAt) {
			newest = e
		}
	}
	if newest == nil {
		return nil
	}
	return maps.Clone(newest.Actions)
}

// latest returns the most recently learned version's entry other than v,
// for relearning after an upgrade.
func (l *learned) latestOther(v string) (string, map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		best   string
		newest *learnedVersion
	)
	for ver, e := range l.file.Versions {
		if ver != v && (newest == nil || e.LearnedAt.After(newest.LearnedAt)) {
			best, newest = ver, e
		}
	}
	if newest == nil {
		return "", nil
	}
	return best, maps.Clone(newest.Actions)
}

// store records CKAN version v's answers and writes the file atomically.
func (l *learned) store(v string, answers []api.LearnedAction, t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.file.Versions[v]
	if e == nil {
		e = &learnedVersion{Actions: map[string]string{}, Answers: map[string]string{}}
		l.file.Versions[v] = e
	}
	if e.Answers == nil {
		e.Answers = map[string]string{}
	}
	e.LearnedAt = t
	for _, a := range answers {
		e.Actions[a.Name] = a.Class
		e.Answers[a.Name] = a.Answer
	}
	if l.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(l.file, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(l.path, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	l.err = nil
	return nil
}

// answer returns what CKAN answered about name for version v.
func (l *learned) answer(v, name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.file.Versions[v]; e != nil {
		return e.Answers[name]
	}
	return ""
}

// knows reports whether the rules in force know action name: the surface
// data, the policy's lists or a learned answer.
func (r *rules) knows(name string) bool {
	if _, ok := r.sf.Actions[name]; ok {
		return true
	}
	_, ok := r.known[name]
	return ok
}

// sawAction counts an action call of an action the rules do not know.
func (g *Gate) sawAction(name string, refused bool) {
	if name == "" || g.rules.Load().knows(name) {
		return
	}
	g.seen.record(name, refused, g.clock())
}

// actionList builds GET /-/ckanops/actions.
func (g *Gate) actionList() api.ActionList {
	r := g.rules.Load()
	out := api.ActionList{Site: g.opts.Site, Surface: r.info.Applied, CKANVersion: r.info.CKANVersion, Actions: []api.ActionInfo{}}
	seen := map[string]seenAction{}
	for _, s := range g.seen.list() {
		seen[s.name] = s
	}
	add := func(name, class, source string) {
		a := api.ActionInfo{Name: name, Class: class, Source: source}
		if s, ok := seen[name]; ok {
			a.Seen, a.Refused = s.seen, s.refused
			t := s.last
			a.LastSeen = &t
			delete(seen, name)
		}
		if source == api.SourceLearned {
			a.Note = g.learned.answer(r.info.CKANVersion, name)
		}
		out.Actions = append(out.Actions, a)
	}
	var names []string
	for n := range r.sf.Actions {
		names = append(names, n)
	}
	for n := range r.known {
		if _, ok := r.sf.Actions[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		class := api.ActionWrite
		if r.cl.Classify(http.MethodGet, nil, &url.URL{Path: "/api/3/action/" + n}).Pass() {
			class = api.ActionRead
		}
		source := api.SourceSurface
		if s, ok := r.known[n]; ok {
			source = s
			if source == api.SourceLearned && r.learnedClass[n] == api.ActionUnknown {
				class = api.ActionUnknown
			}
		}
		add(n, class, source)
	}
	// Unknown ones: first, most seen first.
	var unknown []api.ActionInfo
	for _, s := range seen {
		t := s.last
		unknown = append(unknown, api.ActionInfo{Name: s.name, Class: api.ActionUnknown, Source: api.SourceUnknown, Seen: s.seen, Refused: s.refused, LastSeen: &t})
	}
	sort.Slice(unknown, func(i, j int) bool {
		if unknown[i].Seen != unknown[j].Seen {
			return unknown[i].Seen > unknown[j].Seen
		}
		return unknown[i].Name < unknown[j].Name
	})
	out.Actions = append(unknown, out.Actions...)
	return out
}

// unknownActions are the names seen that no rule knows, most seen first
// (for the status).
func (g *Gate) unknownActions() []string {
	r := g.rules.Load()
	list := g.seen.list()
	sort.SliceStable(list, func(i, j int) bool { return list[i].seen > list[j].seen })
	var out []string
	for _, s := range list {
		if !r.knows(s.name) {
			out = append(out, s.name)
		}
	}
	return out
}

func (g *Gate) serveActions(w http.ResponseWriter, r *http.Request) {
	if _, aerr := g.authenticate(r); aerr != nil {
		writeAuthError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, g.actionList())
}

func (g *Gate) serveActionsLearn(w http.ResponseWriter, r *http.Request) {
	actor, aerr := g.authenticate(r)
	if aerr != nil {
		writeAuthError(w, aerr)
		return
	}
	res, err := g.Learn(r.Context(), actor)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Learn asks CKAN about every unknown action seen (at most
// maxLearnAtOnce), records the answers for CKAN's version, audits them
// and applies them. It fails when CKAN's version cannot be read (learning
// is per version) or the learned file cannot be written.
func (g *Gate) Learn(ctx context.Context, actor string) (api.ActionList, error) {
	var names []string
	for _, n := range g.unknownActions() {
		if len(names) == maxLearnAtOnce {
			break
		}
		names = append(names, n)
	}
	return g.learn(ctx, actor, names)
}

func (g *Gate) learn(ctx context.Context, actor string, names []string) (api.ActionList, error) {
	g.learnMu.Lock()
	defer g.learnMu.Unlock()
	version, err := g.readCKANVersion(ctx)
	if err != nil {
		return api.ActionList{}, fmt.Errorf("cannot learn: CKAN's version could not be read (what is learned holds for one version): %w", err)
	}
	answers := make([]api.LearnedAction, len(names))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			answers[i] = g.askCKAN(ctx, n)
		}()
	}
	wg.Wait()
	if len(answers) > 0 {
		if err := g.learned.store(version, answers, g.clock()); err != nil {
			return api.ActionList{}, fmt.Errorf("cannot keep what CKAN said: %w", err)
		}
	}
	var reads, writes, unknown []string
	for _, a := range answers {
		switch a.Class {
		case api.ActionRead:
			reads = append(reads, a.Name)
		case api.ActionWrite:
			writes = append(writes, a.Name)
		default:
			unknown = append(unknown, a.Name)
		}
	}
	g.audit(AuditEntry{Time: g.clock(), Event: "actions-learned", Actor: actor, To: version,
		Message: fmt.Sprintf("reads: %s; writes: %s; unknown: %s", orDash(reads), orDash(writes), orDash(unknown))})
	g.log.Info("actions learned from CKAN", "ckan_version", version, "reads", len(reads), "writes", len(writes), "unknown", len(unknown))
	g.reapplyRules()
	out := g.actionList()
	out.Learned = answers
	return out, nil
}

func orDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

// askCKAN asks CKAN (upstream, anonymously) about one action by a GET with
// no parameters: see the file's comment for why that runs nothing but a
// side_effect_free action.
func (g *Gate) askCKAN(ctx context.Context, name string) api.LearnedAction {
	out := api.LearnedAction{Name: name, Class: api.ActionUnknown}
	if !validActionName(name) {
		out.Answer = "not an action name"
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	u := *g.opts.Upstream
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/3/action/" + name
	u.RawQuery = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		out.Answer = err.Error()
		return out
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", GateUserAgent)
	res, err := g.opts.Transport.RoundTrip(req)
	if err != nil {
		out.Answer = "CKAN could not be asked: " + err.Error()
		return out
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	out.Class, out.Answer = judgeAnswer(res.StatusCode, b)
	return out
}

// judgeAnswer reads CKAN's answer to a GET on an action with no
// parameters. A 400 with a bare JSON string is _finish_bad_request: "use
// POST" (not side_effect_free: a write) or "Action name not known". An
// answer in the action envelope ({"success": ...}, whatever the status: the
// action ran and may have failed on the missing parameters or on
// authorization) means it ran: side_effect_free, a read. Anything else
// cannot be told, and the action stays unknown.
func judgeAnswer(status int, body []byte) (class, answer string) {
	var msg string
	if status == http.StatusBadRequest && json.Unmarshal(body, &msg) == nil {
		switch {
		case strings.Contains(msg, "Please use POST method"):
			return api.ActionWrite, "not side_effect_free: " + clipAnswer(msg)
		case strings.Contains(msg, "Action name not known"):
			return api.ActionUnknown, "CKAN does not know it: " + clipAnswer(msg)
		}
		return api.ActionUnknown, fmt.Sprintf("%d: %s", status, clipAnswer(msg))
	}
	var env struct {
		Success *bool `json:"success"`
		Help    string
	}
	if json.Unmarshal(body, &env) == nil && env.Success != nil {
		return api.ActionRead, fmt.Sprintf("side_effect_free: it ran (%d)", status)
	}
	return api.ActionUnknown, fmt.Sprintf("%d: %s", status, clipAnswer(string(body)))
}

func clipAnswer(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// relearnAfterUpgrade asks CKAN again, for its new version, about the
// actions learned for another version, when nothing is learned for this
// one yet.
func (g *Gate) relearnAfterUpgrade(ctx context.Context, version string) {
	if version == "" || g.learned.forVersion(version) != nil {
		return
	}
	from, acts := g.learned.latestOther(version)
	if acts == nil {
		return
	}
	names := make([]string, 0, len(acts))
	for n := range acts {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > maxLearnAtOnce {
		names = names[:maxLearnAtOnce]
	}
	g.log.Info("CKAN changed version: learning its actions again", "from", from, "to", version, "actions", len(names))
	if _, err := g.learn(ctx, "gate", names); err != nil {
		g.log.Warn("actions not learned again after the upgrade", "err", err.Error())
	}
}
