package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File    string // the file as the caller named it
	Line    int    // 1-based; 0 when there is no line to give (a missing key)
	Column  int    // 1-based; set only for syntax errors
	Key     string // full dotted key, such as "policy.allow_actions"; empty for syntax errors
	Message string
}

// String formats the problem as "FILE:LINE: KEY: message", leaving out
// the parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is every problem found in one configuration file. Its message has
// one problem per line.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems by line; problems without a line (missing
// keys) come last, in the order they were found.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Line, ps[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}

// Warning is something in a configuration that works but probably should
// not stay as it is, such as a token file that others can read.
type Warning struct {
	File    string // the configuration file (or, failing that, the file the warning is about)
	Key     string // the dotted key the warning is about
	Message string // what is wrong and what to do; never holds a secret
}

// String formats the warning as "FILE: KEY: MESSAGE".
func (w Warning) String() string {
	return w.File + ": " + w.Key + ": " + w.Message
}
