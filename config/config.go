// Package config loads sealgate's configuration: embedded defaults, then an
// optional TOML file, then SEALGATE_* environment variables. Every key is
// documented in example.toml (written by `sealgate init`), with its default.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/witness/cosig"
)

//go:embed example.toml
var exampleTOML string

// Example returns the commented example configuration with every key and
// its default value.
func Example() string { return exampleTOML }

// Config is the whole configuration.
type Config struct {
	DataDir         string   `toml:"data_dir"`
	PublicURL       string   `toml:"public_url"`
	Hostname        string   `toml:"hostname"`
	InternalDomains []string `toml:"internal_domains"`
	LogFormat       string   `toml:"log_format"` // text | json
	LogLevel        string   `toml:"log_level"`
	MasterKeyFile   string   `toml:"master_key_file"`
	// Timezone is used for times shown to people (notices, portal).
	Timezone string `toml:"timezone"`

	SMTP     SMTP     `toml:"smtp"`
	HTTP     HTTP     `toml:"http"`
	Metrics  Metrics  `toml:"metrics"`
	Delivery Delivery `toml:"delivery"`
	Transfer Transfer `toml:"transfer"`
	Limits   Limits   `toml:"limits"`
	Policy   Policy   `toml:"policy"`
	Scan     Scan     `toml:"scan"`
	Database Database `toml:"database"`
	Storage  Storage  `toml:"storage"`
	Ledger   Ledger   `toml:"ledger"`

	Lifecycle Lifecycle `toml:"lifecycle"`
	Review    Review    `toml:"review"`
}

// SMTP configures the listeners.
type SMTP struct {
	RelayAddr       string   `toml:"relay_addr"`
	SubmissionAddr  string   `toml:"submission_addr"`
	TrustedNetworks []string `toml:"trusted_networks"`
	MaxMessageSize  Size     `toml:"max_message_size"`
	MaxRecipients   int      `toml:"max_recipients"`
	ReadTimeout     Duration `toml:"read_timeout"`
	WriteTimeout    Duration `toml:"write_timeout"`
	TLSCert         string   `toml:"tls_cert"`
	TLSKey          string   `toml:"tls_key"`

	// SubmissionAppPasswordsOnly makes SMTP AUTH on the submission
	// listener accept only app passwords, for every account. Privileged
	// accounts (manager, admin, auditor) need one in any case.
	SubmissionAppPasswordsOnly bool `toml:"submission_app_passwords_only"`
	// TrustedClientNames: a client of the relay listener outside
	// TrustedNetworks is trusted after STARTTLS with a certificate that
	// verifies against ClientCAFile ("" = the system's roots) and names
	// one of these (a DNS name of the certificate, or its subject common
	// name when it has none; compared exactly, without case). Such a
	// client may use only envelope senders and header From addresses of
	// internal domains, and no null sender.
	TrustedClientNames []string `toml:"trusted_client_names"`
	ClientCAFile       string   `toml:"client_ca_file"`

	// InboundAddr is the inbound listener: mail from outside to internal
	// recipients only, passed through unchanged and recorded (受領記録)
	// under the contract of the sender's domain. "" disables it.
	InboundAddr string `toml:"inbound_addr"`
}

// HTTP configures the portal.
type HTTP struct {
	Addr    string `toml:"addr"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TrustProxy makes the portal take the client address from
	// X-Forwarded-For set by a reverse proxy on a trusted network.
	TrustProxy bool `toml:"trust_proxy"`
	// SessionIdle ends a portal session after this long without a request.
	SessionIdle Duration `toml:"session_idle"`
}

// Metrics configures the admin listener that serves /metrics (Prometheus
// text format).
type Metrics struct {
	// Listen is the admin listener's host:port; "" (the default) serves no
	// metrics and counts nothing. It has no authentication: keep it on
	// loopback or a network only the monitoring system reaches, never on
	// the portal's public address.
	Listen string `toml:"listen"`
}

// Delivery configures the outbound queue.
type Delivery struct {
	Smarthost      string   `toml:"smarthost"`      // host:port; "" = Maildir outbox
	SmarthostTLS   string   `toml:"smarthost_tls"`  // starttls (when offered) | required | none
	SmarthostUser  string   `toml:"smarthost_user"` // AUTH PLAIN, only over TLS
	SmarthostPass  string   `toml:"smarthost_password"`
	KeyNoticeDelay Duration `toml:"key_notice_delay"`
	RetryMin       Duration `toml:"retry_min"`
	RetryMax       Duration `toml:"retry_max"`
	MaxQueueTime   Duration `toml:"max_queue_time"`
	Workers        int      `toml:"workers"`
	NoticeFrom     string   `toml:"notice_from"` // From of bounces; default postmaster@hostname
	// SendDelay holds every message's external copies this long (一時保留)
	// so that the sender can still cancel it; 0 sends at once.
	SendDelay Duration `toml:"send_delay"`
	// Lease: on PostgreSQL, a delivery an instance claimed is its own for
	// this long — another instance takes over the deliveries of one that
	// died once it has passed. It must exceed the longest attempt
	// (connecting and greeting 2.5 minutes, the transaction 5, recording
	// the outcome 2): an attempt outliving its lease may be taken over and
	// the message delivered twice.
	Lease Duration `toml:"lease"`
}

// Transfer configures links and passphrases.
type Transfer struct {
	LinkExpiry            Duration `toml:"link_expiry"`
	MaxPassphraseFailure  int      `toml:"max_passphrase_failures"`
	PerIPAttemptsPerMin   int      `toml:"per_ip_attempts_per_minute"`
	PerLinkAttemptsPerMin int      `toml:"per_link_attempts_per_minute"`
	// DefaultContract takes external mail to recipients that no contract
	// covers; "" switches it off (such mail is refused).
	DefaultContract string `toml:"default_contract"`
	// MaxLinkExpiry is the longest a link may live, counted from sending,
	// when a sender extends it (contracts may set their own).
	MaxLinkExpiry Duration `toml:"max_link_expiry"`
	// DownloadLimit is how often each recipient may download each file
	// (contracts may set their own); 0 means unlimited.
	DownloadLimit int `toml:"download_limit"`
	// ApprovalExpiry: a message held for the manager's approval that is
	// neither approved nor refused within this long is destroyed.
	ApprovalExpiry Duration `toml:"approval_expiry"`
	// DownloadReceipt mails the sender when a recipient first downloads.
	DownloadReceipt bool `toml:"download_receipt"`
	// PubKeyLinkExpiry: how long the link that confirms a recipient's
	// public key registration works.
	PubKeyLinkExpiry Duration `toml:"pubkey_link_expiry"`
}

// Review sets what the periodic access review report looks for.
type Review struct {
	// DormantAfter: accounts not used for this long are listed.
	DormantAfter Duration `toml:"dormant_after"`
	// Window: how far back logins and downloads are read.
	Window Duration `toml:"window"`
	// BurstCount failed logins within BurstWithin make a burst.
	BurstCount  int      `toml:"burst_count"`
	BurstWithin Duration `toml:"burst_within"`
	// Office hours (local time, timezone): downloads outside them, and at
	// weekends, are listed.
	OfficeStart int `toml:"office_start"`
	OfficeEnd   int `toml:"office_end"`
}

// Lifecycle configures the scheduler: expiry purges, contract ends and
// destruction.
type Lifecycle struct {
	// Interval between scheduler passes.
	Interval Duration `toml:"interval"`
	// DeleteWorkers bounds concurrent object deletions during destruction.
	DeleteWorkers int `toml:"delete_workers"`
	// Lease: a destruction whose process shows no progress for this long
	// is resumed by another process's scheduler.
	Lease Duration `toml:"lease"`
	// RotateMasterKey rotates the master key at every contract end, so
	// that backups made before it open nothing without the old key.
	RotateMasterKey bool `toml:"rotate_master_key"`
}

// Limits are the hostile-input limits of the MIME walker.
type Limits struct {
	MaxMIMEDepth   int  `toml:"max_mime_depth"`
	MaxMIMEParts   int  `toml:"max_mime_parts"`
	MaxHeaderBytes Size `toml:"max_header_bytes"`
	// MaxTextBytes: a kept text part is held this long while it is
	// inspected for files hidden in it; a longer one is sealed whole.
	MaxTextBytes Size `toml:"max_text_bytes"`
	// MaxWholeSeal: a message whose structure cannot be parsed is sealed
	// whole if it is at most this large (it is held in memory while it is
	// walked); a larger one is refused.
	MaxWholeSeal Size `toml:"max_whole_seal"`
}

// Policy selects the policy file (package policy) that decides what is sealed.
type Policy struct {
	// File is the policy in force; "" is the built-in default (every
	// attachment sealed, text bodies kept). serve refuses to start with a
	// file that does not compile.
	File string `toml:"file"`
	// Shadow is a candidate policy evaluated on live traffic: what it would
	// have done is recorded in the ledger (policy.shadow), nothing is done.
	Shadow string `toml:"shadow"`
}

// Scan configures malware scanning before sealing (clamd).
type Scan struct {
	// Clamd is clamd's socket: a unix socket path ("/run/clamav/clamd.ctl",
	// "unix:/path") or "tcp:host:port"; "" turns scanning off.
	Clamd string `toml:"clamd"`
	// Timeout bounds each step of a scan: connecting, each chunk sent, the
	// wait for the verdict.
	Timeout Duration `toml:"timeout"`
	// OnUnavailable is what happens to a message when clamd cannot give a
	// verdict (unreachable, too slow, over its stream limit): "defer"
	// answers 451 (the sender's MTA retries); "hold" accepts it unscanned
	// and holds it for the information manager's approval.
	OnUnavailable string `toml:"on_unavailable"`
}

// Database selects the metadata database.
type Database struct {
	// URL is a postgres:// (or postgresql://) URL: PostgreSQL, shared by
	// every instance that names it. Empty: the embedded SQLite file
	// <data_dir>/sealgate.db.
	URL string `toml:"url"`
}

// IsPostgres reports whether the configuration selects PostgreSQL.
func (d Database) IsPostgres() bool {
	return strings.HasPrefix(d.URL, "postgres://") || strings.HasPrefix(d.URL, "postgresql://")
}

// Storage selects the object store.
type Storage struct {
	Type string `toml:"type"` // fs | s3
	Dir  string `toml:"dir"`  // fs: default <data_dir>/objects
	S3   S3     `toml:"s3"`
}

// S3 configures the S3 object store.
type S3 struct {
	Endpoint     string `toml:"endpoint"`
	Region       string `toml:"region"`
	Bucket       string `toml:"bucket"`
	AccessKey    string `toml:"access_key"`
	SecretKey    string `toml:"secret_key"`
	Insecure     bool   `toml:"insecure"`
	PathStyle    bool   `toml:"path_style"`
	PartSize     Size   `toml:"part_size"`
	LedgerBucket string `toml:"ledger_bucket"`
	ObjectLock   bool   `toml:"object_lock"`
	LockDays     int    `toml:"object_lock_days"`
}

// Ledger configures checkpoints and their witnesses.
type Ledger struct {
	Origin          string   `toml:"origin"`
	CheckpointEvery int      `toml:"checkpoint_every"`
	CheckpointAfter Duration `toml:"checkpoint_interval"`

	// Witnesses are asked to cosign every checkpoint (c2sp.org/
	// tlog-witness); their cosignatures are published with it.
	Witnesses []Witness `toml:"witnesses"`
	// WitnessQuorum is k of "k of n": a checkpoint cosigned by fewer is
	// logged as an error, and `sealgate audit verify-db` requires k by
	// default (0: all the witnesses).
	WitnessQuorum int `toml:"witness_quorum"`
	// WitnessTimeout bounds each request to a witness.
	WitnessTimeout Duration `toml:"witness_timeout"`
}

// Witness is one witness of the ledger.
type Witness struct {
	Name string `toml:"name"` // default: its key's name
	URL  string `toml:"url"`  // its submission prefix (POST <url>/add-checkpoint)
	Key  string `toml:"key"`  // its verifier key, "<name>+<key ID>+<base64>"
}

// Default returns the embedded defaults: everything on one machine.
func Default() Config {
	return Config{
		DataDir:   "sealgate-data",
		PublicURL: "http://127.0.0.1:8080",
		LogFormat: "text",
		LogLevel:  "info",
		Timezone:  "Asia/Tokyo",
		SMTP: SMTP{
			RelayAddr:       "127.0.0.1:2525",
			SubmissionAddr:  "127.0.0.1:5870",
			TrustedNetworks: []string{"127.0.0.0/8", "::1/128"},
			MaxMessageSize:  50 << 20,
			MaxRecipients:   100,
			ReadTimeout:     Duration(5 * time.Minute),
			WriteTimeout:    Duration(5 * time.Minute),
		},
		HTTP: HTTP{Addr: "127.0.0.1:8080", SessionIdle: Duration(30 * time.Minute)},
		Delivery: Delivery{
			SmarthostTLS:   "starttls",
			KeyNoticeDelay: Duration(time.Minute),
			RetryMin:       Duration(30 * time.Second),
			RetryMax:       Duration(30 * time.Minute),
			MaxQueueTime:   Duration(5 * 24 * time.Hour),
			Workers:        8,
			Lease:          Duration(10 * time.Minute),
		},
		Review: Review{DormantAfter: Duration(90 * 24 * time.Hour), Window: Duration(30 * 24 * time.Hour), BurstCount: 5,
			BurstWithin: Duration(10 * time.Minute), OfficeStart: 8, OfficeEnd: 20},
		Transfer: Transfer{
			LinkExpiry:            Duration(14 * 24 * time.Hour),
			MaxPassphraseFailure:  10,
			PerIPAttemptsPerMin:   30,
			PerLinkAttemptsPerMin: 10,
			DefaultContract:       "DEFAULT",
			MaxLinkExpiry:         Duration(90 * 24 * time.Hour),
			DownloadLimit:         5,
			ApprovalExpiry:        Duration(72 * time.Hour),
			DownloadReceipt:       true,
			PubKeyLinkExpiry:      Duration(24 * time.Hour),
		},
		Limits: Limits{MaxMIMEDepth: 50, MaxMIMEParts: 1000, MaxHeaderBytes: 64 << 10, MaxTextBytes: 1 << 20, MaxWholeSeal: 8 << 20},
		Scan:   Scan{Timeout: Duration(30 * time.Second), OnUnavailable: "defer"},
		Storage: Storage{
			Type: "fs",
			S3:   S3{Region: "us-east-1", PartSize: 8 << 20, LockDays: 3650},
		},
		Ledger: Ledger{CheckpointEvery: 1000, CheckpointAfter: Duration(time.Hour), WitnessTimeout: Duration(10 * time.Second)},

		Lifecycle: Lifecycle{Interval: Duration(time.Minute), DeleteWorkers: 16, Lease: Duration(2 * time.Minute), RotateMasterKey: true},
	}
}

// Load returns the defaults overlaid with the TOML file at path (if path is
// not empty) and then with the environment read through getenv.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		md, err := toml.DecodeFile(path, &c)
		if err != nil {
			return c, fmt.Errorf("failed to read config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return c, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	if err := c.finish(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Config) applyEnv(getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v, ok := lookup(getenv, name); ok {
			*dst = v
		}
	}
	var errs []error
	// parsed hands the variable's value, when set, to parse; its error
	// names the variable.
	parsed := func(name string, parse func(v string) error) {
		if v, ok := lookup(getenv, name); ok {
			if err := parse(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	dur := func(name string, dst *Duration) {
		parsed(name, func(v string) error { return dst.UnmarshalText([]byte(v)) })
	}
	size := func(name string, dst *Size) {
		parsed(name, func(v string) error { return dst.UnmarshalText([]byte(v)) })
	}
	boolean := func(name string, dst *bool) {
		parsed(name, func(v string) (err error) { *dst, err = strconv.ParseBool(v); return err })
	}
	integer := func(name string, dst *int) {
		parsed(name, func(v string) (err error) { *dst, err = strconv.Atoi(v); return err })
	}
	str("SEALGATE_DATA_DIR", &c.DataDir)
	str("SEALGATE_PUBLIC_URL", &c.PublicURL)
	str("SEALGATE_HOSTNAME", &c.Hostname)
	str("SEALGATE_LOG_FORMAT", &c.LogFormat)
	str("SEALGATE_LOG_LEVEL", &c.LogLevel)
	str("SEALGATE_MASTER_KEY_FILE", &c.MasterKeyFile)
	str("SEALGATE_TIMEZONE", &c.Timezone)
	if v, ok := lookup(getenv, "SEALGATE_INTERNAL_DOMAINS"); ok {
		c.InternalDomains = splitList(v)
	}
	str("SEALGATE_SMTP_ADDR", &c.SMTP.RelayAddr)
	if v, ok := lookupSet(getenv, "SEALGATE_SUBMISSION_ADDR"); ok {
		c.SMTP.SubmissionAddr = v // "" or "off" disables the listener
	}
	if v, ok := lookup(getenv, "SEALGATE_TRUSTED_NETWORKS"); ok {
		c.SMTP.TrustedNetworks = splitList(v)
	}
	if v, ok := lookup(getenv, "SEALGATE_TRUSTED_CLIENT_NAMES"); ok {
		c.SMTP.TrustedClientNames = splitList(v)
	}
	str("SEALGATE_CLIENT_CA_FILE", &c.SMTP.ClientCAFile)
	size("SEALGATE_MAX_MESSAGE_SIZE", &c.SMTP.MaxMessageSize)
	str("SEALGATE_HTTP_ADDR", &c.HTTP.Addr)
	if v, ok := lookupSet(getenv, "SEALGATE_METRICS_LISTEN"); ok {
		c.Metrics.Listen = v // "off": no metrics
	}
	dur("SEALGATE_SESSION_IDLE", &c.HTTP.SessionIdle)
	str("SEALGATE_SMARTHOST", &c.Delivery.Smarthost)
	str("SEALGATE_SMARTHOST_TLS", &c.Delivery.SmarthostTLS)
	dur("SEALGATE_KEY_NOTICE_DELAY", &c.Delivery.KeyNoticeDelay)
	dur("SEALGATE_RETRY_MIN", &c.Delivery.RetryMin)
	dur("SEALGATE_SEND_DELAY", &c.Delivery.SendDelay)
	dur("SEALGATE_DELIVERY_LEASE", &c.Delivery.Lease)
	dur("SEALGATE_APPROVAL_EXPIRY", &c.Transfer.ApprovalExpiry)
	boolean("SEALGATE_DOWNLOAD_RECEIPT", &c.Transfer.DownloadReceipt)
	boolean("SEALGATE_SUBMISSION_APP_PASSWORDS_ONLY", &c.SMTP.SubmissionAppPasswordsOnly)
	dur("SEALGATE_REVIEW_DORMANT_AFTER", &c.Review.DormantAfter)
	if v, ok := lookupSet(getenv, "SEALGATE_DEFAULT_CONTRACT"); ok {
		c.Transfer.DefaultContract = v // "off": no default contract
	}
	dur("SEALGATE_LINK_EXPIRY", &c.Transfer.LinkExpiry)
	dur("SEALGATE_MAX_LINK_EXPIRY", &c.Transfer.MaxLinkExpiry)
	integer("SEALGATE_DOWNLOAD_LIMIT", &c.Transfer.DownloadLimit)
	if v, ok := lookupSet(getenv, "SEALGATE_INBOUND_ADDR"); ok {
		c.SMTP.InboundAddr = v // "" or "off" disables the listener
	}
	dur("SEALGATE_LIFECYCLE_INTERVAL", &c.Lifecycle.Interval)
	integer("SEALGATE_DELETE_WORKERS", &c.Lifecycle.DeleteWorkers)
	boolean("SEALGATE_ROTATE_MASTER_KEY", &c.Lifecycle.RotateMasterKey)
	if v, ok := lookupSet(getenv, "SEALGATE_WITNESSES"); ok {
		c.Ledger.Witnesses = nil
		for _, item := range splitList(v) {
			f := strings.Fields(item)
			switch len(f) {
			case 2:
				c.Ledger.Witnesses = append(c.Ledger.Witnesses, Witness{URL: f[0], Key: f[1]})
			case 3:
				c.Ledger.Witnesses = append(c.Ledger.Witnesses, Witness{Name: f[0], URL: f[1], Key: f[2]})
			default:
				errs = append(errs, fmt.Errorf("SEALGATE_WITNESSES: %q is not \"[NAME] URL KEY\"", item))
			}
		}
	}
	integer("SEALGATE_WITNESS_QUORUM", &c.Ledger.WitnessQuorum)
	dur("SEALGATE_WITNESS_TIMEOUT", &c.Ledger.WitnessTimeout)
	size("SEALGATE_MAX_WHOLE_SEAL", &c.Limits.MaxWholeSeal)
	str("SEALGATE_POLICY_FILE", &c.Policy.File)
	str("SEALGATE_POLICY_SHADOW", &c.Policy.Shadow)
	str("SEALGATE_SCAN_CLAMD", &c.Scan.Clamd)
	dur("SEALGATE_SCAN_TIMEOUT", &c.Scan.Timeout)
	str("SEALGATE_SCAN_ON_UNAVAILABLE", &c.Scan.OnUnavailable)
	str("SEALGATE_DATABASE_URL", &c.Database.URL)
	str("SEALGATE_STORAGE", &c.Storage.Type)
	str("SEALGATE_S3_ENDPOINT", &c.Storage.S3.Endpoint)
	str("SEALGATE_S3_BUCKET", &c.Storage.S3.Bucket)
	str("SEALGATE_S3_ACCESS_KEY", &c.Storage.S3.AccessKey)
	str("SEALGATE_S3_SECRET_KEY", &c.Storage.S3.SecretKey)
	str("SEALGATE_S3_REGION", &c.Storage.S3.Region)
	boolean("SEALGATE_S3_INSECURE", &c.Storage.S3.Insecure)
	boolean("SEALGATE_S3_PATH_STYLE", &c.Storage.S3.PathStyle)
	if _, ok := lookup(getenv, "SEALGATE_S3_ENDPOINT"); ok {
		if _, set := lookup(getenv, "SEALGATE_STORAGE"); !set {
			c.Storage.Type = "s3"
		}
	}
	return errors.Join(errs...)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return strings.TrimSpace(v), v != ""
}

// lookupSet is lookup for values where an explicit "off" means empty.
func lookupSet(getenv func(string) string, name string) (string, bool) {
	v, ok := lookup(getenv, name)
	if v == "off" {
		v = ""
	}
	return v, ok
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// finish validates and fills derived values.
func (c *Config) finish() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir must not be empty"))
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("public_url %q must be an absolute http(s) URL", c.PublicURL))
	} else {
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	if c.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Hostname = h
		} else {
			c.Hostname = "localhost"
		}
	}
	for i, d := range c.InternalDomains {
		canon, err := address.ParseDomain(strings.TrimSpace(d))
		if err != nil {
			errs = append(errs, fmt.Errorf("internal_domains: %w", err))
			continue
		}
		c.InternalDomains[i] = canon
	}
	if _, err := c.SMTP.Prefixes(); err != nil {
		errs = append(errs, err)
	}
	for i, n := range c.SMTP.TrustedClientNames {
		c.SMTP.TrustedClientNames[i] = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
	}
	if c.SMTP.ClientCAFile != "" && len(c.SMTP.TrustedClientNames) == 0 {
		errs = append(errs, errors.New("smtp.client_ca_file is set but smtp.trusted_client_names is empty: no certificate would be trusted"))
	}
	if len(c.SMTP.TrustedClientNames) > 0 && len(c.InternalDomains) == 0 {
		errs = append(errs, errors.New("smtp.trusted_client_names needs internal_domains: clients trusted by certificate may send only as internal senders"))
	}
	if c.SMTP.SubmissionAddr == "off" {
		c.SMTP.SubmissionAddr = ""
	}
	if c.SMTP.InboundAddr == "off" {
		c.SMTP.InboundAddr = ""
	}
	if c.Metrics.Listen == "off" {
		c.Metrics.Listen = ""
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			errs = append(errs, fmt.Errorf("metrics.listen %q must be host:port: %w", c.Metrics.Listen, err))
		} else if c.Metrics.Listen == c.HTTP.Addr {
			errs = append(errs, fmt.Errorf("metrics.listen %q is the portal's address: metrics have no authentication and are served on a listener of their own", c.Metrics.Listen))
		}
	}
	if c.SMTP.InboundAddr != "" {
		if _, _, err := net.SplitHostPort(c.SMTP.InboundAddr); err != nil {
			errs = append(errs, fmt.Errorf("smtp.inbound_addr %q: %w", c.SMTP.InboundAddr, err))
		}
	}
	if c.Transfer.DownloadLimit < 0 {
		errs = append(errs, errors.New("transfer.download_limit must be 0 (unlimited) or positive"))
	}
	if c.Transfer.LinkExpiry <= 0 {
		errs = append(errs, errors.New("transfer.link_expiry must be positive"))
	}
	if c.Transfer.MaxLinkExpiry < c.Transfer.LinkExpiry {
		c.Transfer.MaxLinkExpiry = c.Transfer.LinkExpiry
	}
	if c.Delivery.SendDelay < 0 {
		errs = append(errs, errors.New("delivery.send_delay must not be negative"))
	}
	if c.Delivery.Lease <= 0 {
		errs = append(errs, errors.New("delivery.lease must be positive"))
	}
	if c.Transfer.ApprovalExpiry <= 0 {
		errs = append(errs, errors.New("transfer.approval_expiry must be positive"))
	}
	if c.Transfer.PubKeyLinkExpiry <= 0 {
		c.Transfer.PubKeyLinkExpiry = Duration(24 * time.Hour)
	}
	if c.Review.DormantAfter <= 0 || c.Review.Window <= 0 || c.Review.BurstCount <= 0 || c.Review.BurstWithin <= 0 {
		errs = append(errs, errors.New("review.dormant_after, window, burst_count and burst_within must be positive"))
	}
	if c.Review.OfficeStart < 0 || c.Review.OfficeEnd > 24 || c.Review.OfficeStart >= c.Review.OfficeEnd {
		errs = append(errs, errors.New("review.office_start and office_end must be hours with 0 <= start < end <= 24"))
	}
	if c.Lifecycle.Interval <= 0 {
		c.Lifecycle.Interval = Duration(time.Minute)
	}
	if c.Lifecycle.DeleteWorkers <= 0 {
		c.Lifecycle.DeleteWorkers = 16
	}
	if c.Lifecycle.Lease <= 0 {
		c.Lifecycle.Lease = Duration(2 * time.Minute)
	}
	for _, a := range []struct{ name, addr string }{{"smtp.relay_addr", c.SMTP.RelayAddr}, {"http.addr", c.HTTP.Addr}, {"smtp.submission_addr", c.SMTP.SubmissionAddr}} {
		if a.addr == "" && a.name == "smtp.submission_addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", a.name, a.addr, err))
		}
	}
	if c.Delivery.Smarthost != "" {
		if _, _, err := net.SplitHostPort(c.Delivery.Smarthost); err != nil {
			errs = append(errs, fmt.Errorf("delivery.smarthost %q must be host:port: %w", c.Delivery.Smarthost, err))
		}
	}
	switch c.Delivery.SmarthostTLS {
	case "starttls", "required", "none":
	default:
		errs = append(errs, fmt.Errorf("delivery.smarthost_tls %q must be starttls, required or none", c.Delivery.SmarthostTLS))
	}
	switch c.Storage.Type {
	case "fs":
		if c.Storage.Dir == "" {
			c.Storage.Dir = filepath.Join(c.DataDir, "objects")
		}
	case "s3":
		if c.Storage.S3.Endpoint == "" || c.Storage.S3.Bucket == "" {
			errs = append(errs, errors.New("storage type s3 needs storage.s3.endpoint and storage.s3.bucket (SEALGATE_S3_ENDPOINT, SEALGATE_S3_BUCKET)"))
		}
	default:
		errs = append(errs, fmt.Errorf("storage.type %q must be fs or s3", c.Storage.Type))
	}
	switch {
	case c.Database.URL != "" && !c.Database.IsPostgres():
		errs = append(errs, errors.New("database.url (SEALGATE_DATABASE_URL) は postgres:// で始まる URL です（空なら SQLite）/ database.url (SEALGATE_DATABASE_URL) must be a postgres:// URL (empty: SQLite)"))
	case c.Database.IsPostgres() && c.Storage.Type != "s3":
		errs = append(errs, errors.New("PostgreSQL（database.url）を使うときはオブジェクトストアを S3 にしてください（storage.type = \"s3\"）。fs ストアはこのマシンのディスクにあり、同じデータベースを使う他のインスタンスからは読めません / "+
			"with PostgreSQL (database.url) the object store must be S3 (storage.type = \"s3\"): the fs store is on this machine's disk, where the other instances sharing the database cannot read the files"))
	}
	if c.SMTP.MaxMessageSize <= 0 || c.SMTP.MaxRecipients <= 0 {
		errs = append(errs, errors.New("smtp.max_message_size and smtp.max_recipients must be positive"))
	}
	if c.Transfer.MaxPassphraseFailure <= 0 {
		errs = append(errs, errors.New("transfer.max_passphrase_failures must be positive"))
	}
	if c.Limits.MaxMIMEDepth <= 0 || c.Limits.MaxMIMEParts <= 0 || c.Limits.MaxHeaderBytes <= 0 || c.Limits.MaxTextBytes <= 0 || c.Limits.MaxWholeSeal <= 0 {
		errs = append(errs, errors.New("limits must be positive"))
	}
	if c.Delivery.Workers <= 0 {
		c.Delivery.Workers = 1
	}
	switch c.Scan.OnUnavailable {
	case "defer", "hold":
	default:
		errs = append(errs, fmt.Errorf("scan.on_unavailable %q must be defer or hold", c.Scan.OnUnavailable))
	}
	if c.Scan.Timeout <= 0 {
		errs = append(errs, errors.New("scan.timeout must be positive"))
	}
	if c.Delivery.NoticeFrom == "" {
		c.Delivery.NoticeFrom = "postmaster@" + c.Hostname
	}
	if c.Ledger.Origin == "" {
		c.Ledger.Origin = c.Hostname + "/sealgate-ledger"
	}
	errs = append(errs, c.Ledger.finishWitnesses()...)
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "keys", "master.key")
	}
	return errors.Join(errs...)
}

// Prefixes parses the trusted networks.
func (s SMTP) Prefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range s.TrustedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			a, aerr := netip.ParseAddr(n)
			if aerr != nil {
				return nil, fmt.Errorf("smtp.trusted_networks: %q is not a network or address", n)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// IsInternal reports whether addr is an address of one of the internal
// domains (or of a subdomain of one). It decides on the canonical form
// only (package address): an address that does not parse — routing syntax
// such as eve%evil.example@corp.example, a second @, a domain that is not
// a host name — is not internal.
func (c *Config) IsInternal(addr string) bool {
	a, err := address.Parse(addr)
	return err == nil && c.IsInternalDomain(a.Domain)
}

// IsInternalDomain reports whether the canonical domain d (address.Parse,
// address.ParseDomain) is an internal domain or a subdomain of one.
func (c *Config) IsInternalDomain(d string) bool {
	return address.InDomain(d, c.InternalDomains)
}

// Path returns a path inside the data directory.
func (c *Config) Path(elem ...string) string {
	return filepath.Join(append([]string{c.DataDir}, elem...)...)
}

// Duration is a time.Duration written as a Go duration string ("90s", "14d"
// is not Go syntax: use "336h"). A bare number of days may be written "14d".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 {
			return fmt.Errorf("invalid duration %q", s)
		}
		*d = Duration(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use Go syntax such as 90s, 15m, 2h, or 14d)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as a number with an optional KiB/MiB/GiB
// suffix ("50MiB").
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(str, u.suffix) {
			str = strings.TrimSpace(strings.TrimSuffix(str, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q (use e.g. 50MiB)", string(b))
	}
	*s = Size(n * mult)
	return nil
}

// finishWitnesses checks the witnesses: a URL, a witness verifier key
// (cosignature/v1), each key once, a quorum they can meet.
func (l *Ledger) finishWitnesses() []error {
	var errs []error
	seen := map[string]string{} // public key → "<name>+<key ID>"
	for i := range l.Witnesses {
		w := &l.Witnesses[i]
		w.URL = strings.TrimRight(strings.TrimSpace(w.URL), "/")
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("ledger.witnesses: url %q must be an absolute http(s) URL", w.URL))
		} else if u.User != nil {
			// The URL is logged and mailed with every witness alert: no
			// password in it (the protocol has no sign-in).
			errs = append(errs, fmt.Errorf("ledger.witnesses: url %q must not carry a user name or password (it is logged and mailed in alerts)", u.Redacted()))
		}
		v, err := cosig.NewVerifier(w.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("ledger.witnesses: key of %q: %w", w.URL, err))
			continue
		}
		w.Key = v.String()
		if w.Name == "" {
			w.Name = v.Name()
		}
		// By public key: a cosignature does not cover the witness's name,
		// so one key under two names is one witness counted twice.
		if prev, ok := seen[string(v.PublicKey())]; ok {
			errs = append(errs, fmt.Errorf("ledger.witnesses: the key %s is listed twice (as %s): one witness", v.ID(), prev))
		}
		seen[string(v.PublicKey())] = v.ID()
	}
	if l.WitnessQuorum < 0 || l.WitnessQuorum > len(l.Witnesses) {
		errs = append(errs, fmt.Errorf("ledger.witness_quorum %d must be between 0 (all) and the number of witnesses (%d)", l.WitnessQuorum, len(l.Witnesses)))
	}
	if l.WitnessTimeout <= 0 {
		l.WitnessTimeout = Duration(10 * time.Second)
	}
	return errs
}

// Quorum is how many witnesses must cosign: WitnessQuorum, or all of them.
func (l Ledger) Quorum() int {
	if l.WitnessQuorum > 0 {
		return l.WitnessQuorum
	}
	return len(l.Witnesses)
}
