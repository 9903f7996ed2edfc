// Package testdb holds what package tests hand to database.Open.
//
// With SEALGATE_TEST_RERUN set, Options sets database.Options
// RerunEveryBatch: every write function runs once in a transaction that is
// rolled back, then again in the one that counts. A function that is not
// safe to run more than once (database.DB.Write's contract) then fails the
// tests that call it, instead of misbehaving only in the rare batch that a
// failing neighbour or a serialization failure makes run again. The README's
// test command runs the packages that own tables this way too.
package testdb

import (
	"os"

	"github.com/sealgate/sealgate/database"
)

// RerunEnv is the environment variable that makes every batch run twice.
const RerunEnv = "SEALGATE_TEST_RERUN"

// Options returns o, with RerunEveryBatch set when SEALGATE_TEST_RERUN is.
func Options(o database.Options) database.Options {
	if os.Getenv(RerunEnv) != "" {
		o.RerunEveryBatch = true
	}
	return o
}
