//go:build !unix

package servelock

import "os"

// flock cannot lock here: the mark is not kept and migrate cannot tell
// whether serve runs (sealgate is built for Unix; see README).
func flock(*os.File, bool) error { return nil }
