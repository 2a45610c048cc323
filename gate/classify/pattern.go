package classify

import (
	"fmt"
	"strings"
)

// pattern is one allow_posts or deny_get entry: an exact path, or a prefix
// followed by "/*" (one or more further segments).
type pattern struct {
	segs   []string
	prefix bool
	reason string // "deny_get /group/follow/*"
}

func parsePattern(list, text string) (pattern, error) {
	bad := func(why string) (pattern, error) {
		return pattern{}, fmt.Errorf("classify: %s entry %q: %s", list, text, why)
	}
	if !strings.HasPrefix(text, "/") {
		return bad("a pattern is a path starting with /")
	}
	pat := pattern{reason: list + " " + text}
	body := strings.TrimPrefix(text, "/")
	if rest, ok := strings.CutSuffix(body, "/*"); ok {
		pat.prefix, body = true, rest
	} else if body == "*" {
		pat.prefix, body = true, ""
	}
	if pat.prefix && body == "" && list == "allow_posts" {
		return bad("/* would let a POST to every path pass")
	}
	if body != "" {
		pat.segs = strings.Split(body, "/")
	}
	for _, seg := range pat.segs {
		if seg == "*" && list == "deny_get" {
			continue // any one segment: deny_get may only refuse more
		}
		switch seg {
		case "":
			if strings.HasSuffix(text, "/") {
				return bad("trailing slash (paths are matched without one)")
			}
			return bad("empty segment")
		case ".", "..":
			return bad("dot segment")
		}
		for _, r := range seg {
			if r < ' ' || r == 0x7f || r == ' ' {
				return bad("control character or space")
			}
			if strings.ContainsRune("*;?#%\\", r) {
				return bad(fmt.Sprintf("%q is not allowed (a pattern is a decoded path; * only as a final /*, or in deny_get as a whole segment)", r))
			}
		}
	}
	return pat, nil
}

// match reports whether the pattern matches segs from the first segment;
// fold ignores case.
func (p *pattern) match(segs []string, fold bool) bool {
	if p.prefix {
		if len(segs) <= len(p.segs) {
			return false
		}
	} else if len(segs) != len(p.segs) {
		return false
	}
	for i, s := range p.segs {
		if s != segs[i] && s != "*" && !(fold && strings.EqualFold(s, segs[i])) {
			return false
		}
	}
	return true
}
