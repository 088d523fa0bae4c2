package testserver

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal stops the server if the test process dies first.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
