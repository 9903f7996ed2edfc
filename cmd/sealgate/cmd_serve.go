package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/sealgate/sealgate/server"
)

// cpuProfileEnv names the developer's switch for a CPU profile of serve:
// when set, serve writes a pprof CPU profile of its whole run to that file
// when it stops (SIGTERM or interrupt; a kill -9 leaves no profile). It is
// off by default and opens no listener.
const cpuProfileEnv = "SEALGATE_DEBUG_CPUPROFILE"

// cmdServe runs the gateway: the SMTP listeners, the portal and the
// background jobs (package server), until interrupted.
func cmdServe(ctx context.Context, e *env, args []string) (err error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if path := e.Getenv(cpuProfileEnv); path != "" {
		stop, perr := startCPUProfile(path)
		if perr != nil {
			return perr
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	e.createKeys = true
	sys, err := e.System()
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, sys)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// startCPUProfile starts the CPU profile into path; stop ends it and
// closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to start CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("failed to write CPU profile: %w", err)
		}
		return nil
	}, nil
}
