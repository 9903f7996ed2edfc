package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// postfixInstance is a private Postfix, configured as a plain relay to the
// sink: its own configuration, queue and data directories, listening on a
// loopback port. It never touches the system's Postfix (no shared
// directories, no changes to /etc/postfix).
type postfixInstance struct {
	dir  string
	conf string
	addr string
}

// startPostfix writes the configuration into dir and starts the master.
// The postfix user must be able to reach dir: directories from dir up to
// root (the harness's work directory) are made searchable; those above
// root must already be.
func startPostfix(ctx context.Context, dir, root, relayTo string) (*postfixInstance, error) {
	if _, err := exec.LookPath("postfix"); err != nil {
		return nil, fmt.Errorf("postfix is not installed (apt-get install postfix): %w", err)
	}
	daemonDir, err := postconf("daemon_directory")
	if err != nil {
		return nil, err
	}
	u, err := user.Lookup("postfix")
	if err != nil {
		return nil, fmt.Errorf("failed to find the postfix user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &postfixInstance{dir: dir, conf: filepath.Join(dir, "conf"), addr: addr}
	for _, d := range []string{p.conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("failed to create postfix directory: %w", err)
		}
	}
	inside := true
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("failed to stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if !inside {
				return nil, fmt.Errorf("the postfix user cannot reach %s: %s is not searchable (use a work directory under /tmp)", dir, d)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return nil, fmt.Errorf("failed to make %s searchable: %w", d, err)
			}
		}
		if d == root {
			inside = false
		}
	}
	if err := os.Chown(filepath.Join(dir, "data"), uid, -1); err != nil {
		return nil, fmt.Errorf("failed to chown postfix data directory: %w", err)
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
daemon_directory = %[2]s
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.chaos.test
mydomain = chaos.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:%[3]s
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
message_size_limit = 60000000
smtp_destination_concurrency_limit = 20
default_process_limit = 100
`, dir, daemonDir, portOf(relayTo))
	master := fmt.Sprintf(`%s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, addr)
	if err := os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(main), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write main.cf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(master), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write master.cf: %w", err)
	}
	if err := p.postfix(ctx, "start"); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("postfix did not listen on %s (see %s/maillog)", addr, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *postfixInstance) postfix(ctx context.Context, verb string) error {
	cmd := exec.CommandContext(ctx, "postfix", "-c", p.conf, verb)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
		return fmt.Errorf("failed to run postfix %s: %w\n%s%s", verb, err, out.String(), log)
	}
	return nil
}

// Stop stops the instance.
func (p *postfixInstance) Stop() error { return p.postfix(context.Background(), "stop") }

func postconf(name string) (string, error) {
	out, err := exec.Command("postconf", "-h", name).Output()
	if err != nil {
		return "", fmt.Errorf("failed to run postconf: %w", err)
	}
	return string(bytes.TrimSpace(out)), nil
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// runPostfix is the same workload against Postfix relaying to a sink.
func runPostfix(ctx context.Context, rc runConfig) (*runReport, error) {
	work := filepath.Join(rc.WorkDir, rc.Name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create work directory: %w", err)
	}
	gen := newGenerator(rc.Seed, rc.Profile, rc.BigEvery)
	sk, err := startSink(gen, isInternal, rc.Now, "")
	if err != nil {
		return nil, err
	}
	sk.relay = true
	defer sk.Down()
	pf, err := startPostfix(ctx, filepath.Join(work, "postfix"), rc.WorkDir, sk.Addr())
	if err != nil {
		return nil, err
	}
	defer pf.Stop()
	fmt.Fprintf(rc.Log, "chaos: %s: postfix on %s relaying to %s, %d messages over %d sessions\n", rc.Name, pf.addr, sk.Addr(), rc.Messages, rc.Sessions)
	snd := &sender{addr: pf.addr, gen: gen, sessions: rc.Sessions, dialWait: 30 * time.Second, timeout: 3 * time.Minute, now: rc.Now}
	results := snd.run(ctx, rc.Messages)
	owed := 0
	for i, r := range results {
		if r.Outcome == accepted {
			m := gen.spec(i)
			owed += len(m.External)
			if len(m.Internal) > 0 {
				owed++
			}
		}
	}
	deadline := time.Now().Add(rc.DrainTimeout)
	for sk.Count() < owed && time.Now().Before(deadline) {
		sleep(ctx, 50*time.Millisecond)
	}
	dels := sk.Deliveries()
	rep := &runReport{Name: rc.Name, Target: "postfix", Sessions: rc.Sessions, Profile: rc.Profile}
	rep.Tally = reconcile(gen, results, dels, nil, true, nil)
	rep.Stats = computeStats(results, dels, rep.Tally.Accepted)
	return rep, nil
}
