package ratelimit_test

import (
	"testing"

	"github.com/sealgate/sealgate/internal/testpg"
)

// TestMain runs the package's tests on PostgreSQL too when
// SEALGATE_TEST_POSTGRES is set (internal/testpg).
func TestMain(m *testing.M) { testpg.Main(m) }
