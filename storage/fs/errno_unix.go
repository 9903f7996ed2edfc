//go:build unix

package fs

import (
	"errors"
	"syscall"
)

// errNotDir is returned when a path segment that should be a directory is
// a file: for a key lookup that means "not found".
var errNotDir error = syscall.ENOTDIR

// isTransient reports whether err is one for which a Put or Delete may
// succeed later without any change to the request.
func isTransient(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS,
		syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EAGAIN,
		syscall.EINTR, syscall.EBUSY, syscall.ETIMEDOUT, syscall.ESTALE:
		return true
	}
	return false
}
