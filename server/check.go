package server

import (
	"context"
	"os"

	"github.com/sealgate/sealgate/internal/buildinfo"
	"github.com/sealgate/sealgate/preflight"
)

// Check runs the configuration checks of package preflight for this
// system. In preflight.Start mode (serve) the S3 probe is the opening of
// the stores serve keeps; in preflight.Command mode (`sealgate check`) the
// stores are opened without creating a bucket or sweeping uploads, probed
// and closed.
func (s *System) Check(ctx context.Context, mode preflight.Mode) preflight.Report {
	c := s.Config
	d := preflight.Deps{
		Config:         c,
		ConfigFile:     s.opts.ConfigFile,
		Mode:           mode,
		Now:            s.opts.Now,
		UID:            os.Getuid(),
		MasterKeyInEnv: s.opts.Getenv("SEALGATE_MASTER_KEY") != "",
		BuildTime:      buildinfo.Read().Time,
	}
	d.ProbeS3 = func(ctx context.Context) error {
		if mode == preflight.Start {
			if _, err := s.Objects(); err != nil {
				return err
			}
			if c.Storage.S3.LedgerBucket != "" {
				_, err := s.Ledger()
				return err
			}
			return nil
		}
		return probeS3(ctx, c)
	}
	return preflight.Run(ctx, d)
}
