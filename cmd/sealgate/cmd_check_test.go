package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkEnv is an env for `sealgate check`: a data directory of the test,
// loopback listeners on free ports, a global --config that check's own
// --config overrides.
func checkEnv(t *testing.T) (*env, *bytes.Buffer) {
	t.Helper()
	vars := map[string]string{"SEALGATE_DATA_DIR": filepath.Join(t.TempDir(), "data"), "SEALGATE_SMTP_ADDR": "127.0.0.1:0",
		"SEALGATE_SUBMISSION_ADDR": "off", "SEALGATE_HTTP_ADDR": "127.0.0.1:0"}
	var out bytes.Buffer
	e := &env{Stdout: &out, Stderr: &out, Stdin: strings.NewReader(""), Now: time.Now, Rand: rand.Reader,
		Getenv: func(k string) string { return vars[k] }, ConfigPath: "/nonexistent/ignored.toml"}
	e.wire()
	t.Cleanup(e.close)
	return e, &out
}

func TestCheckCLI(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		config string
		strict bool
		fails  bool
		lines  []string
	}{
		{"warnings only", "", false, false, []string{"WARN   smarthost", "OK     public_url", "0 error(s), 1 warning(s)"}},
		{"warnings only, strict", "", true, true, []string{"WARN   smarthost", "0 error(s), 1 warning(s)"}},
		{"an error", "public_url = \"http://files.corp.example\"\n", false, true, []string{"ERROR  public_url", "https://", "1 error(s)"}},
		{"a configuration that does not load", "no_such_key = 1\n", false, true, []string{"ERROR  config", "unknown keys: no_such_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, out := checkEnv(t)
			file := filepath.Join(t.TempDir(), "sealgate.toml")
			if err := os.WriteFile(file, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"--config", file}
			if tc.strict {
				args = append(args, "--strict")
			}
			err := cmdCheck(ctx, e, args)
			if (err != nil) != tc.fails {
				t.Fatalf("err = %v, want failure %v\n%s", err, tc.fails, out.String())
			}
			if !strings.Contains(out.String(), "configuration: "+file) {
				t.Fatalf("the report does not name the file given with --config:\n%s", out.String())
			}
			for _, l := range tc.lines {
				if !strings.Contains(out.String(), l) {
					t.Fatalf("the report lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
}
