package api

import (
	"strings"
	"testing"
)

func TestCheckActor(t *testing.T) {
	good := []string{
		"ssh:alice (SHA256:AbCdEf0123456789+/xyz)",
		"alice",
		"José Ñúñez",
		"a b",
		strings.Repeat("x", MaxActorLen),
		strings.Repeat("é", MaxActorLen/2),
	}
	for _, s := range good {
		if err := CheckActor(s); err != nil {
			t.Errorf("CheckActor(%q): %v", s, err)
		}
	}
	bad := map[string]string{
		"":                                 "empty",
		strings.Repeat("x", MaxActorLen+1): "201 bytes long",
		"alice\r\nX-Evil: 1":               "control character",
		"alice\n":                          "control character",
		"al\tice":                          "control character",
		"alice\x1b[31m":                    "control character",
		"alice\x00":                        "control character",
		"alice\x7f":                        "control character",
		"alice\u0085":                      "control character",
		"alice\u2028bob":                   "separator",
		"alice\u202egnp.exe":               "bidirectional",
		"alice\xff":                        "not valid UTF-8",
		" alice":                           "starts with a space",
		"alice ":                           "ends with a space",
		"alice\u00a0":                      "ends with a space",
	}
	for s, want := range bad {
		err := CheckActor(s)
		if err == nil {
			t.Errorf("CheckActor(%q) passed", s)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, want) {
			t.Errorf("CheckActor(%q) = %q, want it to say %q", s, msg, want)
		}
		// The value is quoted, never raw: no control byte, nothing unbounded.
		if strings.ContainsAny(msg, "\r\n\t\x1b\x00\x7f") || strings.Contains(msg, "\u202e") || strings.Contains(msg, "\u2028") {
			t.Errorf("CheckActor(%q) error carries a raw control character: %q", s, msg)
		}
		if len(msg) > 300 {
			t.Errorf("CheckActor(%q) error is %d bytes long", s, len(msg))
		}
	}
}

func TestQuoteActorTruncatesOnARuneBoundary(t *testing.T) {
	s := strings.Repeat("é", 100) // 2 bytes each: byte 40 is a rune start
	if q := quoteActor(s); q != `"`+strings.Repeat("é", 20)+`"...` {
		t.Errorf("quoteActor = %s", q)
	}
	s = "x" + strings.Repeat("é", 100) // byte 40 is inside a rune
	if q := quoteActor(s); q != `"x`+strings.Repeat("é", 19)+`"...` {
		t.Errorf("quoteActor = %s", q)
	}
}

func TestActorViaOpsToken(t *testing.T) {
	if got := ActorViaOpsToken("ssh:alice (SHA256:AbC)"); got != "ssh:alice (SHA256:AbC) via ops-token" {
		t.Errorf("ActorViaOpsToken = %q", got)
	}
}
