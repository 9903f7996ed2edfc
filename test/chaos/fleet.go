package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/internal/testpg"
)

// The fleet mode: N `sealgate serve` processes sharing one PostgreSQL
// database (a private cluster, internal/testpg) and one bucket, each with
// its own data directory and ports, all given the same master key
// (SEALGATE_MASTER_KEY) and the same keys/ directory (the ledger key), as
// an operator sets them up: `sealgate init` once, keys/ copied.

const (
	// endContract is the contract ended during the run; one message in
	// endTagEvery names it in its subject.
	endContract = "C-END"
	endTagEvery = 10
)

// fleet is what the instances share beyond the store.
type fleet struct {
	pg        *testpg.Server
	url       string
	env       []string // SEALGATE_DATABASE_URL, SEALGATE_MASTER_KEY
	ledgerPub string

	mu  sync.Mutex
	end *contractEnd
}

// contractEnd is the contract ended during the run.
type contractEnd struct {
	Code        string
	Start, Done time.Time // `sealgate contract end` started and returned
	Cert        string    // certificate file
	Err         string    // the end failed ("" it succeeded)
	// Attempts: an operator runs `contract end` again when it fails
	// (it resumes an interrupted end); FirstErr is the first failure.
	Attempts int
	FirstErr string
	CertErr  string // `audit verify-certificate` failed ("" it verified)
	// From the database after the drain:
	DBMessages        int // messages recorded under the contract
	CancelledMessages int // of those, with deliveries cancelled (by the end: nothing else cancels in a run)
}

// startFleet starts PostgreSQL (for rc.Database postgres) and prepares the
// keys every instance shares.
func startFleet(ctx context.Context, rc runConfig, work string, data []string) (*fleet, error) {
	if rc.database() != "postgres" {
		return nil, fmt.Errorf("%d instances need -database postgres (SQLite is one machine's)", len(data))
	}
	// The benchmark's cluster flushes every commit to the disk as in
	// production (SQLite does, in the run it is compared with); the
	// chaos runs' cluster does not (a crash of the server process loses
	// nothing the kernel holds).
	start := testpg.Start
	if rc.Profile == profileBench {
		start = func(ctx context.Context) (*testpg.Server, error) { return testpg.StartBench(ctx, true) }
	}
	pg, err := start(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to start PostgreSQL: %w", err)
	}
	fl := &fleet{pg: pg}
	if fl.url, err = pg.CreateDatabase(ctx, "chaos"); err != nil {
		fl.close()
		return nil, err
	}
	master, err := initKeys(ctx, rc.Bin, filepath.Join(work, "init"), data)
	if err != nil {
		fl.close()
		return nil, err
	}
	fl.ledgerPub = filepath.Join(data[0], "keys", "ledger.pub")
	fl.env = []string{"SEALGATE_DATABASE_URL=" + fl.url, "SEALGATE_MASTER_KEY=" + master}
	if rc.Lease > 0 {
		// How long a claimed delivery stays an instance's: after a kill,
		// another instance takes its deliveries over once it ends.
		fl.env = append(fl.env, "SEALGATE_DELIVERY_LEASE="+rc.Lease.String())
	}
	if rc.Profile == profileBench {
		if err := fl.resetStatements(ctx); err != nil {
			fl.close()
			return nil, err
		}
	}
	fmt.Fprintf(rc.Log, "chaos: %s: PostgreSQL in %s\n", rc.Name, pg.Dir)
	return fl, nil
}

// resetStatements creates pg_stat_statements in the run's database (the
// benchmark's cluster loads it) and empties it.
func (fl *fleet) resetStatements(ctx context.Context) error {
	db, err := sql.Open("pgx", fl.url)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return fmt.Errorf("failed to create pg_stat_statements: %w", err)
	}
	if _, err := db.ExecContext(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		return fmt.Errorf("failed to reset pg_stat_statements: %w", err)
	}
	return nil
}

// statements returns the statements the run's database executed (each
// a round trip from an instance, apart from the harness's own few
// queries while it drains) and the most frequent ones, "calls text".
func (fl *fleet) statements(ctx context.Context) (int64, []string, error) {
	db, err := sql.Open("pgx", fl.url)
	if err != nil {
		return 0, nil, err
	}
	defer db.Close()
	const mine = `dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`
	var total int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements WHERE `+mine).Scan(&total); err != nil {
		return 0, nil, fmt.Errorf("failed to read pg_stat_statements: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT calls, query FROM pg_stat_statements WHERE `+mine+` ORDER BY calls DESC LIMIT 40`)
	if err != nil {
		return 0, nil, fmt.Errorf("failed to read pg_stat_statements: %w", err)
	}
	defer rows.Close()
	var top []string
	for rows.Next() {
		var n int64
		var q string
		if err := rows.Scan(&n, &q); err != nil {
			return 0, nil, err
		}
		top = append(top, fmt.Sprintf("%8d %.110s", n, strings.Join(strings.Fields(q), " ")))
	}
	return total, top, rows.Err()
}

func (fl *fleet) close() {
	if fl.pg != nil {
		fl.pg.Stop()
	}
}

// initKeys runs `sealgate init` once in dir and copies its keys/ (the
// ledger signing key, sealed to the master key, and its verifier key)
// into every data directory; it returns the master key, which the
// instances get in SEALGATE_MASTER_KEY.
func initKeys(ctx context.Context, bin, dir string, data []string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, bin, "init", "-o", filepath.Join(dir, "sealgate.toml"), "--data-dir", filepath.Join(dir, "data"))
	cmd.Env = withoutSealgateEnv(os.Environ())
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("sealgate init: %w\n%s", err, out)
	}
	keys := filepath.Join(dir, "data", "keys")
	b, err := os.ReadFile(filepath.Join(keys, "master.key"))
	if err != nil {
		return "", fmt.Errorf("failed to read the master key: %w", err)
	}
	var master string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			master = line
		}
	}
	for _, d := range data {
		if err := os.MkdirAll(filepath.Join(d, "keys"), 0o700); err != nil {
			return "", fmt.Errorf("failed to create keys directory: %w", err)
		}
		for _, f := range []string{"ledger.key.age", "ledger.pub"} {
			b, err := os.ReadFile(filepath.Join(keys, f))
			if err == nil {
				err = os.WriteFile(filepath.Join(d, "keys", f), b, 0o600)
			}
			if err != nil {
				return "", fmt.Errorf("failed to copy %s: %w", f, err)
			}
		}
	}
	return master, nil
}

// withoutSealgateEnv drops SEALGATE_* settings from env, so that `init`
// makes keys of its own in its own directory.
func withoutSealgateEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SEALGATE_") || strings.HasPrefix(kv, "SEALGATE_REQUIRE") {
			out = append(out, kv)
		}
	}
	return out
}

// addContract registers the contract the run ends, open to any recipient.
func (fl *fleet) addContract(ctx context.Context, gw *gatewayProc) error {
	_, err := gw.cli(ctx, "contract", "add", endContract, "--name", "Chaos: ended during the run", "--any-recipient")
	return err
}

var certPathRE = regexp.MustCompile(`JSON: (\S+\.json\.gz)`)

// endAttempts is how often the run tries `contract end` before it
// reports the end failed.
const endAttempts = 3

// endContract ends the contract through one instance's CLI, while traffic
// flows (again, as an operator would, while it fails), and verifies the
// certificate it issued.
func (fl *fleet) endContract(ctx context.Context, gw *gatewayProc, now func() time.Time) error {
	e := &contractEnd{Code: endContract, Start: now()}
	fl.mu.Lock()
	fl.end = e
	fl.mu.Unlock()
	var out string
	var err error
	for e.Attempts < endAttempts {
		e.Attempts++
		out, err = gw.cli(ctx, "contract", "end", endContract, "--reason", "chaos run", "--yes")
		if err == nil {
			break
		}
		if e.FirstErr == "" {
			e.FirstErr = err.Error()
		}
		sleep(ctx, 2*time.Second)
	}
	e.Done = now()
	if err != nil {
		e.Err = err.Error()
		return err
	}
	m := certPathRE.FindStringSubmatch(out)
	if m == nil {
		e.Err = "no certificate in the output:\n" + out
		return errors.New(e.Err)
	}
	e.Cert = m[1]
	if _, err := gw.cli(ctx, "audit", "verify-certificate", "--key", "@"+fl.ledgerPub, e.Cert); err != nil {
		e.CertErr = err.Error()
		return err
	}
	return nil
}

// ended returns the contract end with the database's figures, nil when no
// end was attempted.
func (fl *fleet) ended(ctx context.Context, st gatewayState) (*contractEnd, error) {
	fl.mu.Lock()
	e := fl.end
	fl.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	db, err := st.openDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages m JOIN contracts c ON c.id = m.contract_id WHERE c.code = $1`,
		e.Code).Scan(&e.DBMessages); err != nil {
		return nil, fmt.Errorf("failed to count the contract's messages: %w", err)
	}
	// The end records "cancelled: contract ended" as the rows' last
	// error, then erases it on the external rows with their recipients
	// (outbox.ForgetExternalRecipients); nothing else in the run cancels
	// rows, so any cancelled row of the contract's messages is the end's.
	if err := db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT o.message_id) FROM outbound o JOIN messages m ON m.id = o.message_id
		JOIN contracts c ON c.id = m.contract_id WHERE c.code = $1 AND o.status = 'cancelled'`,
		e.Code).Scan(&e.CancelledMessages); err != nil {
		return nil, fmt.Errorf("failed to count the contract's cancelled messages: %w", err)
	}
	return e, nil
}

// verifyLedger signs a checkpoint and verifies the one ledger the
// instances wrote (`sealgate audit checkpoint`, `audit verify-db`):
// "ok" or what failed.
func (fl *fleet) verifyLedger(ctx context.Context, gw *gatewayProc) string {
	if _, err := gw.cli(ctx, "audit", "checkpoint"); err != nil {
		return oneLine(err.Error())
	}
	if _, err := gw.cli(ctx, "audit", "verify-db"); err != nil {
		return oneLine(err.Error())
	}
	return "ok"
}

// countLogErrors counts level=ERROR lines of an instance's log and keeps
// up to 8 distinct messages in samples.
func countLogErrors(path string, samples *[]string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "level=ERROR") {
			continue
		}
		n++
		msg := line
		if i := strings.Index(line, "msg="); i >= 0 {
			msg = line[i:]
		}
		msg = oneLine(msg)
		if len(*samples) < 8 && !containsPrefix(*samples, msg[:min(len(msg), 60)]) {
			*samples = append(*samples, filepath.Base(path)+": "+msg)
		}
	}
	return n
}

func containsPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}
