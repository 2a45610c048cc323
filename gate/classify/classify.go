// Package classify decides whether one HTTP request to CKAN is a read, which
// may pass while the site is in read-only maintenance mode, or a write, which
// the gate must refuse, and says why in a short reason for logs, metrics and
// the audit trail.
//
// It implements "What counts as a write (read-only mode)" in
// docs/architecture.md, with its facts (action names,
// side_effect_free flags, URL rules) taken from internal/surface.
//
// What it must not do: no I/O of any kind, no logging, no clock. It never
// reads a request body, so no body (chunked, compressed, multipart, or a
// JSON body naming another action) can change a decision; the decision rests
// on the method, the method-override headers, the Upgrade header and the
// URL path alone. The query string is never consulted. A Classifier is
// immutable after New and safe for concurrent use; Classify allocates
// nothing on the paths that pass.
//
// # The request judged is the request routed
//
// A decision holds only if CKAN routes the very method and path judged
// here. The gate (package gate, forward.go) makes sure of it when it
// forwards: it drops every request header whose name contains '_' (as
// nginx does by default: gunicorn maps a SCRIPT_NAME header onto the WSGI
// variable, and in the CGI environ Foo_Bar and Foo-Bar collide), and the
// headers that servers and middlewares use to re-route a request
// (X-Original-URL, X-Rewrite-URL, X-Forwarded-Prefix, X-Script-Name,
// Script-Name, Path-Info and the like) unless a trusted proxy sent them.
// It forwards no request trailers. gate/wsgi_test.go checks, against real
// gunicorn and uWSGI, that the path a WSGI app routes is the path judged.
//
// # Rules
//
// Deny by default. Obfuscation may only ever cause a refusal, never a pass.
//
// The path is the one the client sent (URL.RawPath when set, which must
// decode to URL.Path), decoded once. A path that still holds a
// percent-escape after that one decode (double encoding), a control
// character, a backslash, an encoded '?' or '#', invalid UTF-8, a Unicode
// format character or an ASCII look-alike ('／', '∕', '．', fullwidth forms),
// more than 4096 bytes or 64 segments, or a URL with a scheme other than
// http or https, is a write. Readings of the path are then judged: the
// literal one (split on '/', as Werkzeug routes it), the same without its
// trailing slash, and the normalised one (repeated slashes merged, dot
// segments resolved, any ";params" and a trailing slash dropped), and the
// cleaned one (slashes merged and dot segments resolved as path.Clean does,
// ";params" kept, so that "/api//..;/action/x" is also read as
// "/api/..;/action/x"), and the bare one (";params" dropped, nothing else
// changed: "/api;/../action/x" is also "/api/../action/x"). CKAN
// strips a leading locale segment before routing ("/fr/api/3/action/x" is
// "/api/3/action/x"), and a site may be mounted under a path prefix, so
// every reading is also judged with its leading segments dropped: if any of
// these readings names a write, the request is a write. Naming a write
// means:
//
//   - an action call, "/api/action/NAME" or "/api/V/action/NAME" for any
//     single segment V (Werkzeug's int converter routes "03" and non-ASCII
//     digits too), whose action is not read-safe: read-safe means
//     side_effect_free in the surface data, or listed in
//     Policy.AllowActions, and not in Policy.DenyActions. Unknown actions are
//     writes; get_site_user is a write by default (it creates the site user
//     when missing). DenyActions beats AllowActions, which beats the
//     defaults. An action call is judged by its action whatever the method:
//     CKAN runs write actions on HEAD;
//   - a path that would be an action call if its "api" and "action"
//     segments were spelt in another case (CKAN routes are case-sensitive,
//     so this is only caution);
//   - a path matching a deny_get pattern (matched case-insensitively).
//
// A method-override header (X-HTTP-Method-Override, X-HTTP-Method,
// X-Method-Override; the name matched case-insensitively and with '_' for
// '-', every value and every comma-separated token of every copy of the
// header) only makes a request stricter: it is judged by the least safe of
// its real method and the methods the headers name. Methods are
// case-sensitive, as Go's net/http keeps them: "get" is an unknown method.
//
// A request with an Upgrade header (WebSocket, h2c), whatever its value, is
// a write: once the protocol switches, the bytes on the connection are
// never classified. The gate admits it only in live mode, counts it among
// the writes in flight while its tunnel is open, and closes the tunnel when
// the site leaves live mode.
//
// Then:
//
//   - PUT, PATCH and DELETE never pass; any other method but GET, HEAD,
//     OPTIONS and POST is a write;
//   - GET, HEAD and OPTIONS pass (Read);
//   - POST passes only when it names a read-safe action call (Read), a login
//     or logout path, "/user/login", "/login_generic", "/user/_logout",
//     "/user/logout" (Login), or "/util/redirect" (a redirect only) or a path
//     in Policy.AllowPosts (Read). It must
//     name it in both the literal and the normalised reading, either
//     directly or after a first segment shaped like a CKAN locale ("fr",
//     "pt_BR", "zh_Hant_TW", never a first segment of a CKAN route such as
//     "api"), so that "/fr/user/login" is the login it is in CKAN while
//     "/user/login/" or "/api/action//package_show" are refused. With a
//     root path (Policy.RootPath, below) it may also name it after the
//     root path's segments, again with or without a locale segment after
//     them: "/data/user/login", "/data/fr/user/login".
//   - "/_tracking" (also after a locale segment, and both under the root
//     path) is Tracking, whatever the method: page-view analytics, a
//     database write that the gate answers with 204 in read-only and never
//     forwards.
//
// # Root path
//
// CKAN may be mounted below "/" (ckan.root_path = "/data/{{LANG}}"). In
// CKAN 2.10, 2.11 and 2.12 alike (ckan/config/middleware/flask_app.py,
// make_flask_stack; common_middleware.py, RootPathMiddleware) CKAN itself
// never strips the prefix: RootPathMiddleware empties SCRIPT_NAME and
// CKAN routes PATH_INFO, which the web server in front (nginx
// "location /data/ { proxy_pass http://ckan/; }", uWSGI's mount) has
// already stripped of the prefix; I18nMiddleware then strips a locale
// segment (handle_i18n, in ckan/views/__init__.py before 2.12). The prefix
// is only put back when CKAN builds URLs (ckan/lib/helpers.py, _local_url:
// root_path with "{{LANG}}" replaced by the locale, or dropped with its
// slash for the default one), so its pages link to "/data/dataset/x" and
// "/data/fr/dataset/x", and its forms post to "/data/user/login".
// (The web server strips it before CKAN sees it: "/data/user/login"
// reaching CKAN as it is would be a 404.)
//
// Policy.RootPath is that prefix without "{{LANG}}" ("/data"). It only
// widens what a POST may name: a target also passes as the root path's
// segments, then an optional locale segment, then the target. The prefix
// matches whole segments exactly, in case too ("/database/user/login" and
// "/Data/user/login" are not under "/data"). New refuses a root path that
// CKAN would route itself, should a path under it reach CKAN unstripped:
// one whose first segment, or second after a locale-shaped first, is the
// first segment of a CKAN route ("/dataset", "/fr/api"). Nothing else
// changes: writes are already found under any prefix, since every reading
// is also judged with its leading segments dropped, and a target under
// the prefix must hold in every reading, as above. A root path whose
// locale comes first ("/{{LANG}}/data") or which goes on after it
// ("/my/path/{{LANG}}/foo") is not understood: its POST targets with a
// locale are refused, never passed.
//
// # Patterns
//
// Policy.AllowPosts and Policy.DenyGet entries are paths: either exact
// ("/datatables/filtered-download") or ending in "/*", which matches one or
// more further segments ("/group/follow/*" matches "/group/follow/abc" and
// "/group/follow/abc/def" but not "/group/follow"). Patterns are matched
// against the readings of the path, segment by segment; they are decoded
// paths, with no percent-escapes, dot segments, ';', '?', '#', '\', empty
// segments or trailing slash, and '*' only as the whole last segment. AllowPosts matches exactly as written
// (case-sensitive, from the first segment, or after a locale segment,
// and both under the root path: write them without the root path);
// DenyGet matches in any case and at any depth, and refuses the path for
// every method. AllowPosts does not apply to action calls: use
// AllowActions.
//
// The built-in deny_get patterns are the GET routes that write in CKAN
// 2.10: "/group/follow/*", "/group/unfollow/*", "/organization/follow/*",
// "/organization/unfollow/*". They are exactly the rules that accept GET in
// one version of the surface data and only POST in the other; the tests
// check that this stays so.
package classify

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ckanops/ckanops/internal/surface"
)

// Class is what a request is, for read-only mode. The zero Class is Write,
// so a zero Decision refuses.
type Class int

const (
	// Write must be refused in read-only mode.
	Write Class = iota
	// Read may pass.
	Read
	// Login is a POST to login or logout: it writes only the session, and
	// may pass.
	Login
	// Tracking is a request to /_tracking (page-view analytics, a database
	// write): the gate answers it with 204 in read-only, never forwards it.
	Tracking
)

func (c Class) String() string {
	switch c {
	case Write:
		return "write"
	case Read:
		return "read"
	case Login:
		return "login"
	case Tracking:
		return "tracking"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Decision is the classifier's answer for one request.
type Decision struct {
	Class Class
	// Action is the CKAN action name when the path is an action call, ""
	// otherwise.
	Action string
	// Reason is short, for logs, metrics and the audit log.
	Reason string
}

// Pass reports whether the request may be forwarded in read-only mode: true
// for Read and Login.
func (d Decision) Pass() bool { return d.Class == Read || d.Class == Login }

// Policy is gate.toml's [policy]: every list extends the built-in defaults.
type Policy struct {
	// AllowActions are read-safe actions (an extension's, say) besides the
	// side_effect_free ones.
	AllowActions []string
	// DenyActions are writes whatever the data or AllowActions say.
	DenyActions []string
	// AllowPosts are path patterns to which a POST passes.
	AllowPosts []string
	// DenyGet are path patterns refused even for GET, HEAD and OPTIONS
	// (views that write on GET).
	DenyGet []string
	// RootPath is the path prefix CKAN is mounted under: CKAN's
	// ckan.root_path without its "{{LANG}}" part ("/data" for
	// "/data/{{LANG}}"). "" or "/" is none. With it, the POST targets
	// (login and logout, /util/redirect, AllowPosts) also pass under the
	// prefix, and /_tracking is also recognised there. See "Root path" in
	// the package doc.
	RootPath string
}

// defaultDenyGet are the built-in deny_get patterns: GET routes that write
// in CKAN 2.10 (the surface data's 2.10/routes.tsv).
var defaultDenyGet = []string{
	"/group/follow/*",
	"/group/unfollow/*",
	"/organization/follow/*",
	"/organization/unfollow/*",
}

// extensionDenyGet are built-in deny_get patterns of extensions: those of
// ckanext-harvest, the most common one, whose views delete a source, start
// a job (refresh), clear a source and abort a job on GET
// (ckanext/harvest/views.py and utils.py of ckan/ckanext-harvest at
// 1a9a987). They refuse nothing on a site without it.
var extensionDenyGet = []string{
	"/harvest/delete/*",
	"/harvest/refresh/*",
	"/harvest/clear/*",
	"/harvest/*/job/*/abort",
}

// defaultDenyActions are side_effect_free but write: CKAN's get_site_user,
// and ckanext-harvest's reindexing actions, which rebuild search index
// entries (ckanext/harvest/logic/action/update.py at 1a9a987), so that
// what CKAN says of them (ckanops actions --learn) does not let them pass.
var defaultDenyActions = map[string]string{
	"get_site_user":           "action get_site_user is a write by default (it creates the site user)",
	"harvest_source_reindex":  "action harvest_source_reindex is a write by default (it reindexes a harvest source although ckanext-harvest marks it side_effect_free)",
	"harvest_sources_reindex": "action harvest_sources_reindex is a write by default (it reindexes every harvest source although ckanext-harvest marks it side_effect_free)",
}

// DeniedByDefault says whether action name is a write by default although
// it is side_effect_free (why, when it is): what CKAN says of it must not
// let it pass; only the operator's allow_actions does.
func DeniedByDefault(name string) (string, bool) {
	why, ok := defaultDenyActions[name]
	return why, ok
}

// defaultAllowPosts are non-action paths whose POST writes nothing:
// util.internal_redirect only redirects (CKAN's language selector, in the
// footer of every page, posts there).
var defaultAllowPosts = []string{"/util/redirect"}

// loginPaths are the login and logout paths a POST may reach.
var loginPaths = [][]string{
	{"user", "login"},
	{"login_generic"},
	{"user", "_logout"},
	{"user", "logout"},
}

// Classifier holds the rules built from one CKAN surface and a Policy.
type Classifier struct {
	actions    map[string]actionRule
	denyGet    []pattern
	allowPosts []pattern
	// routeHeads are first segments of CKAN's own routes ("api",
	// "dataset", ...): never a locale.
	routeHeads map[string]bool
	// root is Policy.RootPath cut into segments; nil when none.
	root []string
}

type actionRule struct {
	read   bool
	reason string
}

// New builds a Classifier from a CKAN surface and the site's policy. It
// fails, naming the entry, on a malformed pattern or action name.
func New(s *surface.Surface, p Policy) (*Classifier, error) {
	if s == nil {
		return nil, fmt.Errorf("classify: no CKAN surface")
	}
	c := &Classifier{actions: map[string]actionRule{}, routeHeads: map[string]bool{}}
	for name, a := range s.Actions {
		switch why, denied := defaultDenyActions[name]; {
		case denied:
			c.actions[name] = actionRule{false, why}
		case a.SideEffectFree:
			c.actions[name] = actionRule{true, "action " + name + " is side_effect_free"}
		default:
			c.actions[name] = actionRule{false, "action " + name + " is not side_effect_free"}
		}
	}
	for name, why := range defaultDenyActions {
		c.actions[name] = actionRule{false, why} // also an extension's the surface does not know
	}
	for _, name := range p.AllowActions {
		if err := checkActionName("allow_actions", name); err != nil {
			return nil, err
		}
		c.actions[name] = actionRule{true, "action " + name + " is in allow_actions"}
	}
	for _, name := range p.DenyActions {
		if err := checkActionName("deny_actions", name); err != nil {
			return nil, err
		}
		c.actions[name] = actionRule{false, "action " + name + " is in deny_actions"}
	}
	for _, list := range [][]string{defaultDenyGet, extensionDenyGet, p.DenyGet} {
		for _, text := range list {
			pat, err := parsePattern("deny_get", text)
			if err != nil {
				return nil, err
			}
			c.denyGet = append(c.denyGet, pat)
		}
	}
	for _, list := range [][]string{defaultAllowPosts, p.AllowPosts} {
		for _, text := range list {
			pat, err := parsePattern("allow_posts", text)
			if err != nil {
				return nil, err
			}
			c.allowPosts = append(c.allowPosts, pat)
		}
	}
	c.routeHeads["api"] = true
	for _, r := range s.Routes {
		if r.Endpoint == "home.redirect_locale" {
			continue // "/zh_CN/", "/no/": old locale names
		}
		head, _, _ := strings.Cut(strings.TrimPrefix(r.Rule, "/"), "/")
		if head != "" && !strings.Contains(head, "<") {
			c.routeHeads[head] = true
		}
	}
	root, err := parseRootPath(p.RootPath)
	if err != nil {
		return nil, err
	}
	// CKAN would route a path under such a root itself if it ever reached
	// it unstripped ("/dataset/...", "/fr/dataset/..."): a target under it
	// would not surely be the target.
	for i, seg := range root {
		if c.routeHeads[seg] {
			return nil, fmt.Errorf("classify: root_path %q: /%s is a CKAN route, not a mount point", p.RootPath, seg)
		}
		if i > 0 || !c.localeShaped(seg) {
			break
		}
	}
	c.root = root
	return c, nil
}

func checkActionName(list, name string) error {
	if name == "" {
		return fmt.Errorf("classify: %s entry %q: empty action name", list, name)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("/;?#%\\", r) {
			return fmt.Errorf("classify: %s entry %q: %q cannot be in an action name", list, name, r)
		}
	}
	return nil
}

// Method ranks, safest first. A request is judged by the highest rank among
// its real method and the methods its override headers name.
type methodRank uint8

const (
	rankRead    methodRank = iota // GET, HEAD, OPTIONS
	rankPost                      // POST
	rankNever                     // PUT, PATCH, DELETE
	rankUnknown                   // anything else
)

func rankOf(m string) methodRank {
	switch m {
	case "GET", "HEAD", "OPTIONS":
		return rankRead
	case "POST":
		return rankPost
	case "PUT", "PATCH", "DELETE":
		return rankNever
	}
	return rankUnknown
}

// rankOfOverride ranks a method named in an override header. Middleware
// that honours these headers upper-cases them, so the name is matched in
// any case.
func rankOfOverride(m string) methodRank {
	for _, k := range [...]string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"} {
		if strings.EqualFold(m, k) {
			return rankOf(k)
		}
	}
	return rankUnknown
}

var overrideHeaders = [...]string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// overrideHeader returns the standard spelling of key when it names a
// method-override header, comparing case-insensitively and taking '_' for
// '-' (CGI and WSGI servers turn both into '_').
func overrideHeader(key string) (string, bool) {
	for _, name := range overrideHeaders {
		if len(key) != len(name) {
			continue
		}
		same := true
		for i := 0; i < len(key) && same; i++ {
			a, b := key[i], name[i]
			if a == '_' {
				a = '-'
			}
			same = lower(a) == lower(b)
		}
		if same {
			return name, true
		}
	}
	return "", false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// effectiveMethod returns the rank a request is judged by and, when an
// override header raised it, that header's name and value.
func effectiveMethod(method string, h http.Header) (rank methodRank, header, value string) {
	rank = rankOf(method)
	for key, values := range h {
		if n := len(key); n != 13 && n != 17 && n != 22 {
			continue // cheap test before overrideHeader: not an override's length
		}
		name, ok := overrideHeader(key)
		if !ok {
			continue
		}
		for _, v := range values {
			for v != "" {
				var tok string
				tok, v, _ = strings.Cut(v, ",")
				tok = strings.TrimSpace(tok)
				if tok == "" {
					continue
				}
				r := rankOfOverride(tok)
				// Highest rank wins; ties are broken by name and value so
				// that the reason does not depend on map order.
				if r > rank || (r == rank && header != "" && (name < header || name == header && tok < value)) {
					rank, header, value = r, name, tok
				}
			}
		}
	}
	return rank, header, value
}

func methodReason(method string, rank methodRank, header, value string) string {
	if header != "" {
		return "method override " + header + ": " + clip(value)
	}
	switch method {
	case "PUT":
		return "PUT never passes"
	case "PATCH":
		return "PATCH never passes"
	case "DELETE":
		return "DELETE never passes"
	}
	if rank == rankPost {
		return reasonPost
	}
	return "unknown method " + clip(method)
}

// clip bounds what a client can put into a reason.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

const (
	reasonPost     = "POST passes only to a read-safe action, login/logout or allow_posts"
	reasonLogin    = "POST to login/logout"
	reasonTracking = "/_tracking is page-view tracking"
)

func reasonUpgrade(values []string) string {
	v := ""
	if len(values) > 0 {
		v = values[0]
	}
	return "protocol upgrade (Upgrade: " + clip(v) + "): a tunnel is never classified"
}

func readReason(method string) string {
	switch method {
	case "GET":
		return "GET passes"
	case "HEAD":
		return "HEAD passes"
	}
	return "OPTIONS passes"
}

// Classify decides what a request is. It looks only at the method, the
// method-override headers, the Upgrade header and u's path; it never reads
// a body.
func (c *Classifier) Classify(method string, h http.Header, u *url.URL) Decision {
	var p reqPath
	if why := p.parse(u); why != "" {
		return Decision{Class: Write, Reason: why}
	}
	norm, lit, clean, bare := p.norm[:p.nNorm], p.lit[:p.nLit], p.clean[:p.nClean], p.bare[:p.nBare]
	if c.isTracking(norm) {
		return Decision{Class: Tracking, Reason: reasonTracking}
	}
	rank, header, value := effectiveMethod(method, h)

	var v verdict
	c.judge(norm, &v)
	if !v.write && p.litDiffers {
		c.judge(lit, &v)
		// And without its trailing slashes, as a lenient router or a
		// normalising proxy would read it ("/api/action/../").
		trimmed := lit
		for len(trimmed) > 0 && trimmed[len(trimmed)-1] == "" {
			trimmed = trimmed[:len(trimmed)-1]
		}
		if !v.write && len(trimmed) < len(lit) {
			c.judge(trimmed, &v)
		}
	}
	if !v.write && p.cleanDiffers {
		c.judge(clean, &v)
	}
	if !v.write && p.bareDiffers {
		c.judge(bare, &v)
	}
	if v.write {
		return Decision{Class: Write, Action: v.action, Reason: v.reason}
	}
	if up, ok := h["Upgrade"]; ok {
		return Decision{Class: Write, Action: v.action, Reason: reasonUpgrade(up)}
	}
	switch rank {
	case rankRead:
		reason := v.readReason
		if reason == "" {
			reason = readReason(method)
		}
		return Decision{Class: Read, Action: v.action, Reason: reason}
	case rankPost:
		class, reason, ok := c.postTarget(norm)
		if ok && p.litDiffers {
			_, _, ok = c.postTarget(lit)
		}
		if ok && p.cleanDiffers {
			_, _, ok = c.postTarget(clean)
		}
		if ok && p.bareDiffers {
			_, _, ok = c.postTarget(bare)
		}
		if ok {
			return Decision{Class: class, Action: v.action, Reason: reason}
		}
	}
	return Decision{Class: Write, Action: v.action, Reason: methodReason(method, rank, header, value)}
}

// verdict gathers what the readings of one path say.
type verdict struct {
	write      bool
	reason     string
	action     string // the first action call seen
	readReason string // why that action is read-safe
}

// judge looks for a write named by segs or by any of its suffixes (segs
// with the locale segment, or a mount prefix, dropped). It keeps the first
// write found, from the longest reading.
func (c *Classifier) judge(segs []string, v *verdict) {
	for k := 0; k < len(segs) && !v.write; k++ {
		sub := segs[k:]
		if name, ok := actionCall(sub); ok {
			rule, known := c.actions[name]
			if v.action == "" {
				v.action = name
				if known && rule.read {
					v.readReason = rule.reason
				}
			}
			if !known || !rule.read {
				why := rule.reason
				if !known {
					why = "unknown action " + clip(name)
				}
				v.write, v.reason = true, c.suffixReason(segs[:k], sub, why)
				return
			}
		} else if foldedActionCall(sub) {
			v.write, v.reason = true, c.suffixReason(segs[:k], sub, "path is an action call when case is ignored")
			return
		}
		for i := range c.denyGet {
			if c.denyGet[i].match(sub, true) {
				v.write, v.reason = true, c.suffixReason(segs[:k], sub, c.denyGet[i].reason)
				return
			}
		}
	}
}

func (c *Classifier) suffixReason(dropped, sub []string, why string) string {
	if n := len(c.root); n > 0 && len(dropped) >= n && len(dropped) <= n+1 && equalSegs(dropped[:n], c.root) {
		if len(dropped) == n {
			return "reading " + clip(joinPath(sub)) + " under the root path is a write: " + why
		}
		return "locale-stripped reading " + clip(joinPath(sub)) + " under the root path is a write: " + why
	}
	return suffixReason(len(dropped), sub, why)
}

func suffixReason(dropped int, sub []string, why string) string {
	switch dropped {
	case 0:
		return why
	case 1:
		return "locale-stripped reading " + clip(joinPath(sub)) + " is a write: " + why
	}
	return fmt.Sprintf("reading %s (%d leading segments dropped) is a write: %s", clip(joinPath(sub)), dropped, why)
}

func joinPath(segs []string) string { return "/" + strings.Join(segs, "/") }

// actionCall reports whether segs is exactly an action call and returns
// the action name: api/action/NAME or api/V/action/NAME, V any segment.
func actionCall(segs []string) (string, bool) {
	switch {
	case len(segs) == 3 && segs[0] == "api" && segs[1] == "action" && segs[2] != "":
		return segs[2], true
	case len(segs) == 4 && segs[0] == "api" && segs[2] == "action" && segs[3] != "":
		return segs[3], true
	}
	return "", false
}

// foldedActionCall reports whether segs is an action call when case is
// ignored ("/API/Action/x").
func foldedActionCall(segs []string) bool {
	switch len(segs) {
	case 3:
		return strings.EqualFold(segs[0], "api") && strings.EqualFold(segs[1], "action") && segs[2] != ""
	case 4:
		return strings.EqualFold(segs[0], "api") && strings.EqualFold(segs[2], "action") && segs[3] != ""
	}
	return false
}

// target reports whether a POST to exactly segs may pass. A target is
// spelt plainly: no empty segment (an action call's V included).
func (c *Classifier) target(segs []string) (Class, string, bool) {
	if slices.Contains(segs, "") {
		return Write, "", false
	}
	if name, ok := actionCall(segs); ok {
		if rule, known := c.actions[name]; known && rule.read {
			return Read, rule.reason, true
		}
		return Write, "", false
	}
	for _, lp := range loginPaths {
		if equalSegs(segs, lp) {
			return Login, reasonLogin, true
		}
	}
	for i := range c.allowPosts {
		if c.allowPosts[i].match(segs, false) {
			return Read, c.allowPosts[i].reason, true
		}
	}
	return Write, "", false
}

// postTarget is target, also after a first segment shaped like a locale,
// and both of those under the root path when there is one.
func (c *Classifier) postTarget(segs []string) (Class, string, bool) {
	if class, reason, ok := c.localTarget(segs); ok {
		return class, reason, true
	}
	if rest, ok := c.underRoot(segs); ok {
		return c.localTarget(rest)
	}
	return Write, "", false
}

// localTarget is target, also after a first segment shaped like a locale.
func (c *Classifier) localTarget(segs []string) (Class, string, bool) {
	if class, reason, ok := c.target(segs); ok {
		return class, reason, true
	}
	if len(segs) > 1 && c.localeShaped(segs[0]) {
		return c.target(segs[1:])
	}
	return Write, "", false
}

// underRoot returns segs without the root path when segs starts with
// every one of its segments, exactly (case-sensitive, whole segments:
// "/database/user/login" is not under "/data").
func (c *Classifier) underRoot(segs []string) ([]string, bool) {
	if len(c.root) == 0 || len(segs) < len(c.root) || !equalSegs(segs[:len(c.root)], c.root) {
		return nil, false
	}
	return segs[len(c.root):], true
}

func (c *Classifier) isTracking(segs []string) bool {
	if c.localTracking(segs) {
		return true
	}
	rest, ok := c.underRoot(segs)
	return ok && c.localTracking(rest)
}

func (c *Classifier) localTracking(segs []string) bool {
	return (len(segs) == 1 && segs[0] == "_tracking") ||
		(len(segs) == 2 && segs[1] == "_tracking" && c.localeShaped(segs[0]))
}

// RootPath returns the root path the Classifier was built with, as
// "/data", or "" when there is none.
func (c *Classifier) RootPath() string {
	if len(c.root) == 0 {
		return ""
	}
	return joinPath(c.root)
}

// parseRootPath checks Policy.RootPath and cuts it into segments. Like a
// pattern, it is a decoded path: no percent-escapes, dot or empty
// segments, ';', '?', '#', '*', '\', spaces or controls; "{{LANG}}" is
// not part of it.
func parseRootPath(text string) ([]string, error) {
	if text == "" || text == "/" {
		return nil, nil
	}
	bad := func(why string) ([]string, error) {
		return nil, fmt.Errorf("classify: root_path %q: %s", text, why)
	}
	if !strings.HasPrefix(text, "/") {
		return bad("a root path is a path starting with /, such as /data")
	}
	if len(text) > 512 {
		return bad("longer than 512 bytes")
	}
	segs := strings.Split(strings.TrimSuffix(text[1:], "/"), "/")
	if len(segs) > maxSegments/2 {
		return bad("too many segments")
	}
	for _, seg := range segs {
		switch seg {
		case "":
			return bad("empty segment")
		case ".", "..":
			return bad("dot segment")
		}
		if strings.Contains(seg, "{{") || strings.Contains(seg, "}}") {
			return bad("leave out {{LANG}}: the locale after the root path is recognised by its shape")
		}
		for _, r := range seg {
			if r <= ' ' || r == 0x7f {
				return bad("control character or space")
			}
			if strings.ContainsRune("*;?#%\\", r) {
				return bad(fmt.Sprintf("%q is not allowed (a root path is a decoded path)", r))
			}
		}
		if why := scanChars("/" + seg); why != "" {
			return bad(why)
		}
	}
	return segs, nil
}

// localeShaped reports whether seg could be a CKAN locale ("fr", "pt_BR",
// "sr_Latn", "zh_Hant_TW"): two or three lower-case letters, then up to two
// "_Xx" parts of two to four letters; never a first segment of a CKAN route.
func (c *Classifier) localeShaped(seg string) bool {
	i := 0
	for i < len(seg) && 'a' <= seg[i] && seg[i] <= 'z' {
		i++
	}
	if i < 2 || i > 3 {
		return false
	}
	for parts := 0; i < len(seg); parts++ {
		if parts == 2 || seg[i] != '_' {
			return false
		}
		j := i + 1
		for j < len(seg) && isLetter(seg[j]) {
			j++
		}
		if n := j - i - 1; n < 2 || n > 4 {
			return false
		}
		i = j
	}
	return !c.routeHeads[seg]
}

func isLetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

func equalSegs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FormWouldBeRefused reports whether submitting a form with this method and
// action (resolved against base, the page's URL) would be refused in
// read-only mode; the HTML rewriter replaces such forms with a notice. GET
// forms never are (HTML submits any method but "post" and "dialog" as GET,
// and a "dialog" form submits nothing); the login form never is. The host
// is not compared: a form aimed at another site is judged as if it were
// aimed at this one.
func (c *Classifier) FormWouldBeRefused(method, action string, base *url.URL) bool {
	if !strings.EqualFold(strings.TrimSpace(method), "post") {
		return false
	}
	ref, err := url.Parse(strings.TrimSpace(action))
	if err != nil {
		return true
	}
	target := ref
	if base != nil {
		target = base.ResolveReference(ref)
	}
	return !c.Classify("POST", nil, target).Pass()
}

// IsAPI reports whether a refusal should use CKAN's JSON envelope: the
// normalised path is under /api (also after a locale segment, and both
// under the root path), or the
// request's Accept header prefers JSON to HTML.
func (c *Classifier) IsAPI(u *url.URL, h http.Header) bool {
	if u != nil {
		var p reqPath
		if p.parse(u) == "" {
			norm := p.norm[:p.nNorm]
			if (len(norm) > 0 && strings.EqualFold(norm[0], "api")) ||
				(len(norm) > 1 && strings.EqualFold(norm[1], "api")) {
				return true
			}
			if rest, ok := c.underRoot(norm); ok &&
				((len(rest) > 0 && strings.EqualFold(rest[0], "api")) ||
					(len(rest) > 1 && strings.EqualFold(rest[1], "api"))) {
				return true
			}
		} else if hasAPIPrefix(u.Path) {
			return true
		}
	}
	return prefersJSON(h)
}

// hasAPIPrefix is the fallback for paths too broken to normalise.
func hasAPIPrefix(path string) bool {
	path = strings.TrimLeft(path, "/")
	return len(path) >= 3 && strings.EqualFold(path[:3], "api") && (len(path) == 3 || path[3] == '/')
}
