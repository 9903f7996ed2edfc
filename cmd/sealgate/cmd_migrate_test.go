package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateCLIUsage: the mistakes of the command line are usage errors
// that say what is wrong, before anything is opened.
func TestMigrateCLIUsage(t *testing.T) {
	other := filepath.Join(t.TempDir(), "pg.toml")
	if err := os.WriteFile(other, []byte("[database]\nurl = \"postgres://a@db/x\"\n[storage]\ntype = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"b\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--to and --to-config are required"},
		{[]string{"--to", "postgres://a@db/y"}, "--to and --to-config are required"},
		{[]string{"--to", "/var/lib/sealgate/other.db", "--to-config", other}, "--to is a postgres:// URL"},
		{[]string{"--to", "postgres://a@db/y", "--to-config", other}, "differs from --to"},
	} {
		e, _ := checkEnv(t)
		err := cmdMigrate(context.Background(), e, tc.args)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("migrate %v: %v, want a usage error saying %q", tc.args, err, tc.want)
		}
	}
}
