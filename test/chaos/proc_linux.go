package main

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr makes the kernel kill a child (gateway, versitygw) when the
// harness dies, so an interrupted run leaves no process behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// mountTmpfs mounts a tmpfs of size bytes on dir (needs root).
func mountTmpfs(dir string, size int64) error {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("failed to mount a tmpfs on %s: %w", dir, err)
	}
	return nil
}

func unmount(dir string) error {
	if err := syscall.Unmount(dir, 0); err != nil {
		return fmt.Errorf("failed to unmount %s: %w", dir, err)
	}
	return nil
}

// freeBytes is the space left for an unprivileged writer on dir's file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("failed to stat file system of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// preallocate reserves n bytes for f at once (fast on tmpfs).
func preallocate(f *os.File, n int64) error {
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
		return fmt.Errorf("failed to preallocate %d bytes: %w", n, err)
	}
	return nil
}
