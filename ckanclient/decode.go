package ckanclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ckanops/ckanops/api"

	"github.com/go-resty/resty/v2"
)

// envelope is CKAN's Action API answer.
type envelope struct {
	Success *bool           `json:"success"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// gateError is the gate's error body: {"error": "...", ...}, or CKAN's
// envelope when error is an object.
type gateError struct {
	Error   json.RawMessage `json:"error"`
	Mode    api.Mode        `json:"mode"`
	Until   *time.Time      `json:"until"`
	Current *api.Status     `json:"current"`
}

// answer is a response reduced to what decoding needs.
type answer struct {
	status int
	ct     string
	server string
	header http.Header
	body   []byte
}

func answerOf(resp *resty.Response) answer {
	return answer{
		status: resp.StatusCode(),
		ct:     resp.Header().Get("Content-Type"),
		server: resp.Header().Get("Server"),
		header: resp.Header(),
		body:   resp.Body(),
	}
}

func (a answer) ok() bool { return a.status >= 200 && a.status < 300 }

// looksJSON: the body claims to be JSON or starts like JSON.
func (a answer) looksJSON() bool {
	if strings.Contains(strings.ToLower(a.ct), "json") {
		return true
	}
	t := bytes.TrimSpace(a.body)
	return len(t) > 0 && (t[0] == '{' || t[0] == '"' || t[0] == '[')
}

// decodeAction turns a CKAN Action API answer into result or a typed error.
func (c *Client) decodeAction(a answer, k call, result any) error {
	u := redactURL(c.urlFor(k.path))
	if !a.looksJSON() {
		return c.notAPIAnswer(a, k, u)
	}
	t := bytes.TrimSpace(a.body)
	if len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return c.decodeError(a, k, u, err)
		}
		if a.ok() {
			return c.decodeError(a, k, u, errors.New("a bare JSON string instead of CKAN's envelope"))
		}
		return &BadRequestError{Status: a.status, Message: c.scrub(s), Action: k.name, URL: u}
	}
	var env envelope
	if err := json.Unmarshal(t, &env); err != nil {
		if !a.ok() && !strings.Contains(strings.ToLower(a.ct), "json") {
			return c.notAPIAnswer(a, k, u)
		}
		return c.decodeError(a, k, u, err)
	}
	if hasValue(env.Error) {
		return c.errorFromJSON(a, k, u, t)
	}
	if env.Success == nil {
		if !a.ok() {
			return c.notAPIAnswer(a, k, u)
		}
		return c.decodeError(a, k, u, errors.New(`no "success" field: not CKAN's Action API envelope`))
	}
	if !*env.Success || !a.ok() {
		return &APIError{Status: a.status, Message: fmt.Sprintf("success=%v with no error object", *env.Success),
			Action: k.name, URL: u, tokenSent: c.token != ""}
	}
	if result == nil || !hasValue(env.Result) {
		return nil
	}
	if err := json.Unmarshal(env.Result, result); err != nil {
		return c.decodeError(a, k, u, fmt.Errorf("result: %w", err))
	}
	return nil
}

// decodeGate turns a control API answer into result or a typed error.
func (c *Client) decodeGate(a answer, k call, result any) error {
	u := redactURL(c.urlFor(k.path))
	if !a.looksJSON() {
		return c.notAPIAnswer(a, k, u)
	}
	t := bytes.TrimSpace(a.body)
	if a.ok() {
		if err := json.Unmarshal(t, result); err != nil {
			return c.decodeError(a, k, u, err)
		}
		return nil
	}
	if len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return c.decodeError(a, k, u, err)
		}
		return &BadRequestError{Status: a.status, Message: c.scrub(s), Action: k.name, URL: u}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(t, &probe); err != nil {
		if !strings.Contains(strings.ToLower(a.ct), "json") {
			return c.notAPIAnswer(a, k, u)
		}
		return c.decodeError(a, k, u, err)
	}
	if !hasValue(probe["error"]) && !(a.status == http.StatusConflict && k.name == gateModeCall) {
		return c.notAPIAnswer(a, k, u)
	}
	return c.errorFromJSON(a, k, u, t)
}

// errorFromJSON decodes an error body: CKAN's envelope (error is an
// object) or the gate's {"error": "text"}.
func (c *Client) errorFromJSON(a answer, k call, u string, body []byte) error {
	var g gateError
	if err := json.Unmarshal(body, &g); err != nil {
		// "until" may be something other than RFC 3339; keep the rest.
		var loose struct {
			Error json.RawMessage `json:"error"`
			Mode  api.Mode        `json:"mode"`
		}
		if err2 := json.Unmarshal(body, &loose); err2 != nil {
			return c.decodeError(a, k, u, err)
		}
		g.Error, g.Mode = loose.Error, loose.Mode
	}

	if a.status == http.StatusConflict && k.name == gateModeCall {
		return c.conflictError(a, k, u, body, g)
	}

	e := &APIError{Status: a.status, Action: k.name, URL: u, tokenSent: c.token != "", gate: k.gate()}
	t := bytes.TrimSpace(g.Error)
	switch {
	case len(t) > 0 && t[0] == '{':
		e.Type, e.Message, e.Fields, e.Mode, e.Until = c.ckanErrorObject(t)
	case len(t) > 0 && t[0] == '"':
		var s string
		_ = json.Unmarshal(t, &s)
		e.Message = c.scrub(s)
		e.Type = gateErrorType(a.status, g.Mode)
		e.Mode, e.Until = g.Mode, g.Until
	default:
		e.Message = c.scrub(snippetText(string(t)))
		e.Type = gateErrorType(a.status, g.Mode)
	}
	if e.Type == TypeMaintenance || a.status == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(a.header.Get("Retry-After"), time.Now())
	}
	return e
}

// gateErrorType names a gate error by its status.
func gateErrorType(status int, mode api.Mode) string {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return TypeAuthorization
	case http.StatusNotFound:
		return TypeNotFound
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return TypeValidation
	case http.StatusServiceUnavailable:
		if mode != "" {
			return TypeMaintenance
		}
	}
	return TypeGate
}

// ckanErrorObject reads CKAN's error object: "__type", "message", and for
// a Validation Error one key per field; the gate's maintenance refusal
// adds "mode" and "until".
func (c *Client) ckanErrorObject(b []byte) (typ, msg string, fields map[string][]string, mode api.Mode, until *time.Time) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return "", c.scrub(snippetText(string(b))), nil, "", nil
	}
	str := func(key string) string {
		var s string
		if raw, ok := obj[key]; ok {
			if json.Unmarshal(raw, &s) != nil {
				s = string(raw)
			}
		}
		return s
	}
	typ = str("__type")
	msg = c.scrub(str("message"))
	if typ == TypeMaintenance {
		mode = api.Mode(str("mode"))
		if s := str("until"); s != "" && s != "null" {
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				until = &t
			}
		}
		return typ, msg, nil, mode, until
	}
	for key, raw := range obj {
		if key == "__type" || key == "message" {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		if fields == nil {
			fields = map[string][]string{}
		}
		flattenField(fields, key, v, c.scrub)
	}
	return typ, msg, fields, "", nil
}

// flattenField adds CKAN's field errors under key: a list of strings, a
// string, or nested dicts and lists (resources, extras, tags).
func flattenField(out map[string][]string, key string, v any, scrub func(string) string) {
	switch v := v.(type) {
	case string:
		out[key] = append(out[key], scrub(v))
	case []any:
		for i, item := range v {
			switch item := item.(type) {
			case string:
				out[key] = append(out[key], scrub(item))
			case map[string]any:
				flattenField(out, fmt.Sprintf("%s[%d]", key, i), item, scrub)
			case []any:
				flattenField(out, fmt.Sprintf("%s[%d]", key, i), item, scrub)
			default:
				if item != nil {
					out[key] = append(out[key], scrub(fmt.Sprint(item)))
				}
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			flattenField(out, key+"."+k, v[k], scrub)
		}
	case nil:
	default:
		out[key] = append(out[key], scrub(fmt.Sprint(v)))
	}
}

func (c *Client) conflictError(a answer, k call, u string, body []byte, g gateError) error {
	ce := &ConflictError{URL: u, Expected: k.expect}
	t := bytes.TrimSpace(g.Error)
	if len(t) > 0 && t[0] == '"' {
		_ = json.Unmarshal(t, &ce.Message)
		ce.Message = c.scrub(ce.Message)
	}
	switch {
	case g.Current != nil:
		ce.Current = *g.Current
	default:
		// The record itself at the top level.
		var s api.Status
		if json.Unmarshal(body, &s) == nil {
			ce.Current = s
		}
	}
	ce.Current.Message = c.scrub(ce.Current.Message)
	ce.Current.Reason = c.scrub(ce.Current.Reason)
	return ce
}

// notAPIAnswer is an answer that is not JSON from CKAN or the gate.
func (c *Client) notAPIAnswer(a answer, k call, u string) error {
	if a.ok() && len(bytes.TrimSpace(a.body)) == 0 {
		return c.decodeError(a, k, u, errors.New("empty body"))
	}
	return &HTTPError{
		Status:      a.status,
		ContentType: a.ct,
		Server:      a.server,
		Snippet:     pageSnippet(c.scrubBytes(a.body), a.ct),
		Method:      k.method,
		Action:      k.name,
		URL:         u,
		gate:        k.gate(),
	}
}

func (c *Client) decodeError(a answer, k call, u string, err error) error {
	return &DecodeError{
		Status:      a.status,
		ContentType: a.ct,
		Snippet:     truncate(collapseSpace(string(headBytes(c.scrubBytes(a.body), 512))), 80),
		Action:      k.name,
		URL:         u,
		Err:         err,
	}
}

func hasValue(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && !bytes.Equal(t, []byte("null"))
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now).Round(time.Second); d > 0 {
			return d
		}
	}
	return 0
}

// scrub removes the token from text quoted from a server (a page could
// echo request headers).
func (c *Client) scrub(s string) string {
	if len(c.token) < 6 || !strings.Contains(s, c.token) {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[token]")
}

// scrubBytes is scrub for a body: before any cut, so no part of the token survives.
func (c *Client) scrubBytes(b []byte) []byte {
	if len(c.token) < 6 || !bytes.Contains(b, []byte(c.token)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(c.token), []byte("[token]"))
}

// Snippets of pages.

const snippetMax = 160

var (
	reTitle    = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)
	reHead     = regexp.MustCompile(`(?is)<head[\s>].*?</head>`)
	reScript   = regexp.MustCompile(`(?is)<script[\s>].*?</script>`)
	reStyle    = regexp.MustCompile(`(?is)<style[\s>].*?</style>`)
	reComment  = regexp.MustCompile(`(?s)<!--.*?-->`)
	reTag      = regexp.MustCompile(`(?s)<[^>]*>`)
	reH1       = regexp.MustCompile(`(?i)<h1[\s>]`)
	reRoleMain = regexp.MustCompile(`(?i)<[a-z]+[^>]*\srole\s*=\s*["']?main\b`)
	reMain     = regexp.MustCompile(`(?i)<main[\s>]`)
	reContent  = regexp.MustCompile(`(?i)<[a-z]+[^>]*\sid\s*=\s*["']?content\b`)
	reBodyOpen = regexp.MustCompile(`(?i)<body[^>]*>`)
	reFooter   = regexp.MustCompile(`(?i)<footer[\s>]`)
)

// pageSnippet returns a short text of an error page: its title and the
// text from its first <h1> (or its body), never the whole page.
func pageSnippet(body []byte, ct string) string {
	s := string(headBytes(body, 64<<10))
	isHTML := strings.Contains(strings.ToLower(ct), "html") ||
		strings.HasPrefix(strings.TrimSpace(strings.ToLower(s)), "<")
	if !isHTML {
		return truncate(collapseSpace(s), snippetMax)
	}
	title := ""
	if m := reTitle.FindStringSubmatch(s); m != nil {
		title = collapseSpace(html.UnescapeString(reTag.ReplaceAllString(m[1], " ")))
	}
	s = reComment.ReplaceAllString(s, " ")
	s = reHead.ReplaceAllString(s, " ")
	s = reScript.ReplaceAllString(s, " ")
	s = reStyle.ReplaceAllString(s, " ")
	s = reTitle.ReplaceAllString(s, " ")
	// Start at the main content when the page marks it (CKAN's layout
	// has a header, with the site name in an <h1>, before it).
	for _, re := range []*regexp.Regexp{reRoleMain, reMain, reContent, reH1} {
		if loc := re.FindStringIndex(s); loc != nil {
			s = s[loc[0]:]
			break
		}
	}
	if loc := reBodyOpen.FindStringIndex(s); loc != nil {
		s = s[loc[1]:]
	}
	if loc := reFooter.FindStringIndex(s); loc != nil {
		s = s[:loc[0]]
	}
	text := snippetText(s)
	switch {
	case title == "":
		return truncate(text, snippetMax)
	case text == "" || strings.HasPrefix(text, title):
		if text == "" {
			text = title
		}
		return truncate(text, snippetMax)
	}
	return truncate(title+": "+text, snippetMax)
}

func snippetText(s string) string {
	return collapseSpace(html.UnescapeString(reTag.ReplaceAllString(s, " ")))
}

func collapseSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

func headBytes(b []byte, n int) []byte {
	if len(b) > n {
		b = b[:n]
	}
	return b
}

func truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}
