package database

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Dialect names the SQL engine behind a DB.
type Dialect int

const (
	// SQLite is the embedded default: one file, one writer.
	SQLite Dialect = iota
	// Postgres is PostgreSQL, reached through pgx; several processes may
	// write at once.
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// IsURL reports whether target names a PostgreSQL database
// (postgres://… or postgresql://…) rather than a SQLite file.
func IsURL(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// Owners write one SQL text for both dialects, in SQLite's spelling; on
// PostgreSQL the driver (postgres.go) rewrites each statement with
// Rewrite before it reaches the server. The rewriting is lexical and
// small, and it leaves string literals, quoted identifiers and comments
// alone:
//
//   - placeholders: "?" becomes "$n" (n one more than the largest number
//     used so far, as SQLite numbers them) and "?NNN" becomes "$NNN";
//   - json_each(…) becomes json_array_elements_text(…): the one use is
//     "x IN (SELECT value FROM json_each(?))" with a JSON array bound to
//     the parameter, and both yield a column named value. PostgreSQL's
//     values are text: compare them with an integer column as
//     "CAST(value AS BIGINT)".
//
// Everything else is spelled so that both engines accept it (the
// PostgreSQL schema supplies what SQLite has built in: the collation
// nocase, the function json_extract for "$.key" paths):
//
//   - INSERT … ON CONFLICT DO NOTHING, not INSERT OR IGNORE;
//   - INSERT … RETURNING id, not LastInsertId;
//   - no boolean arithmetic: SUM(CASE WHEN … THEN 1 ELSE 0 END);
//   - a parameter whose type the statement does not fix (one in the
//     select list of INSERT … SELECT) gets a CAST;
//   - every selected column that is not aggregated is grouped.
//
// A boolean argument is stored as 0 or 1 in both dialects (the schema's
// flags are INTEGER columns). A comparison selected as a column (x IS
// NULL) comes back as 0/1 from SQLite and as a boolean from PostgreSQL:
// scan it into a bool.
//
// TestEveryStatementPrepares (postgres_test.go) prepares every complete
// SQL text of the module on both dialects.
func Rewrite(query string) string {
	if !strings.ContainsAny(query, "?jJ") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	next := 1 // number of the next bare "?"
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := skipQuoted(query, i)
			b.WriteString(query[i:j])
			i = j
		case c == '$':
			j := skipDollarQuoted(query, i)
			b.WriteString(query[i:j])
			i = j
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			end := len(query)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(query[i:end])
			i = end
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			n := next
			if j > i+1 {
				n, _ = strconv.Atoi(query[i+1 : j])
			}
			if n >= next {
				next = n + 1
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = j
		case (c == 'j' || c == 'J') && wordAt(query, i, "json_each("):
			b.WriteString("json_array_elements_text(")
			i += len("json_each(")
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipQuoted returns the index after the quoted string or identifier that
// starts at i (a doubled quote is an escaped one).
func skipQuoted(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == q {
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(s)
}

// skipDollarQuoted returns the index after the PostgreSQL dollar-quoted
// string ($$…$$ or $tag$…$tag$) that starts at i, or i+1 when none does.
func skipDollarQuoted(s string, i int) int {
	j := i + 1
	for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		return i + 1
	}
	tag := s[i : j+1]
	end := strings.Index(s[j+1:], tag)
	if end < 0 {
		return len(s)
	}
	return j + 1 + end + len(tag)
}

// wordAt reports whether s has word at i, case-insensitively, not preceded
// by an identifier character.
func wordAt(s string, i int, word string) bool {
	if len(s)-i < len(word) || !strings.EqualFold(s[i:i+len(word)], word) {
		return false
	}
	if i > 0 {
		p := s[i-1]
		if p == '_' || p == '.' || p >= '0' && p <= '9' || p >= 'a' && p <= 'z' || p >= 'A' && p <= 'Z' {
			return false
		}
	}
	return true
}

// IsUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure, in either dialect.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	// modernc.org/sqlite: "constraint failed: UNIQUE constraint failed: …
	// (2067)" or "… PRIMARY KEY … (1555)".
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "(1555)") || strings.Contains(s, "(2067)")
}

// IsTransient reports whether err is a failure that may go away if the
// work is tried again later: SQLite busy or locked; on PostgreSQL a
// serialization failure or deadlock that outlived the retries, a
// connection lost or refused, the server shutting down or out of
// connections or resources.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrClosed) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			strings.HasPrefix(pe.Code, "08"),       // connection exception
			strings.HasPrefix(pe.Code, "53"),       // insufficient resources
			strings.HasPrefix(pe.Code, "57P"),      // operator intervention (shutdown)
			pe.Code == "55P03", pe.Code == "57014": // lock not available, query canceled
			return true
		}
		return false
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true // the connection refused, cut or reset: a server restarting
	}
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked") ||
		strings.Contains(s, "driver: bad connection") || strings.Contains(s, "conn closed")
}

// retryable reports whether a PostgreSQL transaction that failed with err
// should be run again from its start: a serialization failure or a
// deadlock (the server's words for "another transaction got there first").
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
