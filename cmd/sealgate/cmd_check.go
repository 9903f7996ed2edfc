package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/sealgate/sealgate/preflight"
)

// cmdCheck checks the configuration without serving (package preflight)
// and prints one line per check. Errors make it fail; warnings too with
// --strict.
func cmdCheck(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.StringVar(&e.ConfigPath, "config", e.ConfigPath, "configuration file (TOML); default: $SEALGATE_CONFIG, else embedded defaults + SEALGATE_* environment")
	strict := fs.Bool("strict", false, "fail on warnings too / 警告でも失敗にする")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"引数は取りません / takes no arguments"}
	}
	source := e.ConfigPath
	if source == "" {
		source = "既定値と環境変数 / defaults and SEALGATE_* environment"
	}
	fmt.Fprintf(e.Stdout, "設定 / configuration: %s\n", source)
	if _, err := e.Config(); err != nil {
		fmt.Fprintf(e.Stdout, "%-5s  %-14s 設定を読み込めません / the configuration does not load: %v\n", preflight.Error, "config", err)
		return errors.New("設定にエラーがあります / the configuration has errors")
	}
	sys, err := e.System()
	if err != nil {
		return err
	}
	report := sys.Check(ctx, preflight.Command)
	if err := report.Write(e.Stdout); err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, report.Summary())
	if report.Failed(*strict) {
		if report.Count(preflight.Error) == 0 {
			return errors.New("警告があります (--strict) / warnings found (--strict)")
		}
		return errors.New("エラーがあります / errors found")
	}
	return nil
}
