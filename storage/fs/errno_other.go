//go:build !unix

package fs

import "errors"

// errNotDir never matches outside Unix; a file in the path then reports
// whatever the operating system says.
var errNotDir = errors.New("fs: not a directory")

func isTransient(error) bool { return false }
