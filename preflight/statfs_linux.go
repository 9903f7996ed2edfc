package preflight

import "syscall"

// freeSpace returns the bytes available to an unprivileged user in the
// file system of path.
func freeSpace(path string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
