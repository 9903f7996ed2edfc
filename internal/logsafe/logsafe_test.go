package logsafe

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const (
	linkToken  = "ndzb6q527xy7c4e3yoesc6tkxu6ox47q"
	keyToken   = "KbrUcIJUNOyp6H2hT4iaxg4jW3wDwnrHs1TZSn-D6yE"
	passphrase = "7K2QD-9XJ4M-PZ3RA-W8NHB-5VCTE"
	totpSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	ageKey     = "AGE-SECRET-KEY-1QQQSYQCYQ5RQWZQFPG9SCRGWPUGPZYSNZS23V7CCFWUFPGH5NYKSQ0PQPK"
	noteKey    = "PRIVATE+KEY+gw.corp.example/sealgate-ledger+ac0cda91+AZ3p8ZXGBUoSHzJmDhjyK8Ng5wGGgG3fC6Xa0C2nYo8V"
)

func TestPath(t *testing.T) {
	for in, want := range map[string]string{
		"/t/" + linkToken:                                  "/t/[redacted]",
		"/t/" + linkToken + "/download":                    "/t/[redacted]/download",
		"/t/" + linkToken + "/age":                         "/t/[redacted]/age",
		"/c/" + linkToken:                                  "/c/[redacted]",
		"/keys/verify/" + keyToken:                         "/keys/verify/[redacted]",
		"/keys/verify/anything-at-all":                     "/keys/verify/[redacted]",
		"/t/short":                                         "/t/[redacted]",
		"//t/" + linkToken + "/download":                   "/t/[redacted]/download",
		"/x/../t/" + linkToken:                             "/t/[redacted]",
		"/./c/" + linkToken:                                "/c/[redacted]",
		"/transfers/tmwfrzqo34y7lisnk/revoke":              "/transfers/tmwfrzqo34y7lisnk/revoke",
		"/manage/certificates/C-2026-001-20261207T013204Z": "/manage/certificates/C-2026-001-20261207T013204Z",
		"/held/mwqlrumagtotbphb5/cancel":                   "/held/mwqlrumagtotbphb5/cancel",
		"/keys":                                            "/keys",
		"/":                                                "/",
		// A token anywhere else is caught by its shape.
		"/admin/" + linkToken: "/admin/[redacted]",
	} {
		if got := Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestString(t *testing.T) {
	for _, secret := range []string{linkToken, keyToken, passphrase, strings.ReplaceAll(passphrase, "-", ""), totpSecret, ageKey, noteKey} {
		for _, s := range []string{secret, "x " + secret + " y", `"` + secret + `"`, "path=/t/" + secret + "/download", secret + "," + secret + "," + secret} {
			if got := String(s); strings.Contains(got, secret) || !strings.Contains(got, Redacted) {
				t.Errorf("String(%q) = %q", s, got)
			}
		}
	}
	// What is not a secret stays.
	for _, s := range []string{
		"transfer=tmwfrzqo34y7lisnk message=mwqlrumagtotbphb5 object=sealed/tw4rntqyscvk25zsc/0.age",
		"sha256=574dc701e782accc4bcc0cf57f39bbc5560910058d7b32da3ef95c9af9366ff3",
		"ledger_key=gw.corp.example/sealgate-ledger+ac0cda91+AWCAVm1swtMxrneQXjaDBZNK+8N6tMUfo1uCtep13oUf",
		"write tcp 127.0.0.1:33697->127.0.0.1:36640: write: connection reset by peer",
		"certificate C-2026-001-20261207T013204Z, 12 files",
		"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
		"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
	} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q, want it unchanged", s, got)
		}
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestReplaceAttr(t *testing.T) {
	for _, json := range []bool{false, true} {
		var buf bytes.Buffer
		opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: ReplaceAttr}
		var h slog.Handler = slog.NewTextHandler(&buf, opts)
		if json {
			h = slog.NewJSONHandler(&buf, opts)
		}
		log := slog.New(h).With("component", "portal")
		log.Warn("refused POST to /t/"+linkToken+"/download", "url", "http://portal.test/c/"+linkToken,
			"error", fmt.Errorf("failed to confirm: %w", errors.New("token "+keyToken+" used")),
			"who", stringer("passphrase "+passphrase), "raw", []byte(ageKey), "list", []string{totpSecret},
			slog.Group("req", "path", "/keys/verify/"+keyToken), "n", 42)
		slog.NewLogLogger(h, slog.LevelWarn).Printf("http: panic serving 127.0.0.1:1: %s", noteKey)
		out := buf.String()
		for _, secret := range []string{linkToken, keyToken, passphrase, ageKey, totpSecret, noteKey} {
			if strings.Contains(out, secret) {
				t.Errorf("json=%v: the log holds %q:\n%s", json, secret, out)
			}
		}
		if !strings.Contains(out, "42") || !strings.Contains(out, "portal") {
			t.Errorf("json=%v: the log lost what is not secret:\n%s", json, out)
		}
	}
}
