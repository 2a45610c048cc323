package gate

import (
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/httpjson"
)

// Limits on how much of a refused form POST the gate reads to show the
// user's text back. Whatever lies beyond is not read at all.
const (
	echoMaxBody   = 1 << 20 // bytes read from the request body
	echoMaxFields = 100
	echoMaxValue  = 64 << 10 // bytes kept of one field
)

// defaultMessage is shown when the operator gave none.
const defaultMessage = "This site is in maintenance: changes cannot be saved right now. Please try again later."

// ckanError is the "error" object of CKAN's envelope for a refusal.
type ckanError struct {
	Type    string     `json:"__type"`
	Message string     `json:"message"`
	Mode    api.Mode   `json:"mode"`
	Until   *time.Time `json:"until"`
}

type ckanEnvelope struct {
	Help    string     `json:"help"`
	Success bool       `json:"success"`
	Error   *ckanError `json:"error,omitempty"`
	Result  any        `json:"result,omitempty"`
}

// helpURL builds the "help" link CKAN puts in every envelope (with the
// root path, as CKAN's url_for adds it).
func (g *Gate) helpURL(r *http.Request, action string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: g.classifier().RootPath() + "/api/3/action/help_show"}
	if action != "" {
		u.RawQuery = "name=" + url.QueryEscape(action)
	}
	return u.String()
}

// writeJSON is the one JSON writer of every endpoint (httpjson.Write).
var writeJSON = httpjson.Write

// refusal describes one refused request, for either rendering.
type refusal struct {
	Help       string // the envelope's help URL (API refusals)
	SiteTitle  string
	Heading    string
	Message    string
	Mode       api.Mode
	Until      *time.Time
	ETA        string
	FormPost   bool        // a form submission: say nothing was saved
	Fields     []echoField // the user's text, shown back
	RetryAfter int
	Status     int
	// Script, when set, is the notice script's URL (api.PathNoticeScript
	// under the root path): the page loads it, polling the status every
	// Poll seconds, and tells the reader when the maintenance is over:
	// Refused ("get" or "post") says what to do then (reload, or go back
	// to the form and send it again).
	Script  string
	Poll    int64
	Refused string
}

type echoField struct{ Name, Value string }

// writeAPIRefusal answers in CKAN's JSON envelope.
func writeAPIRefusal(w http.ResponseWriter, f refusal) {
	w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	writeJSON(w, f.Status, ckanEnvelope{
		Help: f.Help,
		Error: &ckanError{
			Type:    "Maintenance Error",
			Message: f.Message,
			Mode:    f.Mode,
			Until:   f.Until,
		},
	})
}

// writeHTMLRefusal answers with a self-contained page.
func writeHTMLRefusal(w http.ResponseWriter, f refusal) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	csp := "default-src 'none'; style-src 'unsafe-inline'"
	if f.Script != "" {
		csp += "; script-src 'self'; connect-src 'self'"
	}
	h.Set("Content-Security-Policy", csp)
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	w.WriteHeader(f.Status)
	_ = refusalPage.Execute(w, f)
}

// formatETA renders an ETA for people: "2026-11-29 15:00 UTC (in 1h30m)".
func formatETA(until *time.Time, t time.Time) string {
	if until == nil {
		return ""
	}
	s := until.UTC().Format("2006-01-02 15:04 UTC")
	if d := until.Sub(t); d > 0 {
		s += " (in " + humanDuration(d) + ")"
	}
	return s
}

// humanDuration renders d to the minute: "45m", "2h", "1h30m".
func humanDuration(d time.Duration) string {
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case d < time.Minute:
		return "less than a minute"
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}

// isFormPost reports whether r is a browser form submission.
func isFormPost(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data"
}

// echoFields reads the text fields of a refused form POST, so the page can
// show the user what they typed. Passwords, CSRF tokens and files are left
// out; at most echoMaxBody bytes are read.
func echoFields(r *http.Request) []echoField {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil
	}
	body := io.LimitReader(r.Body, echoMaxBody)
	var out []echoField
	add := func(name, value string) {
		if len(out) >= echoMaxFields || value == "" || secretField(name) {
			return
		}
		if len(value) > echoMaxValue {
			value = value[:echoMaxValue] + "…"
		}
		out = append(out, echoField{Name: name, Value: value})
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(body)
		if err != nil {
			return nil
		}
		vals, _ := url.ParseQuery(string(b)) // keep what parsed
		for _, kv := range strings.Split(string(b), "&") {
			k, _, _ := strings.Cut(kv, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || vals[name] == nil {
				continue
			}
			add(name, vals[name][0])
			vals[name] = vals[name][1:]
			if len(vals[name]) == 0 {
				delete(vals, name)
			}
		}
	case "multipart/form-data":
		mr := multipart.NewReader(body, params["boundary"])
		for len(out) < echoMaxFields {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if p.FileName() != "" {
				p.Close()
				continue
			}
			b, err := io.ReadAll(io.LimitReader(p, echoMaxValue+1))
			if err != nil {
				break
			}
			add(p.FormName(), string(b))
		}
	}
	return out
}

// secretField reports whether a form field must never be shown back.
func secretField(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "csrf", "token", "secret", "apikey", "api_key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

var refusalPage = template.Must(template.New("refusal").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Heading}} · {{.SiteTitle}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f5f5;color:#222}
main{max-width:44rem;margin:3rem auto;padding:2rem;background:#fff;border-top:6px solid #c77c02;border-radius:4px}
h1{margin-top:0;font-size:1.6rem}
.site{color:#555;text-transform:uppercase;letter-spacing:.05em;font-size:.8rem}
.saved{background:#fdecea;border-left:4px solid #b3261e;padding:.75rem 1rem;font-weight:600}
label{display:block;font-weight:600;margin-top:1rem}
textarea{width:100%;min-height:3rem;font:inherit}
footer{color:#777;font-size:.8rem;margin-top:2rem}
</style>
</head>
<body>
{{if .Script}}<div class="ckanops-banner" data-ckanops-mode="{{.Mode}}" hidden></div>
{{end}}<main role="main">
<p class="site">{{.SiteTitle}}</p>
<h1>{{.Heading}}</h1>
<p role="status">{{.Message}}</p>
{{if .ETA}}<p>Expected back: <strong>{{.ETA}}</strong>.</p>{{end}}
{{if .FormPost}}<p class="saved">Nothing was saved. Your changes were not sent to the site.</p>
{{if .Fields}}<p>So that your work is not lost, here is what you typed. Copy it and submit it again when the site is back.</p>
{{range .Fields}}<label>{{.Name}}</label><textarea readonly>{{.Value}}</textarea>
{{end}}{{end}}{{end}}
<footer>HTTP {{.Status}}{{if .RetryAfter}} · try again in {{.RetryAfter}} seconds{{end}}</footer>
</main>
{{if .Script}}<script src="{{.Script}}" defer data-ckanops-poll="{{.Poll}}" data-ckanops-refused="{{.Refused}}"></script>
{{end}}</body>
</html>
`))
