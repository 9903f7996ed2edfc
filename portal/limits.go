package portal

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/sealgate/sealgate/internal/ratelimit"
)

// The portal's limits. Each is counted by the Limiter that Deps.Limits
// makes: in this process (one instance on SQLite), or in the database
// shared by every instance (PostgreSQL), so that a client sent to another
// instance by a load balancer is counted as one. An event that cannot be
// counted (the database is down) is refused: 503 with a retry-later
// answer, never an attempt let through uncounted.
type limits struct {
	ip     ratelimit.Limiter // counted requests (passphrase attempts and other POSTs) per client address a minute
	link   ratelimit.Limiter // passphrase attempts per link a minute, on top of the lock after N failures
	record ratelimit.Limiter // requests on one link recorded at no cost (recordsPerMinute)
	login  ratelimit.Limiter // failed sign-ins (and key registrations) per client address in 10 minutes
}

// Scopes of the limits (rate_counters.scope when shared).
const (
	scopeIP     = "portal.ip"
	scopeLink   = "portal.link"
	scopeRecord = "portal.record"
	scopeLogin  = "portal.login"
)

func newLimits(mk ratelimit.Maker, perIP, perLink int) limits {
	return limits{
		ip:     mk(scopeIP, perIP, time.Minute),
		link:   mk(scopeLink, perLink, time.Minute),
		record: mk(scopeRecord, recordsPerMinute, time.Minute),
		login:  mk(scopeLogin, 20, 10*time.Minute),
	}
}

// count is one event to count: its limit and key.
type count struct {
	lim ratelimit.Limiter
	key string
}

func (s *Server) ipCount(r *http.Request) count { return count{s.limits.ip, s.clientIP(r)} }

func (s *Server) linkCount(l *link) count {
	return count{s.limits.link, l.TransferID + "/" + strconv.FormatInt(l.RecipientID, 10)}
}

// allowed counts each event in turn, stopping at the first one over its
// limit. It returns "" when all are within their limits; otherwise the
// message key and status to refuse the request with (429 over a limit,
// 503 when an event could not be counted), having set Retry-After.
func (s *Server) allowed(ctx context.Context, w http.ResponseWriter, counts ...count) (string, int) {
	for _, c := range counts {
		ok, err := c.lim.Allow(ctx, c.key)
		if err != nil {
			return s.cannotCount(w, err)
		}
		if !ok {
			w.Header().Set("Retry-After", "60")
			return "msg.ratelimited", http.StatusTooManyRequests
		}
	}
	return "", 0
}

// loginAttempt counts a sign-in attempt from ip as a failure before it is
// checked, so that attempts sent at once are all counted (checking the
// count first and counting after a failure let any number sent together
// through); one that does not fail is given back (loginNotFailed). Like
// allowed, it returns "" within the limit, else the message key and
// status to refuse with; errKey is the key for "over the limit" on the
// caller's page.
func (s *Server) loginAttempt(ctx context.Context, w http.ResponseWriter, ip, errKey string) (string, int) {
	ok, err := s.limits.login.Allow(ctx, ip)
	if err != nil {
		return s.cannotCount(w, err)
	}
	if !ok {
		return errKey, http.StatusTooManyRequests
	}
	return "", 0
}

// loginNotFailed gives back the attempt loginAttempt counted from ip: it
// did not fail. A failure to give it back is logged (the attempt stays
// counted as a failure).
func (s *Server) loginNotFailed(ctx context.Context, ip string) {
	if err := s.limits.login.Undo(context.WithoutCancel(ctx), ip); err != nil {
		s.Log.Error("failed to give back a counted sign-in attempt", "error", err)
	}
}

func (s *Server) cannotCount(w http.ResponseWriter, err error) (string, int) {
	s.Log.Error("refused: the attempt cannot be counted", "error", err)
	w.Header().Set("Retry-After", "60")
	return "msg.nocount", http.StatusServiceUnavailable
}
