package surface

import (
	"slices"
	"strconv"
	"strings"
)

// Strictest combines several surfaces into one in which a request is a read
// only if it is a read in every given version. It is for a gate that does
// not know which of those versions it fronts (a site mid-upgrade, or one
// whose status_show could not be read):
//
//   - Actions: the union of every version's actions. An action is
//     side_effect_free only if every given surface has it and marks it so;
//     an action missing from some version, or not side_effect_free in one,
//     is in the result as not side_effect_free, so the gate refuses it as a
//     write just as it refuses an unknown action. Module, AuthAuditExempt and
//     ChainedOver come from the newest version that has the action.
//   - Routes: the union, without duplicates (same rule, methods and
//     endpoint), in the order of the versions, oldest first, then of their
//     files.
//   - Auth: the union. A function the versions disagree on allows anonymous
//     access only if every version that has it does, and checks sysadmins if
//     any does.
//
// Version is "strictest of " and the distinct versions, oldest first
// ("strictest of 2.10, 2.11, 2.12"). The given surfaces are not changed.
// With no surface it returns nil; with one, a combination of that one.
func Strictest(ss ...*Surface) *Surface {
	var in []*Surface
	for _, s := range ss {
		if s != nil {
			in = append(in, s)
		}
	}
	if len(in) == 0 {
		return nil
	}
	slices.SortStableFunc(in, func(a, b *Surface) int { return compareVersions(a.Version, b.Version) })
	var names []string
	for _, s := range in {
		if len(names) == 0 || names[len(names)-1] != s.Version {
			names = append(names, s.Version)
		}
	}
	out := &Surface{
		Version: "strictest of " + strings.Join(names, ", "),
		Actions: map[string]Action{},
		Auth:    map[string]AuthFunc{},
	}
	for _, s := range in {
		for name, a := range s.Actions {
			out.Actions[name] = Action{ // the newer wins: in is oldest first
				Name: a.Name, Module: a.Module, AuthAuditExempt: a.AuthAuditExempt,
				ChainedOver: slices.Clone(a.ChainedOver),
			}
		}
	}
	for name, a := range out.Actions {
		a.SideEffectFree = true
		for _, s := range in {
			if !s.Actions[name].SideEffectFree {
				a.SideEffectFree = false
				break
			}
		}
		out.Actions[name] = a
	}
	seen := map[string]bool{}
	for _, s := range in {
		for _, r := range s.Routes {
			key := r.Rule + "\t" + strings.Join(r.Methods, ",") + "\t" + r.Endpoint
			if seen[key] {
				continue
			}
			seen[key] = true
			r.Methods = slices.Clone(r.Methods)
			out.Routes = append(out.Routes, r)
		}
	}
	for _, s := range in {
		for name, f := range s.Auth {
			if prev, ok := out.Auth[name]; ok {
				f.AllowAnonymousAccess = f.AllowAnonymousAccess && prev.AllowAnonymousAccess
				f.SysadminsCheck = f.SysadminsCheck || prev.SysadminsCheck
			}
			out.Auth[name] = f
		}
	}
	return out
}

// Match returns the embedded surface to apply to a CKAN that reports
// ckanVersion in status_show ("2.11.5", "2.12.0b0"): the surface of the
// same major.minor when it is embedded (exact true); for a newer CKAN, the
// newest embedded surface, and for an older one, the oldest (exact false).
// A version it cannot read gives "" and false.
func Match(ckanVersion string) (surfaceVersion string, exact bool) {
	major, minor, ok := parseMajorMinor(ckanVersion)
	if !ok {
		return "", false
	}
	v := strconv.Itoa(major) + "." + strconv.Itoa(minor)
	if slices.Contains(Versions, v) {
		return v, true
	}
	newest, oldest := Versions[0], Versions[0]
	for _, e := range Versions {
		if compareVersions(e, newest) > 0 {
			newest = e
		}
		if compareVersions(e, oldest) < 0 {
			oldest = e
		}
	}
	if compareVersions(v, newest) > 0 {
		return newest, false
	}
	if compareVersions(v, oldest) < 0 {
		return oldest, false
	}
	// Between two embedded versions (none is missing today): the older
	// neighbour, as CKAN rarely removes surface within a major version.
	best := oldest
	for _, e := range Versions {
		if compareVersions(e, v) < 0 && compareVersions(e, best) > 0 {
			best = e
		}
	}
	return best, false
}

// parseMajorMinor reads the leading "major.minor" of a CKAN version as
// status_show reports it: "2.11.5", "2.12.0b0", "2.12", "2.13.0rc1",
// "2.10.0+local". What follows the minor number must start with ".", a
// letter, "+" or "-".
func parseMajorMinor(v string) (major, minor int, ok bool) {
	v = strings.TrimSpace(v)
	majorText, rest, found := strings.Cut(v, ".")
	if !found {
		return 0, 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	minorText, tail := rest[:end], rest[end:]
	if tail != "" {
		c := tail[0]
		if c != '.' && c != '+' && c != '-' && (c < 'a' || c > 'z') {
			return 0, 0, false
		}
	}
	if !digits(majorText) || !digits(minorText) || len(majorText) > 4 || len(minorText) > 4 {
		return 0, 0, false
	}
	major, _ = strconv.Atoi(majorText)
	minor, _ = strconv.Atoi(minorText)
	return major, minor, true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// compareVersions orders "major.minor" strings numerically ("2.9" before
// "2.10"); anything unreadable sorts first, then by text.
func compareVersions(a, b string) int {
	am, an, aok := parseMajorMinor(a)
	bm, bn, bok := parseMajorMinor(b)
	switch {
	case aok != bok:
		if aok {
			return 1
		}
		return -1
	case !aok:
		return strings.Compare(a, b)
	case am != bm:
		return am - bm
	}
	return an - bn
}
