package classify

import (
	"net/http"
	"strings"
)

// prefersJSON reports whether the Accept header ranks a JSON type
// (application/json, text/json, anything+json) above HTML (text/html,
// application/xhtml+xml). Wildcards count for neither; between equal
// weights the type listed first wins.
func prefersJSON(h http.Header) bool {
	qJSON, qHTML := -1, -1 // weights in thousandths; -1: not listed
	jsonFirst := false
	for _, v := range h.Values("Accept") {
		for v != "" {
			var elem string
			elem, v, _ = strings.Cut(v, ",")
			typ, params, _ := strings.Cut(elem, ";")
			typ = strings.TrimSpace(typ)
			q := qValue(params)
			switch {
			case isJSONType(typ):
				if q > qJSON {
					qJSON = q
				}
				if qHTML < 0 {
					jsonFirst = true
				}
			case strings.EqualFold(typ, "text/html") || strings.EqualFold(typ, "application/xhtml+xml"):
				if q > qHTML {
					qHTML = q
				}
			}
		}
	}
	return qJSON > 0 && (qJSON > qHTML || qJSON == qHTML && jsonFirst)
}

func isJSONType(typ string) bool {
	return strings.EqualFold(typ, "application/json") || strings.EqualFold(typ, "text/json") ||
		(len(typ) > 5 && strings.EqualFold(typ[len(typ)-5:], "+json"))
}

// qValue returns the q parameter in thousandths (1000 when absent, 0 when
// malformed).
func qValue(params string) int {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || v[0] < '0' || v[0] > '1' {
			return 0
		}
		q := int(v[0]-'0') * 1000
		if len(v) > 1 {
			if v[1] != '.' {
				return 0
			}
			scale := 100
			for _, c := range []byte(v[2:]) {
				if c < '0' || c > '9' || scale == 0 {
					return 0
				}
				q += int(c-'0') * scale
				scale /= 10
			}
		}
		if q > 1000 {
			return 0
		}
		return q
	}
	return 1000
}
