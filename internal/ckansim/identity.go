package ckansim

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
)

// sessionCookie is CKAN's session cookie (SESSION_COOKIE_NAME) and
// csrfField the form field and session key of its CSRF token
// (WTF_CSRF_FIELD_NAME).
const (
	sessionCookie = "ckan"
	csrfField     = "_csrf_token"
)

// session is a logged-in browser session.
type session struct {
	id     string
	userID string
	csrf   string
}

type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

func (ss *sessions) start(userID string) *session {
	s := &session{id: randomHex(16), userID: userID, csrf: randomHex(20)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.byID[s.id] = s
	return s
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byID[id]
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, id)
}

// caller is who a request acts as. A nil user is CKAN's anonymous user.
type caller struct {
	user    *user
	session *session // set when the session cookie identified the user
}

func (c caller) name() string {
	if c.user == nil {
		return ""
	}
	return c.user.Name
}

func (c caller) sysadmin() bool { return c.user != nil && c.user.Sysadmin }

// identify finds the caller as flask-login does in CKAN 2.10+: the session
// cookie first, then the API token header. CKAN 2.11 reads the token only
// from Authorization (apitoken_header_name); 2.10 reads X-CKAN-API-Key
// (apikey_header_name) and falls back to Authorization. The token is taken
// raw: "Bearer <token>" does not decode. An unknown token is anonymous.
//
// The caller must hold the catalogue's lock.
func (s *Sim) identify(r *http.Request) caller {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess := s.sessions.get(c.Value); sess != nil {
			if u := s.cat.userByName(sess.userID); u != nil && u.State == "active" {
				return caller{user: u, session: sess}
			}
		}
	}
	token := r.Header.Get("Authorization")
	if s.surface.Version == "2.10" {
		if key := r.Header.Get("X-CKAN-API-Key"); key != "" {
			token = key
		}
	}
	if token == "" {
		return caller{}
	}
	t, ok := s.cat.tokens[token]
	if !ok {
		return caller{}
	}
	if u := s.cat.userByName(t.UserID); u != nil && u.State == "active" {
		return caller{user: u}
	}
	return caller{}
}
