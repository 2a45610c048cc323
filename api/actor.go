package api

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ActorHeader names the person behind a control call made with the gate's
// ops token, for the audit log: a console that holds the ops token on
// behalf of several people (ckanops serve, over SSH) sends it with every
// call to the gate's control API, e.g.
//
//	Ckanops-Actor: ssh:alice (SHA256:AbC...)
//
// The gate accepts it only from the ops token, and then acts as
// "<name> via ops-token": that is the actor of the mode record, the audit
// log, the runbook and its events. A CKAN sysadmin's token acts as itself
// (ckan:<user>) and is refused (403) if it names another actor. A value
// CheckActor refuses, or more than one such header, is a 400.
const ActorHeader = "Ckanops-Actor"

// MaxActorLen bounds an ActorHeader value, in bytes.
const MaxActorLen = 200

// OpsTokenActor is the actor of a call made with the gate's ops token and
// no ActorHeader.
const OpsTokenActor = "ops-token"

// ActorViaOpsToken is the actor the gate records for a call made with the
// ops token on behalf of name (sent as ActorHeader).
func ActorViaOpsToken(name string) string { return name + " via " + OpsTokenActor }

// maxQuotedActor bounds how much of a refused value an error quotes.
const maxQuotedActor = 40

// CheckActor reports whether name may be sent as ActorHeader: 1 to
// MaxActorLen bytes of valid UTF-8, with no control character (no CR, LF,
// tab or escape: the name goes into the audit log and onto operators'
// terminals), no Unicode bidirectional-formatting or line-separator
// character (they reorder or break what a terminal shows), and no leading
// or trailing space. The error quotes at most the first 40 bytes of a
// refused value, escaped (%q), never the raw value.
func CheckActor(name string) error {
	if name == "" {
		return fmt.Errorf("the actor is empty: name the person behind the change (1 to %d bytes), or send no %s", MaxActorLen, ActorHeader)
	}
	if len(name) > MaxActorLen {
		return fmt.Errorf("the actor %s is %d bytes long: at most %d", quoteActor(name), len(name), MaxActorLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("the actor %s is not valid UTF-8", quoteActor(name))
	}
	for i, r := range name {
		if bad := actorRuneProblem(r); bad != "" {
			return fmt.Errorf("the actor %s holds %s (%U) at byte %d: an actor is one line of printable text", quoteActor(name), bad, r, i)
		}
	}
	if r, _ := utf8.DecodeRuneInString(name); unicode.IsSpace(r) {
		return fmt.Errorf("the actor %s starts with a space: trim it", quoteActor(name))
	}
	if r, _ := utf8.DecodeLastRuneInString(name); unicode.IsSpace(r) {
		return fmt.Errorf("the actor %s ends with a space: trim it", quoteActor(name))
	}
	return nil
}

// actorRuneProblem names what is wrong with r in an actor, or "".
func actorRuneProblem(r rune) string {
	switch {
	case unicode.IsControl(r):
		return "a control character"
	case r == '\u2028' || r == '\u2029':
		return "a line or paragraph separator"
	case r == '\u061c' || r == '\u200e' || r == '\u200f' ||
		'\u202a' <= r && r <= '\u202e' || '\u2066' <= r && r <= '\u2069':
		return "a bidirectional formatting character"
	}
	return ""
}

// quoteActor quotes (%q) at most the first maxQuotedActor bytes of s, so
// that an error never carries a raw or unbounded value.
func quoteActor(s string) string {
	if len(s) <= maxQuotedActor {
		return fmt.Sprintf("%q", s)
	}
	cut := maxQuotedActor
	for cut > maxQuotedActor-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...", s[:cut])
}
