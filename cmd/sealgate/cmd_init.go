package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealgate/sealgate/config"
)

// cmdInit writes a commented configuration file and generates the master
// key and the ledger signing key. It never overwrites anything.
func cmdInit(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	dataDir := fs.String("data-dir", "", "data directory to write into the configuration (default: the configuration's)")
	out := fs.String("o", "sealgate.toml", "configuration file to write (not overwritten if it exists)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if e.ConfigPath == "" {
		e.ConfigPath = *out
	}
	if _, err := os.Stat(e.ConfigPath); errors.Is(err, os.ErrNotExist) {
		text := config.Example()
		if *dataDir != "" {
			text = strings.Replace(text, `data_dir = "sealgate-data"`, fmt.Sprintf("data_dir = %q", *dataDir), 1)
		}
		if err := os.WriteFile(e.ConfigPath, []byte(text), 0o600); err != nil {
			return fmt.Errorf("failed to write %s: %w", e.ConfigPath, err)
		}
		fmt.Fprintf(e.Stdout, "設定ファイルを書き出しました / wrote configuration: %s\n", e.ConfigPath)
	} else if err == nil {
		fmt.Fprintf(e.Stdout, "設定ファイルは既にあります / configuration exists, left unchanged: %s\n", e.ConfigPath)
	} else {
		return err
	}
	e.createKeys = true
	c, err := e.Config()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("failed to create data directory: %w", err)
	}
	if _, err := e.Keys(); err != nil {
		return err
	}
	vkey, err := e.LedgerVerifierKey()
	if err != nil {
		return err
	}
	// The verifier key also goes next to the configuration, for auditors.
	pub := filepath.Join(filepath.Dir(e.ConfigPath), "ledger.pub")
	if _, err := os.Stat(pub); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(pub, []byte(vkey+"\n"), 0o644); err != nil {
			return fmt.Errorf("failed to write %s: %w", pub, err)
		}
	}
	fmt.Fprintf(e.Stdout, "マスター鍵 / master key: %s\n", c.MasterKeyFile)
	fmt.Fprintf(e.Stdout, "監査ログ検証鍵 / ledger verifier key (give it to auditors; also in %s):\n%s\n", pub, vkey)
	return nil
}
