package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// Reconnection backoff: the first pause, doubled after each failed attempt
// up to the longest.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 10 * time.Second
	// reportGrace bounds the retries of a report when the item has no
	// deadline left.
	reportGrace = 30 * time.Second
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

type settings struct {
	target    string
	agent     string
	tokenFile string
	token     string // from INTERLOCK_TOKEN when there is no --token-file
	caFile    string
	certFile  string
	keyFile   string
	fail      map[string]bool
	maxItems  int
}

// toolList is a repeatable flag.
type toolList map[string]bool

func (l toolList) String() string {
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, name)
	}
	return strings.Join(names, ",")
}

func (l toolList) Set(name string) error {
	if name == "" {
		return errors.New("empty tool name")
	}
	l[name] = true
	return nil
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	s := &settings{fail: map[string]bool{}}
	fs := flag.NewFlagSet("agent-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defaultTarget := getenv("INTERLOCK_SERVER")
	if defaultTarget == "" {
		defaultTarget = interlock.DefaultTarget
	}
	fs.StringVar(&s.target, "target", defaultTarget, "the Interlock server, `HOST:PORT` [default: $INTERLOCK_SERVER or "+interlock.DefaultTarget+"]")
	fs.StringVar(&s.agent, "agent", "", "the agent `ID` this worker runs for (required)")
	fs.StringVar(&s.tokenFile, "token-file", "", "read the bearer token from `PATH` [default: the token in $INTERLOCK_TOKEN]")
	fs.StringVar(&s.caFile, "ca-file", "", "use TLS, trusting the CA certificates in this `PEM` file")
	fs.StringVar(&s.certFile, "cert-file", "", "mutual TLS: the client certificate `PEM` file (with --key-file)")
	fs.StringVar(&s.keyFile, "key-file", "", "mutual TLS: the client private key `PEM` file (with --cert-file)")
	fs.Var(toolList(s.fail), "fail", "report this `TOOL` FAILED (repeatable), to make a plan fail and roll back")
	fs.IntVar(&s.maxItems, "max-items", 0, "exit 0 after handling `N` items; 0 runs until stopped")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agent-worker --agent ID [--target HOST:PORT] [--token-file PATH] "+
			"[--ca-file PEM] [--cert-file PEM --key-file PEM] [--fail TOOL]... [--max-items N]")
		fmt.Fprintln(fs.Output(), "\nRuns the plan steps Interlock hands to one agent (simulated tools) and reports them.")
		fmt.Fprintln(fs.Output(), "One JSON line per handled item on stdout; logs on stderr.")
		fmt.Fprintln(fs.Output())
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			if arg == "value" {
				arg = ""
			}
			fmt.Fprintf(fs.Output(), "  --%s %s\n    \t%s\n", f.Name, arg, usage)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	if s.agent == "" {
		problems = append(problems, "--agent is required")
	}
	if s.target == "" {
		problems = append(problems, "--target is empty")
	}
	if s.maxItems < 0 {
		problems = append(problems, "--max-items must not be negative")
	}
	if (s.certFile == "") != (s.keyFile == "") {
		problems = append(problems, "--cert-file and --key-file go together")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "agent-worker:", p)
		}
		fs.Usage()
		return nil, errors.New(strings.Join(problems, "; "))
	}
	if s.tokenFile == "" {
		s.token = strings.TrimSpace(getenv("INTERLOCK_TOKEN"))
	}
	return s, nil
}

func (s *settings) dialOptions() []interlock.Option {
	var opts []interlock.Option
	switch {
	case s.tokenFile != "":
		opts = append(opts, interlock.WithTokenFile(s.tokenFile))
	case s.token != "":
		opts = append(opts, interlock.WithToken(s.token))
	}
	if s.caFile != "" {
		opts = append(opts, interlock.WithCAFile(s.caFile))
	}
	if s.certFile != "" {
		opts = append(opts, interlock.WithClientCert(s.certFile, s.keyFile))
	}
	return opts
}

// run is the whole program: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	s, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	root, hardStop := context.WithCancel(context.Background())
	defer hardStop()
	client, err := interlock.Dial(root, s.target, s.dialOptions()...)
	if err != nil {
		fmt.Fprintln(stderr, "agent-worker:", err)
		return exitError
	}
	defer client.Close()

	w := newWorker(client, s, stdout, log)
	go func() {
		first := true
		for {
			select {
			case <-signals:
			case <-root.Done():
				return
			}
			if first {
				log.Info("stopping: after the item in hand, if any (signal again to stop at once)")
				w.stop()
				first = false
			} else {
				log.Warn("stopping at once")
				hardStop()
			}
		}
	}()
	err = w.run(root)
	if root.Err() != nil {
		fmt.Fprintln(stderr, "agent-worker: stopped at once by a second signal")
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent-worker: giving up: %v%s\n", err, hint(err, s))
		return exitError
	}
	log.Info("stopped", "handled", w.handled)
	return exitOK
}

// hint adds advice to the errors a user can fix.
func hint(err error, s *settings) string {
	switch {
	case interlock.Reason(err) == "UNKNOWN_AGENT":
		return fmt.Sprintf(" (is %q listed in the policy bundle's agents, policies/interlock/agents/data.yaml?)", s.agent)
	case interlock.Code(err) == codes.Unauthenticated:
		return " (check --token-file or INTERLOCK_TOKEN)"
	case interlock.Code(err) == codes.PermissionDenied:
		return " (the token or certificate may not allow acting as this agent)"
	}
	return ""
}

// outcomeLine is the JSON line printed for each handled item.
type outcomeLine struct {
	WorkID       string `json:"work_id"`
	PlanID       string `json:"plan_id"`
	StepID       string `json:"step_id"`
	Tool         string `json:"tool"`
	Mode         string `json:"mode"`
	Compensation bool   `json:"compensation"`
	Outcome      string `json:"outcome"`
}

// toolFailed is a tool that ran and failed: the item is reported FAILED.
type toolFailed struct{ msg string }

func (e *toolFailed) Error() string { return e.msg }

type worker struct {
	client   *interlock.Client
	agent    string
	fail     map[string]bool
	maxItems int
	out      *json.Encoder
	log      *slog.Logger
	// runTool runs one item (simulated); tests replace it.
	runTool func(ctx context.Context, item *interlockv1.WorkItem) (map[string]any, error)

	mu           sync.Mutex
	busy         bool // an item is being run and reported
	stopping     bool
	stopped      chan struct{} // closed by stop
	cancelStream context.CancelFunc
	handled      int
}

func newWorker(client *interlock.Client, s *settings, stdout io.Writer, log *slog.Logger) *worker {
	out := json.NewEncoder(stdout)
	out.SetEscapeHTML(false)
	w := &worker{
		client:   client,
		agent:    s.agent,
		fail:     s.fail,
		maxItems: s.maxItems,
		out:      out,
		log:      log,
		stopped:  make(chan struct{}),
	}
	w.runTool = w.simulate
	return w
}

// stop asks the worker to stop: at once when idle, else after the item in
// hand is reported.
func (w *worker) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return
	}
	w.stopping = true
	close(w.stopped)
	if !w.busy && w.cancelStream != nil {
		w.cancelStream()
	}
}

func (w *worker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

var errDone = errors.New("handled --max-items items")

// run pulls work until stopped, --max-items items are handled, or an error
// other than UNAVAILABLE; it reconnects with a backoff when the stream
// drops. It returns nil when it stopped as asked.
func (w *worker) run(ctx context.Context) error {
	backoff := minBackoff
	for {
		w.mu.Lock()
		if w.stopping {
			w.mu.Unlock()
			return nil
		}
		sctx, cancel := context.WithCancel(ctx)
		w.cancelStream = cancel
		w.mu.Unlock()

		w.log.Info("pulling work", "agent", w.agent, "target", w.client.Target())
		opened := time.Now()
		got, err := w.pull(sctx, ctx)
		cancel()
		switch {
		case errors.Is(err, errDone):
			w.log.Info("handled the items asked for", "max_items", w.maxItems)
			return nil
		case w.isStopping():
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, io.EOF):
			w.log.Warn("the server ended the work stream")
		case interlock.Code(err) == codes.Unavailable:
			if interlock.Reason(err) == "SERVER_STOPPING" {
				w.log.Warn("the server ended the work stream: it is stopping")
			} else {
				w.log.Warn("work stream unavailable", "error", err)
			}
		default:
			return err
		}
		if got > 0 || time.Since(opened) > maxBackoff {
			backoff = minBackoff // it was connected: start the backoff over
		}
		w.log.Info("reconnecting", "in", backoff)
		select {
		case <-time.After(backoff):
		case <-w.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// pull reads one work stream, handling each item; it returns how many it
// handled and why the stream ended (errDone after --max-items items).
func (w *worker) pull(sctx, ctx context.Context) (int, error) {
	stream, err := w.client.PullWork(sctx, w.agent)
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	got := 0
	for {
		item, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got++
		w.mu.Lock()
		w.busy = true
		w.mu.Unlock()
		// The stream stays open until the item is reported: when it closes,
		// the server offers a DRY_RUN item again and marks a LIVE one AMBIGUOUS.
		w.handle(ctx, item)
		w.mu.Lock()
		w.busy = false
		w.handled++
		done := w.maxItems > 0 && w.handled >= w.maxItems
		stopping := w.stopping
		w.mu.Unlock()
		if done {
			return got, errDone
		}
		if stopping {
			return got, nil
		}
	}
}

// handle runs one item, reports it and prints its line.
func (w *worker) handle(ctx context.Context, item *interlockv1.WorkItem) {
	mode := interlock.ModeName(item.GetMode())
	started := time.Now()
	output, err := w.runTool(ctx, item)
	result := interlock.Result{Outcome: interlock.Succeeded, Output: output, Duration: time.Since(started)}
	if err != nil {
		result = interlock.Result{Outcome: interlock.Failed, ErrorMessage: err.Error(), Duration: time.Since(started)}
	}
	if err := w.report(ctx, item, result); err != nil {
		// NOT_FOUND: the plan was cancelled or the step timed out meanwhile.
		w.log.Warn("could not report", "tool", item.GetTool(), "work_id", item.GetWorkId(), "error", err)
	} else {
		w.log.Info("reported", "tool", item.GetTool(), "work_id", item.GetWorkId(),
			"outcome", interlock.OutcomeName(result.Outcome), "error", result.ErrorMessage)
	}
	w.out.Encode(outcomeLine{
		WorkID:       item.GetWorkId(),
		PlanID:       item.GetPlanId(),
		StepID:       item.GetStepId(),
		Tool:         item.GetTool(),
		Mode:         mode,
		Compensation: item.GetCompensation(),
		Outcome:      interlock.OutcomeName(result.Outcome),
	})
}

// report sends the item's result. The client never retries a report; this
// worker does, on UNAVAILABLE only, until the item's deadline: the server
// takes a work item's late report (a LIVE item's too) after it restarts,
// and a report that did land the first time is not recorded twice.
func (w *worker) report(ctx context.Context, item *interlockv1.WorkItem, result interlock.Result) error {
	until := time.Now().Add(reportGrace)
	if d := item.GetDeadline(); d != nil && d.AsTime().After(time.Now()) {
		until = d.AsTime()
	}
	pause := minBackoff
	for {
		_, err := w.client.ReportWork(ctx, item, result)
		if interlock.Code(err) != codes.Unavailable || time.Now().Add(pause).After(until) {
			return err
		}
		w.log.Warn("report unavailable: trying again", "work_id", item.GetWorkId(), "in", pause, "error", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		pause = min(pause*2, maxBackoff)
	}
}

// simulate "runs" an item: it fails the tools named with --fail, undoes a
// compensation, performs a LIVE call (a fake receipt), and only validates
// MOCK and DRY_RUN calls.
func (w *worker) simulate(_ context.Context, item *interlockv1.WorkItem) (map[string]any, error) {
	mode := interlock.ModeName(item.GetMode())
	args, _ := json.Marshal(item.GetArguments().AsMap())
	call := fmt.Sprintf("%s(%s) for %s/%s", item.GetTool(), args, item.GetPlanId(), item.GetStepId())
	if w.fail[item.GetTool()] {
		return nil, &toolFailed{fmt.Sprintf("simulated failure of %s (--fail)", item.GetTool())}
	}
	if item.GetCompensation() {
		receipt := "undo_" + randomHex()
		w.log.Info("UNDO: reverting the earlier step (simulated)", "call", call, "receipt", receipt)
		return map[string]any{"undone": item.GetStepId(), "receipt": receipt, "simulated": true}, nil
	}
	if item.GetMode() == interlock.Live {
		receipt := "rcpt_" + randomHex()
		w.log.Info("LIVE: performing it now (simulated)", "call", call, "receipt", receipt)
		return map[string]any{"receipt": receipt, "simulated": true}, nil
	}
	w.log.Info(mode+": arguments checked, nothing changed", "call", call)
	return map[string]any{"mode": mode, "validated": true}, nil
}

func randomHex() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
