// Package agecli runs the stock age command-line tool for interoperability
// tests. age reads passphrases from the controlling terminal only, so
// DecryptWithKeyFile gives it a pseudo-terminal and types the passphrase at
// the prompt, the way a person would.
package agecli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Path returns the path of the stock age binary, or an error if it is not
// installed.
func Path() (string, error) {
	p, err := exec.LookPath("age")
	if err != nil {
		return "", fmt.Errorf("the stock age CLI is not installed (apt-get install age): %w", err)
	}
	return p, nil
}

// DecryptWithKeyFile runs `age -d -i keyFile -o out in` and answers the
// passphrase prompt for the passphrase-encrypted identity file.
func DecryptWithKeyFile(ctx context.Context, keyFile, in, out, passphrase string) error {
	bin, err := Path()
	if err != nil {
		return err
	}
	master, slave, err := openPTY()
	if err != nil {
		return err
	}
	defer master.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-d", "-i", keyFile, "-o", out, in)
	var stderr bytes.Buffer
	cmd.Stdin = slave
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		return fmt.Errorf("failed to start age: %w", err)
	}
	slave.Close()

	// Wait for the prompt, then type the passphrase.
	var seen bytes.Buffer
	buf := make([]byte, 512)
	typed := false
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for !typed {
		master.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, rerr := master.Read(buf)
		seen.Write(buf[:n])
		if strings.Contains(strings.ToLower(seen.String()), "passphrase") {
			if _, err := io.WriteString(master, passphrase+"\r"); err != nil {
				return fmt.Errorf("failed to type passphrase: %w", err)
			}
			typed = true
		}
		if rerr != nil {
			break
		}
	}
	// Drain the terminal so age never blocks on output.
	go io.Copy(io.Discard, master)
	err = <-done
	if err != nil {
		return fmt.Errorf("age failed: %w; output: %s %s", err, seen.String(), stderr.String())
	}
	if !typed {
		return errors.New("age never asked for the passphrase: " + seen.String())
	}
	return nil
}

// Encrypt runs `age -r recipient -o out in`.
func Encrypt(ctx context.Context, recipient, in, out string) error {
	bin, err := Path()
	if err != nil {
		return err
	}
	b, err := exec.CommandContext(ctx, bin, "-r", recipient, "-o", out, in).CombinedOutput()
	if err != nil {
		return fmt.Errorf("age -r failed: %w: %s", err, b)
	}
	return nil
}

// DecryptWithIdentity runs `age -d -i identityFile -o out in` with an
// unencrypted identity file (age-keygen's key.txt, or an SSH private key).
func DecryptWithIdentity(ctx context.Context, identityFile, in, out string) error {
	bin, err := Path()
	if err != nil {
		return err
	}
	b, err := exec.CommandContext(ctx, bin, "-d", "-i", identityFile, "-o", out, in).CombinedOutput()
	if err != nil {
		return fmt.Errorf("age -d failed: %w: %s", err, b)
	}
	return nil
}

// Keygen runs the stock age-keygen and returns the identity file it wrote
// and the public key.
func Keygen(ctx context.Context, out string) (string, error) {
	bin, err := exec.LookPath("age-keygen")
	if err != nil {
		return "", fmt.Errorf("age-keygen is not installed (apt-get install age): %w", err)
	}
	if b, err := exec.CommandContext(ctx, bin, "-o", out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("age-keygen failed: %w: %s", err, b)
	}
	b, err := exec.CommandContext(ctx, bin, "-y", out).Output()
	if err != nil {
		return "", fmt.Errorf("age-keygen -y failed: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func openPTY() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to open /dev/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("failed to unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("failed to get pty number: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("failed to open pty slave: %w", err)
	}
	return master, slave, nil
}
