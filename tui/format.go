package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/ckanops/ckanops/internal/human"
)

// span writes a duration precisely enough for transactions and writes:
// 850ms, 12s, 3m12s, 2h05m.
func span(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return human.Ago(d)
}

// clockTime writes a time as the log and the site view show it.
func clockTime(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("15:04:05")
}

// dateTime writes a time with its date when it is not today.
func dateTime(t, now time.Time, loc *time.Location) string {
	t, now = t.In(loc), now.In(loc)
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04")
}

// width is the number of cells s takes; plain ASCII is counted fast.
func width(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c < 0x20 {
			return ansi.StringWidth(s)
		}
	}
	return len(s)
}

// fit pads or cuts s to exactly w cells.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	n := width(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	if n == w {
		return s
	}
	return s + strings.Repeat(" ", w-n)
}

// fitRight right-aligns s in w cells.
func fitRight(s string, w int) string {
	n := width(s)
	if n >= w {
		return fit(s, w)
	}
	return strings.Repeat(" ", w-n) + s
}

// cut shortens s to at most w cells.
func cut(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if width(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

// oneLine flattens white space to single spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// wrap breaks s into lines of at most w cells, at spaces where it can.
func wrap(s string, w int) []string {
	if w < 10 {
		w = 10
	}
	var out []string
	for _, para := range strings.Split(s, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			for width(word) > w {
				if line != "" {
					out = append(out, line)
					line = ""
				}
				out = append(out, ansi.Truncate(word, w, ""))
				word = ansi.Cut(word, w, width(word))
			}
			switch {
			case line == "":
				line = word
			case width(line)+1+width(word) <= w:
				line += " " + word
			default:
				out = append(out, line)
				line = word
			}
		}
		out = append(out, line)
	}
	return out
}

// seconds turns a number of seconds into a duration.
func seconds(f float64) time.Duration {
	return time.Duration(f * float64(time.Second))
}

// plural writes "1 write", "2 writes".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// shortTime writes a time to the minute ("17:10", or "17:10:30" when it
// has seconds), with its date when it is not today ("Mar 15 17:10"):
// how planned windows are written.
func shortTime(t, now time.Time, loc *time.Location) string {
	t, now = t.In(loc), now.In(loc)
	layout := "15:04"
	if t.Second() != 0 {
		layout = "15:04:05"
	}
	if t.YearDay() != now.YearDay() || t.Year() != now.Year() {
		layout = "Jan 2 " + layout
	}
	return t.Format(layout)
}
