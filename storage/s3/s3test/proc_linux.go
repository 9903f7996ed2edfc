package s3test

import "syscall"

// sysProcAttr makes the kernel kill versitygw when the test process dies,
// so that an interrupted test run leaves no server behind. Pdeathsig fires
// when the thread that started the child exits; Go threads normally live as
// long as the process (see golang/go#27505).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
