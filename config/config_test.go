package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/witness/cosig"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestExampleMatchesDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte(Example()), 0o600)
	got, err := Load(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.SMTP.MaxMessageSize != want.SMTP.MaxMessageSize || got.Delivery.KeyNoticeDelay != want.Delivery.KeyNoticeDelay || got.Delivery.Lease != want.Delivery.Lease ||
		got.Transfer.LinkExpiry != want.Transfer.LinkExpiry || got.Limits != want.Limits || got.HTTP != want.HTTP {
		t.Fatalf("example.toml disagrees with Default():\n%+v\n%+v", got, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	c, err := Load("", env(map[string]string{
		"SEALGATE_DATA_DIR":         "/tmp/x",
		"SEALGATE_SMTP_ADDR":        "127.0.0.1:2626",
		"SEALGATE_INTERNAL_DOMAINS": "Example.COM, corp.example",
		"SEALGATE_KEY_NOTICE_DELAY": "2s",
		"SEALGATE_SMARTHOST":        "127.0.0.1:25",
		"SEALGATE_PUBLIC_URL":       "https://files.example.com/",
		"SEALGATE_MAX_MESSAGE_SIZE": "2GiB",
		"SEALGATE_S3_ENDPOINT":      "127.0.0.1:7070",
		"SEALGATE_S3_BUCKET":        "b",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/tmp/x" || c.SMTP.RelayAddr != "127.0.0.1:2626" || c.Delivery.KeyNoticeDelay.D() != 2*time.Second ||
		c.PublicURL != "https://files.example.com" || c.SMTP.MaxMessageSize != 2<<30 || c.Storage.Type != "s3" {
		t.Fatalf("%+v", c)
	}
	if !c.IsInternal("a@example.com") || !c.IsInternal("b@mail.corp.example") || c.IsInternal("c@notexample.com") || c.IsInternal("d@example.com.evil") {
		t.Fatal("IsInternal")
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("data_dirr = \"x\"\n"), 0o600)
	if _, err := Load(p, env(nil)); err == nil || !strings.Contains(err.Error(), "data_dirr") {
		t.Fatalf("unknown key not reported: %v", err)
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_KEY_NOTICE_DELAY": "soon"})); err == nil {
		t.Fatal("bad duration accepted")
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_PUBLIC_URL": "files.example.com"})); err == nil {
		t.Fatal("relative public URL accepted")
	}
}

// TestInternalCanonical: internal domains are kept canonical and an
// address is internal on its canonical form only.
func TestInternalCanonical(t *testing.T) {
	c, err := Load("", env(map[string]string{"SEALGATE_INTERNAL_DOMAINS": "Corp.Example., 日本語.JP"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.InternalDomains, ",") != "corp.example,xn--wgv71a119e.jp" {
		t.Fatalf("internal domains %v", c.InternalDomains)
	}
	for a, want := range map[string]bool{
		"bob@CORP.EXAMPLE.":             true,
		"bob@corp。example":              true,
		"taro@日本語.jp":                   true,
		"eve%evil.example@corp.example": false,
		"eve!evil.example@corp.example": false,
		"eve@evil.example@corp.example": false,
		"bob@corp.example.evil.example": false,
		"bob@corp.exаmple":              false,
	} {
		if got := c.IsInternal(a); got != want {
			t.Errorf("IsInternal(%q) = %v, want %v", a, got, want)
		}
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_INTERNAL_DOMAINS": "corp..example"})); err == nil {
		t.Fatal("an invalid internal domain was accepted")
	}
}

func TestTrustedClientNames(t *testing.T) {
	c, err := Load("", env(map[string]string{
		"SEALGATE_INTERNAL_DOMAINS":     "corp.example",
		"SEALGATE_TRUSTED_CLIENT_NAMES": "Mail.Protection.Outlook.com., mx.example",
		"SEALGATE_CLIENT_CA_FILE":       "/etc/ssl/ca.pem",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.SMTP.TrustedClientNames, ",") != "mail.protection.outlook.com,mx.example" || c.SMTP.ClientCAFile != "/etc/ssl/ca.pem" {
		t.Fatalf("%q %q", c.SMTP.TrustedClientNames, c.SMTP.ClientCAFile)
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_TRUSTED_CLIENT_NAMES": "mx.example"})); err == nil {
		t.Fatal("certificate trust without internal domains accepted")
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_CLIENT_CA_FILE": "/x.pem"})); err == nil {
		t.Fatal("a client CA without trusted names accepted")
	}
}

// metrics.listen is off by default, set by SEALGATE_METRICS_LISTEN, and
// refused when it is not host:port or is the portal's own address.
func TestMetricsListen(t *testing.T) {
	c, err := Load("", env(nil))
	if err != nil || c.Metrics.Listen != "" {
		t.Fatalf("default: %q, %v", c.Metrics.Listen, err)
	}
	c, err = Load("", env(map[string]string{"SEALGATE_METRICS_LISTEN": "127.0.0.1:9925"}))
	if err != nil || c.Metrics.Listen != "127.0.0.1:9925" {
		t.Fatalf("set: %q, %v", c.Metrics.Listen, err)
	}
	c, err = Load("", env(map[string]string{"SEALGATE_METRICS_LISTEN": "off"}))
	if err != nil || c.Metrics.Listen != "" {
		t.Fatalf("off: %q, %v", c.Metrics.Listen, err)
	}
	for _, bad := range []string{"9925", "127.0.0.1:8080"} {
		if _, err := Load("", env(map[string]string{"SEALGATE_METRICS_LISTEN": bad})); err == nil || !strings.Contains(err.Error(), "metrics.listen") {
			t.Errorf("metrics.listen %q: %v", bad, err)
		}
	}
}

// TestWitnesses: witnesses from the file and from SEALGATE_WITNESSES, with
// their quorum; bad keys, URLs and quorums are refused.
func TestWitnesses(t *testing.T) {
	const k1 = "witness.client.example+28611046+BDAjSMcbsw0qydq8Ub9wJdleXQrZF1pMIdOB/MVzi5CU"
	const k2 = "litewitness.client.example+274e910d+BK8EdFHLeTejUtZFNtzDG51B2Vos6mr3xEDrLpBjBOKL"
	p := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(p, []byte("[ledger]\nwitness_quorum = 1\nwitnesses = [\n  { name = \"client\", url = \"https://w1.example/\", key = \""+k1+"\" },\n]\n"), 0o600)
	c, err := Load(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ledger.Witnesses) != 1 || c.Ledger.Witnesses[0] != (Witness{Name: "client", URL: "https://w1.example", Key: k1}) ||
		c.Ledger.Quorum() != 1 || c.Ledger.WitnessTimeout.D() != 10*time.Second {
		t.Fatalf("%+v", c.Ledger)
	}
	c, err = Load(p, env(map[string]string{"SEALGATE_WITNESSES": "http://127.0.0.1:7380 " + k2 + ", client https://w1.example " + k1,
		"SEALGATE_WITNESS_QUORUM": "2", "SEALGATE_WITNESS_TIMEOUT": "3s"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ledger.Witnesses) != 2 || c.Ledger.Witnesses[0].Name != "litewitness.client.example" || c.Ledger.Witnesses[1].Name != "client" ||
		c.Ledger.Quorum() != 2 || c.Ledger.WitnessTimeout.D() != 3*time.Second {
		t.Fatalf("%+v", c.Ledger)
	}
	if c, err := Load(p, env(map[string]string{"SEALGATE_WITNESSES": "off", "SEALGATE_WITNESS_QUORUM": "0"})); err != nil || len(c.Ledger.Witnesses) != 0 {
		t.Fatalf("off: %+v %v", c.Ledger, err)
	}
	logKey := "sealgate.test+53930156+ATTaR8brFT3lZnGxqA+8aqGIkjn7FRQLwG9IwFYxOjni"
	v1, err := cosig.NewVerifier(k1)
	if err != nil {
		t.Fatal(err)
	}
	alias, err := cosig.VerifierKey("alias.client.example", v1.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"one key under two names": "https://a.example " + k1 + ",https://b.example " + alias,
		"a password in the URL":   "https://user:secret@w.example " + k1,
		"the ledger's own key":    "https://w.example " + logKey,
		"no URL":                  k1,
		"not http":                "ftp://w.example " + k1,
		"a key twice":             "https://a.example " + k1 + ",https://b.example " + k1,
	} {
		if _, err := Load("", env(map[string]string{"SEALGATE_WITNESSES": v})); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_WITNESSES": "https://w.example " + k1, "SEALGATE_WITNESS_QUORUM": "2"})); err == nil {
		t.Error("a quorum above the witnesses: accepted")
	}
}

// With PostgreSQL the object store must be S3; the refusal says why, in
// both languages, and never repeats the URL (it may carry a password).
func TestDatabaseURL(t *testing.T) {
	const url = "postgres://sealgate:secret@db.example/sealgate"
	c, err := Load("", env(nil))
	if err != nil || c.Database.IsPostgres() {
		t.Fatalf("default: %+v, %v", c.Database, err)
	}
	_, err = Load("", env(map[string]string{"SEALGATE_DATABASE_URL": url}))
	if err == nil || !strings.Contains(err.Error(), "must be S3") || !strings.Contains(err.Error(), "S3 にしてください") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("PostgreSQL with the fs store: %v", err)
	}
	c, err = Load("", env(map[string]string{"SEALGATE_DATABASE_URL": url, "SEALGATE_S3_ENDPOINT": "http://127.0.0.1:7070", "SEALGATE_S3_BUCKET": "b"}))
	if err != nil || !c.Database.IsPostgres() || c.Database.URL != url {
		t.Fatalf("PostgreSQL with S3: %+v, %v", c.Database, err)
	}
	if _, err := Load("", env(map[string]string{"SEALGATE_DATABASE_URL": "mysql://x"})); err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("another URL: %v", err)
	}
}
