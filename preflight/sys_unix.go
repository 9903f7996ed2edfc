//go:build unix

package preflight

import (
	"os"
	"syscall"
)

// fileOwner returns the owner's user id of fi.
func fileOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
