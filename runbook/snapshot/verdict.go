package snapshot

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// maxNamedFiles is how many changed storage entries the verdict names
// before it says "and N more".
const maxNamedFiles = 20

// bookkeeping says whether a change d to CKAN table relname is one CKAN
// makes while read-only, serving reads, and why. Only CKAN's database has
// such tables.
func bookkeeping(relname string, d Counters) (why string, ok bool) {
	onlyUpdates := d.Inserts == 0 && d.Deletes == 0
	switch relname {
	case "user":
		return "user.last_active", onlyUpdates
	case "api_token":
		return "api_token.last_access", onlyUpdates
	case "dashboard":
		return "dashboard activity", true
	case "tracking_raw", "tracking_summary":
		return "page-view tracking", true
	}
	return "", false
}

// compareCounters names the tables of database source whose counters
// differ between before and after: changes to content go to changed,
// CKAN's bookkeeping (when ckanRules) to kept. Both come out sorted by
// table.
func compareCounters(source string, ckanRules bool, before, after map[string]Counters) (changed, kept []string) {
	for _, t := range sortedKeys(before, after) {
		b, inBefore := before[t]
		a, inAfter := after[t]
		what := source + " table " + t
		switch {
		case !inAfter:
			changed = append(changed, what+": dropped during the snapshot")
			continue
		case !inBefore:
			changed = append(changed, what+": created during the snapshot")
			continue
		}
		d := Counters{Inserts: a.Inserts - b.Inserts, Updates: a.Updates - b.Updates, Deletes: a.Deletes - b.Deletes}
		if d == (Counters{}) {
			continue
		}
		if d.Inserts < 0 || d.Updates < 0 || d.Deletes < 0 {
			changed = append(changed, what+": its counters went back (statistics reset?), so changes cannot be ruled out")
			continue
		}
		line := what + ": " + describeCounts(d)
		if ckanRules {
			_, relname, _ := strings.Cut(t, ".")
			if why, ok := bookkeeping(relname, d); ok {
				kept = append(kept, line+" ("+why+")")
				continue
			}
		}
		changed = append(changed, line)
	}
	return changed, kept
}

// describeCounts says "1 insert(s), 2 update(s)", leaving zeros out.
func describeCounts(d Counters) string {
	var parts []string
	if d.Inserts != 0 {
		parts = append(parts, fmt.Sprintf("%d insert(s)", d.Inserts))
	}
	if d.Updates != 0 {
		parts = append(parts, fmt.Sprintf("%d update(s)", d.Updates))
	}
	if d.Deletes != 0 {
		parts = append(parts, fmt.Sprintf("%d delete(s)", d.Deletes))
	}
	return strings.Join(parts, ", ")
}

// entry is what a walk records of one storage entry.
type entry struct {
	size  int64 // 0 for directories
	mtime int64 // Unix nanoseconds; 0 for directories
	mode  fs.FileMode
}

// compareStorage names the storage entries added, removed or modified
// between two walks, sorted by path, at most maxNamedFiles of them.
func compareStorage(before, after map[string]entry) []string {
	var lines []string
	n := 0
	add := func(s string) {
		n++
		if n <= maxNamedFiles {
			lines = append(lines, s)
		}
	}
	for _, p := range sortedKeys(before, after) {
		b, inBefore := before[p]
		a, inAfter := after[p]
		switch {
		case !inAfter:
			add(fmt.Sprintf("storage %s %s removed", kindOf(b.mode), p))
		case !inBefore:
			add(fmt.Sprintf("storage %s %s added", kindOf(a.mode), p))
		case a.mode.Type() != b.mode.Type():
			add(fmt.Sprintf("storage %s changed from a %s to a %s", p, kindOf(b.mode), kindOf(a.mode)))
		case a != b:
			add(fmt.Sprintf("storage %s %s modified", kindOf(a.mode), p))
		}
	}
	if n > maxNamedFiles {
		lines = append(lines, fmt.Sprintf("storage: and %d more change(s)", n-maxNamedFiles))
	}
	return lines
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "entry"
}

// verdictOf is the verdict given what changed.
func verdictOf(changed []string) string {
	if len(changed) == 0 {
		return Consistent
	}
	return Inconsistent
}

// sortedKeys is every key of before and after, sorted, each once.
func sortedKeys[V any](before, after map[string]V) []string {
	keys := make([]string, 0, len(after))
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
