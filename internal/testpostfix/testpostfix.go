// Package testpostfix runs a private Postfix for tests and load runs: its
// own configuration, queue and data directories, listening on a loopback
// port, relaying to test sinks. It never touches the system's Postfix (no
// shared directories, no changes to /etc/postfix). Starting it needs root
// (Postfix's master drops privileges to the postfix user itself) and the
// Debian postfix package.
package testpostfix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Start fails with these when it cannot run here; test with errors.Is.
var (
	ErrNotInstalled = errors.New("testpostfix: postfix is not installed (apt-get install postfix)")
	ErrNotRoot      = errors.New("testpostfix: starting a private Postfix needs root")
	ErrNoSASL       = errors.New("testpostfix: SASL users need saslpasswd2 (apt-get install sasl2-bin)")
)

// Options configure an instance.
type Options struct {
	// Dir is the instance's directory (created if missing).
	Dir string
	// Root: the postfix user must reach Dir, so directories from Dir up to
	// Root that others cannot search are made searchable; those above Root
	// must already be. Default: Dir.
	Root string
	// Hostname is myhostname (default postfix.test).
	Hostname string
	// Relayhost receives everything that Transport does not route
	// ("host:port"; "" = none).
	Relayhost string
	// Transport routes domains (and their subdomains) to "host:port" with
	// the smtp transport, ahead of Relayhost.
	Transport map[string]string
	// MyDestination lists the domains Postfix treats as local. Postfix
	// strips a local domain and re-resolves what is left: with
	// allow_percent_hack (Postfix's default) user%other@local is then
	// delivered to user@other, and a local part with an @ likewise.
	MyDestination []string
	// Main is appended to main.cf (e.g. "allow_percent_hack = yes\n"); a
	// parameter it sets replaces the one of the same name written by Start.
	Main string
	// Master is appended to master.cf: more services, e.g. an smtpd on
	// another loopback port with its own -o overrides.
	Master string
	// TLSCert and TLSKey (PEM) become smtpd_tls_cert_file and
	// smtpd_tls_key_file: an smtpd that sets smtpd_tls_security_level
	// offers STARTTLS with them.
	TLSCert, TLSKey []byte
	// SASLUsers ("user@realm" → password) are the accounts of Cyrus SASL
	// (sasldb, PLAIN and LOGIN) for an smtpd with smtpd_sasl_auth_enable.
	// Needs saslpasswd2 (Debian sasl2-bin).
	SASLUsers map[string]string
}

// Instance is a running private Postfix.
type Instance struct {
	Dir  string
	Conf string // its configuration directory (postfix -c)
	Addr string // its smtpd, host:port on loopback
}

// Start writes the configuration into o.Dir and starts the master; it
// returns once smtpd accepts connections.
func Start(ctx context.Context, o Options) (*Instance, error) {
	if _, err := exec.LookPath("postfix"); err != nil {
		return nil, ErrNotInstalled
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
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
	if o.Hostname == "" {
		o.Hostname = "postfix.test"
	}
	if o.Root == "" {
		o.Root = o.Dir
	}
	p := &Instance{Dir: o.Dir, Conf: filepath.Join(o.Dir, "conf"), Addr: addr}
	for _, d := range []string{p.Conf, filepath.Join(o.Dir, "queue"), filepath.Join(o.Dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("failed to create postfix directory: %w", err)
		}
	}
	if err := reachable(o.Dir, o.Root); err != nil {
		return nil, err
	}
	if err := os.Chown(filepath.Join(o.Dir, "data"), uid, -1); err != nil {
		return nil, fmt.Errorf("failed to chown postfix data directory: %w", err)
	}
	relayhost := ""
	if o.Relayhost != "" {
		relayhost = "[127.0.0.1]:" + portOf(o.Relayhost)
	}
	transportMaps := ""
	if len(o.Transport) > 0 {
		var b strings.Builder
		domains := make([]string, 0, len(o.Transport))
		for d := range o.Transport {
			domains = append(domains, d)
		}
		slices.Sort(domains)
		for _, d := range domains {
			host, port, err := net.SplitHostPort(o.Transport[d])
			if err != nil {
				return nil, fmt.Errorf("transport for %s: %w", d, err)
			}
			fmt.Fprintf(&b, "%s smtp:[%s]:%s\n.%s smtp:[%s]:%s\n", d, host, port, d, host, port)
		}
		file := filepath.Join(p.Conf, "transport")
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			return nil, fmt.Errorf("failed to write transport map: %w", err)
		}
		transportMaps = "texthash:" + file
	}
	extra, err := p.tlsAndSASL(ctx, o)
	if err != nil {
		return nil, err
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
daemon_directory = %[2]s
mail_owner = postfix
setgid_group = postdrop
myhostname = %[3]s
mydomain = %[3]s
myorigin = $myhostname
mydestination = %[4]s
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = %[5]s
transport_maps = %[6]s
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
%[7]s`, o.Dir, daemonDir, o.Hostname, strings.Join(o.MyDestination, ", "), relayhost, transportMaps, extra)
	main = overrideMain(main, o.Main)
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
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
`, addr) + o.Master
	if err := os.WriteFile(filepath.Join(p.Conf, "main.cf"), []byte(main), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write main.cf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p.Conf, "master.cf"), []byte(master), 0o644); err != nil {
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
			return nil, fmt.Errorf("postfix did not listen on %s (see %s/maillog)", addr, o.Dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsAndSASL writes the TLS certificate and the SASL accounts of o into
// the configuration directory and returns the main.cf lines that use them.
// Debian's Postfix reads the Cyrus SASL configuration from <config
// directory>/sasl/<smtpd_sasl_path>.conf (it ignores cyrus_sasl_config_path).
func (p *Instance) tlsAndSASL(ctx context.Context, o Options) (string, error) {
	var b strings.Builder
	if len(o.TLSCert) > 0 {
		cert, key := filepath.Join(p.Conf, "smtpd.crt"), filepath.Join(p.Conf, "smtpd.key")
		if err := os.WriteFile(cert, o.TLSCert, 0o644); err != nil {
			return "", fmt.Errorf("failed to write TLS certificate: %w", err)
		}
		if err := os.WriteFile(key, o.TLSKey, 0o600); err != nil {
			return "", fmt.Errorf("failed to write TLS key: %w", err)
		}
		fmt.Fprintf(&b, "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", cert, key)
	}
	if len(o.SASLUsers) == 0 {
		return b.String(), nil
	}
	saslpasswd, err := exec.LookPath("saslpasswd2")
	if err != nil {
		return "", ErrNoSASL
	}
	dir := filepath.Join(p.Conf, "sasl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("failed to create SASL directory: %w", err)
	}
	db := filepath.Join(dir, "sasldb2")
	users := make([]string, 0, len(o.SASLUsers))
	for u := range o.SASLUsers {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		name, realm, ok := strings.Cut(u, "@")
		if !ok {
			return "", fmt.Errorf("SASL user %q: want user@realm", u)
		}
		cmd := exec.CommandContext(ctx, saslpasswd, "-p", "-c", "-f", db, "-u", realm, name)
		cmd.Stdin = strings.NewReader(o.SASLUsers[u])
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("failed to add SASL user %s: %w\n%s", u, err, out)
		}
	}
	// smtpd runs as the postfix user (test passwords only).
	if err := os.Chmod(db, 0o644); err != nil {
		return "", fmt.Errorf("failed to make the SASL database readable: %w", err)
	}
	conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n", db)
	if err := os.WriteFile(filepath.Join(dir, "smtpd.conf"), []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("failed to write SASL configuration: %w", err)
	}
	b.WriteString("smtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\n")
	return b.String(), nil
}

// overrideMain appends extra to main and drops from main every parameter
// that extra sets again (Postfix would take the last one and warn).
func overrideMain(main, extra string) string {
	set := map[string]bool{}
	for _, line := range strings.Split(extra, "\n") {
		if name, _, ok := strings.Cut(line, "="); ok && line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			set[strings.TrimSpace(name)] = true
		}
	}
	var b strings.Builder
	skipping := false
	for _, line := range strings.SplitAfter(main, "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skipping {
				b.WriteString(line)
			}
			continue
		}
		name, _, _ := strings.Cut(line, "=")
		skipping = set[strings.TrimSpace(name)]
		if !skipping {
			b.WriteString(line)
		}
	}
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteString("\n")
	}
	b.WriteString(extra)
	return b.String()
}

// reachable makes the directories from dir up to root searchable by
// others (the postfix user); above root they must already be.
func reachable(dir, root string) error {
	inside := true
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("failed to stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if !inside {
				return fmt.Errorf("the postfix user cannot reach %s: %s is not searchable (use a directory under /tmp)", dir, d)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("failed to make %s searchable: %w", d, err)
			}
		}
		if d == root {
			inside = false
		}
	}
	return nil
}

func (p *Instance) postfix(ctx context.Context, verb string) error {
	cmd := exec.CommandContext(ctx, "postfix", "-c", p.Conf, verb)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("failed to run postfix %s: %w\n%s%s", verb, err, out.String(), p.Log())
	}
	return nil
}

// Stop stops the instance.
func (p *Instance) Stop() error { return p.postfix(context.Background(), "stop") }

// Log returns the instance's mail log.
func (p *Instance) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// QueueEmpty reports whether the instance holds no message any more: every
// recipient of everything it accepted was delivered or bounced, and the
// bounces were delivered too.
func (p *Instance) QueueEmpty(ctx context.Context) (bool, error) {
	out, err := exec.CommandContext(ctx, "postqueue", "-c", p.Conf, "-j").Output()
	if err != nil {
		return false, fmt.Errorf("failed to run postqueue: %w", err)
	}
	return len(bytes.TrimSpace(out)) == 0, nil
}

// Flush asks the instance to retry deferred mail now.
func (p *Instance) Flush(ctx context.Context) error {
	return exec.CommandContext(ctx, "postqueue", "-c", p.Conf, "-f").Run()
}

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

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
