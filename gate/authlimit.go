package gate

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Failed authentications are limited per client address: an address that
// failed authLimit times within authWindow gets 429 for its credentialed
// requests, without their credentials being looked at (so neither the ops
// token comparison nor CKAN is reachable to it), until the oldest of those
// failures is authWindow old. A success does not wipe the failures: an
// attacker holding one valid token of its own must not be able to
// interleave it to keep guessing.
const (
	authLimit   = 10
	authWindow  = time.Minute
	authClients = 10000 // addresses remembered at most
)

// authLimiter counts, per client address, the failed authentications of
// the last window and the checks under way. Its memory is bounded: at most
// max addresses, the least recently active forgotten first, and an
// address with nothing left to remember is dropped at once.
type authLimiter struct {
	limit  int
	window time.Duration
	max    int

	mu      sync.Mutex
	clients map[string]*list.Element // key -> *authClient
	lru     list.List                // least recently active first
}

type authClient struct {
	key          string
	failures     []time.Time // within the window, oldest first; at most limit
	pending      int         // checks begun and not ended
	failAudited  time.Time   // when an auth-failed entry was last written
	limitAudited time.Time   // when an auth-rate-limited entry was last written
}

func newAuthLimiter(limit int, window time.Duration, max int) *authLimiter {
	return &authLimiter{limit: limit, window: window, max: max, clients: map[string]*list.Element{}}
}

// authKey is what failures are counted by: the address, or for IPv6 its
// /64, which one host (or one customer) usually holds whole.
func authKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		if len(addr) > 64 {
			addr = addr[:64]
		}
		return addr
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}

// authTicket is one admitted check; end it exactly once (later calls do
// nothing).
type authTicket struct {
	l     *authLimiter
	c     *authClient
	ended bool
}

// begin admits a check of credentials from addr, or says how long the
// address must wait. Checks under way count against the limit, so that
// concurrent guesses cannot overrun it.
func (l *authLimiter) begin(addr string, now time.Time) (*authTicket, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.client(authKey(addr))
	c.prune(now, l.window)
	if len(c.failures)+c.pending >= l.limit {
		return nil, l.wait(c, now), false
	}
	c.pending++
	return &authTicket{l: l, c: c}, 0, true
}

// authOutcome is what an ended check leaves to report.
type authOutcome struct {
	failures     int           // in the window, this one included
	auditFailure bool          // the address's first audited failure this window
	auditLimit   bool          // this failure reached the limit (first time this window)
	wait         time.Duration // until the address may try again, when limited
}

// end settles the check: failed or not.
func (t *authTicket) end(failed bool, now time.Time) authOutcome {
	if t == nil {
		return authOutcome{}
	}
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.ended {
		return authOutcome{}
	}
	t.ended = true
	t.c.pending--
	c := t.c
	if e, ok := l.clients[c.key]; !ok || e.Value != c {
		if !failed {
			return authOutcome{} // forgotten meanwhile
		}
		c = l.client(c.key)
	}
	c.prune(now, l.window)
	if !failed {
		l.forgetIdle(c, now)
		return authOutcome{}
	}
	l.lru.MoveToBack(l.clients[c.key])
	c.failures = append(c.failures, now)
	if len(c.failures) > l.limit {
		c.failures = c.failures[len(c.failures)-l.limit:]
	}
	out := authOutcome{failures: len(c.failures)}
	if c.failAudited.IsZero() || now.Sub(c.failAudited) >= l.window {
		out.auditFailure, c.failAudited = true, now
	}
	if len(c.failures) >= l.limit {
		out.wait = l.wait(c, now)
		if c.limitAudited.IsZero() || now.Sub(c.limitAudited) >= l.window {
			out.auditLimit, c.limitAudited = true, now
		}
	}
	return out
}

// client returns key's record, creating it (and forgetting the least
// recently active address if memory is full) if needed. l.mu is held.
func (l *authLimiter) client(key string) *authClient {
	if e, ok := l.clients[key]; ok {
		l.lru.MoveToBack(e)
		return e.Value.(*authClient)
	}
	for len(l.clients) >= l.max {
		front := l.lru.Front()
		delete(l.clients, front.Value.(*authClient).key)
		l.lru.Remove(front)
	}
	c := &authClient{key: key}
	l.clients[key] = l.lru.PushBack(c)
	return c
}

// forgetIdle drops c once it holds nothing the next window needs.
func (l *authLimiter) forgetIdle(c *authClient, now time.Time) {
	if c.pending > 0 || len(c.failures) > 0 || now.Sub(c.failAudited) < l.window || now.Sub(c.limitAudited) < l.window {
		return
	}
	if e, ok := l.clients[c.key]; ok && e.Value == c {
		delete(l.clients, c.key)
		l.lru.Remove(e)
	}
}

// prune drops the failures older than the window.
func (c *authClient) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(c.failures) && now.Sub(c.failures[i]) >= window {
		i++
	}
	c.failures = c.failures[i:]
}

// wait is how long until c may try again: until enough failures leave the
// window, or (when only checks under way fill it) a second. l.mu is held.
func (l *authLimiter) wait(c *authClient, now time.Time) time.Duration {
	d := time.Second
	if n := len(c.failures); n >= l.limit {
		d = c.failures[n-l.limit].Add(l.window).Sub(now)
	}
	return max(d, time.Second)
}

// size is how many addresses are remembered (for tests).
func (l *authLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
