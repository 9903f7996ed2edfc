//go:build !linux

package audit

func isTmpfs(string) bool { return false }
