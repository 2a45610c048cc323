package config

import (
	"log/slog"
	"net/url"
	"strings"
)

// SecretURL is a URL that may hold a password, such as a Postgres or
// Redis URL. Everything that prints it (String, GoString, MarshalText and
// so JSON, and LogValue for log/slog) hides the password; Reveal returns
// the URL as written, for the one call that connects with it.
type SecretURL string

// Reveal returns the URL with its password. Pass it to the client that
// connects; never log it or put it in an error.
func (u SecretURL) Reveal() string { return string(u) }

// String returns the URL with any password hidden.
func (u SecretURL) String() string { return Redact(string(u)) }

// GoString hides the password from %#v too.
func (u SecretURL) GoString() string { return `config.SecretURL("` + Redact(string(u)) + `")` }

// MarshalText writes the redacted form, so JSON and TOML output never
// carry the password.
func (u SecretURL) MarshalText() ([]byte, error) { return []byte(Redact(string(u))), nil }

// LogValue makes log/slog print the redacted form.
func (u SecretURL) LogValue() slog.Value { return slog.StringValue(Redact(string(u))) }

const (
	redactedMark = "xxxxx"
	hiddenURL    = "(URL hidden: not a URL that can be shown safely)"
)

// Redact returns raw with its password hidden: the password in the user
// information, any query parameter whose name suggests a secret
// ("password", "sslpassword", "token", ...), and, for Redis URLs, a user
// name given without a password (Redis clients have treated that as the
// password). A string that does not parse as a URL with a scheme and a
// host (a libpq "key=value" string, say) is hidden whole. The empty
// string stays empty.
func Redact(raw string) string {
	s, _ := redact(raw)
	return s
}

// hasSecret reports whether raw holds something Redact hides.
func hasSecret(raw string) bool {
	_, hid := redact(raw)
	return hid
}

func redact(raw string) (shown string, hid bool) {
	if raw == "" {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" || (u.Host == "" && u.Path == "") {
		return hiddenURL, true
	}
	if u.User != nil {
		name := u.User.Username()
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(name, redactedMark)
			hid = true
		} else if isRedisScheme(u.Scheme) && name != "" {
			u.User = url.User(redactedMark)
			hid = true
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redactedMark
			hid = true
		} else {
			for k, vs := range q {
				if secretParam(k) {
					for i := range vs {
						vs[i] = redactedMark
					}
					hid = true
				}
			}
			if hid {
				u.RawQuery = q.Encode()
			}
		}
	}
	return u.String(), hid
}

// Secrets returns the secret pieces of the URL, as they may appear in an
// error message from a driver: the password (also percent-escaped), a
// Redis user name given alone, and the values of query parameters whose
// name suggests a secret. The rules are Redact's.
func (u SecretURL) Secrets() []string {
	p, err := url.Parse(string(u))
	if err != nil {
		return nil
	}
	var out []string
	if p.User != nil {
		if pw, ok := p.User.Password(); ok {
			out = append(out, pw, url.QueryEscape(pw), url.PathEscape(pw))
		} else if n := p.User.Username(); n != "" && isRedisScheme(p.Scheme) {
			out = append(out, n)
		}
	}
	for k, vs := range p.Query() {
		if secretParam(k) {
			out = append(out, vs...)
		}
	}
	return out
}

func isRedisScheme(s string) bool {
	switch strings.ToLower(s) {
	case "redis", "rediss", "unix":
		return true
	}
	return false
}

func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"pass", "pwd", "secret", "token", "auth", "key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}
