// Command agent-worker is an example agent worker: it runs the plan steps
// Interlock hands to one agent.
//
//	agent-worker --agent agent1 [--target HOST:PORT] [--token-file PATH]
//	    [--ca-file PEM [--cert-file PEM --key-file PEM]] [--fail TOOL ...] [--max-items N]
//
// It pulls the agent's work items (PullWork), "runs" each tool in the mode
// Interlock granted, and reports the outcome (ReportToolResult with the
// work id):
//
//	MOCK, DRY_RUN  validate only: no side effects
//	LIVE           a simulated side effect: a fake receipt
//	compensation   an item that undoes an earlier step during a rollback
//
// Tools named with --fail are reported FAILED, to see a plan fail and roll
// back. For every item it handles it prints one JSON line on stdout:
//
//	{"work_id":"…","plan_id":"…","step_id":"…","tool":"…","mode":"LIVE","compensation":false,"outcome":"SUCCEEDED"}
//
// and it logs to stderr. When the work stream drops (the server restarts,
// the network fails) it reconnects with an exponential backoff. SIGINT or
// SIGTERM stops it, after the item in hand is finished and reported (a
// second signal stops it at once). It exits 0 when stopped or after
// --max-items items, 1 on any other error (an agent the server does not
// know, a refused token, ...), and 2 on a usage error.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, signals))
}
