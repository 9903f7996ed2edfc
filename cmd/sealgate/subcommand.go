package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/database"
)

// subcommand splits the arguments of a command with subcommands (contract,
// transfer, policy, user …): the subcommand, a flag set named
// "<command> <subcommand>" that prints usage on a flag error, and the rest.
// ok is false when the arguments ask for help (none, -h, --help, help): the
// usage was printed on standard output.
func subcommand(e *env, command, usage string, args []string) (sub string, fs *flag.FlagSet, rest []string, ok bool) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.Stdout, usage)
		return "", nil, nil, false
	}
	fs = flag.NewFlagSet(command+" "+args[0], flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() { fmt.Fprint(e.Stderr, usage) }
	return args[0], fs, args[1:], true
}

// configDB returns the configuration, its time zone (for the dates a person
// types or reads) and the metadata database.
func (e *env) configDB(ctx context.Context) (*config.Config, *time.Location, *database.DB, error) {
	c, err := e.Config()
	if err != nil {
		return nil, nil, nil, err
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("failed to load the time zone %q: %w", c.Timezone, err)
	}
	db, err := e.OpenDB(ctx)
	return c, loc, db, err
}
