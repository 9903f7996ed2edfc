package main

import (
	"context"
	"flag"

	"github.com/sealgate/sealgate/server"
)

// cmdServe runs the gateway: the SMTP listeners, the portal and the
// background jobs (package server), until interrupted.
func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
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
