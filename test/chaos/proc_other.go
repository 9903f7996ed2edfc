//go:build !linux

package main

import (
	"errors"
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

var errNotLinux = errors.New("only on Linux")

func mountTmpfs(string, int64) error    { return errNotLinux }
func unmount(string) error              { return errNotLinux }
func freeBytes(string) (int64, error)   { return 0, errNotLinux }
func preallocate(*os.File, int64) error { return errNotLinux }
