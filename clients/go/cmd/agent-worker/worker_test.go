package main

// The worker against a real Interlock server. The test binary doubles as
// the worker: with AGENT_WORKER_RUN_MAIN=1 it runs main() on its arguments,
// so the tests drive the real program, flags, exit codes and signals.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/interlockv1"
	"github.com/interlock-dev/interlock/clients/go/internal/testserver"
)

var server *testserver.Server

func TestMain(m *testing.M) {
	if os.Getenv("AGENT_WORKER_RUN_MAIN") == "1" {
		main()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := testserver.Start(ctx, testserver.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start the Interlock server for the worker tests:", err)
		os.Exit(1)
	}
	server = s
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

// process is the worker running as a child process.
type process struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr lockedBuffer
	done   chan struct{}
	code   int
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startWorker(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INTERLOCK_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(append(p.cmd.Env, "AGENT_WORKER_RUN_MAIN=1"), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the worker to exit and returns its exit code.
func (p *process) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("the worker did not exit within %v; stderr:\n%s", limit, p.stderr.String())
		return -1
	}
}

// waitLog waits until the worker's stderr contains text.
func (p *process) waitLog(t *testing.T, text string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(p.stderr.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker never logged %q; stderr:\n%s", text, p.stderr.String())
		}
		select {
		case <-p.done:
			t.Fatalf("the worker exited (%d) before logging %q; stderr:\n%s", p.code, text, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lines parses the worker's stdout: one JSON object a line, with exactly
// the documented keys.
func lines(t *testing.T, stdout []byte) []outcomeLine {
	t.Helper()
	var out []outcomeLine
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	wantKeys := []string{"compensation", "mode", "outcome", "plan_id", "step_id", "tool", "work_id"}
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", sc.Text(), err)
		}
		var keys []string
		for k := range raw {
			keys = append(keys, k)
		}
		if !sameSet(keys, wantKeys) {
			t.Errorf("line %s has keys %v, want %v", sc.Text(), keys, wantKeys)
		}
		if _, ok := raw["compensation"].(bool); !ok {
			t.Errorf("compensation is not a boolean in %s", sc.Text())
		}
		var line outcomeLine
		json.Unmarshal(sc.Bytes(), &line)
		out = append(out, line)
	}
	return out
}

func sameSet(a, b []string) bool {
	set := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	return len(a) == len(b) && reflect.DeepEqual(set(a), set(b))
}

var seq atomic.Int64

func planID(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

func dial(t *testing.T, target string) *interlock.Client {
	t.Helper()
	c, err := interlock.Dial(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func submit(t *testing.T, c *interlock.Client, doc string) string {
	t.Helper()
	req, err := interlock.ParsePlanJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	plan, err := c.SubmitPlan(ctx, req)
	if err != nil {
		t.Fatalf("SubmitPlan: %v", err)
	}
	return plan.GetPlanId()
}

func waitPlan(t *testing.T, c *interlock.Client, id string) *interlockv1.Plan {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan, err := c.WaitPlan(ctx, id, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("WaitPlan(%s): %v", id, err)
	}
	return plan
}

func TestWorkerRunsPlan(t *testing.T) {
	c := dial(t, server.Target)
	id := submit(t, c, `{"plan_id": "`+planID("go_worker")+`", "steps": [
		{"step_id": "inspect", "tool": "vision_inspect", "agent_id": "agent1", "confidence": 0.8,
		 "arguments": {"target": "#signup"}},
		{"step_id": "fill", "tool": "form_fill", "agent_id": "agent1", "confidence": 0.75, "depends_on": ["inspect"],
		 "arguments": {"form_id": "signup", "fields": {"email": "a@example.com"}}}]}`)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("dev-token\n"), 0o600)
	p := startWorker(t, nil, "--target", server.Target, "--agent", "agent1", "--max-items", "2", "--token-file", tokenFile)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	got := lines(t, p.stdout.Bytes())
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(got), p.stdout.String())
	}
	want := []outcomeLine{
		{PlanID: id, StepID: "inspect", Tool: "vision_inspect", Mode: "LIVE", Outcome: "SUCCEEDED"},
		{PlanID: id, StepID: "fill", Tool: "form_fill", Mode: "DRY_RUN", Outcome: "SUCCEEDED"},
	}
	for i := range want {
		if got[i].WorkID == "" {
			t.Errorf("line %d has no work id", i)
		}
		want[i].WorkID = got[i].WorkID
		if got[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if plan := waitPlan(t, c, id); plan.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Errorf("plan %v: %s", plan.GetState(), plan.GetMessage())
	}
	if !strings.Contains(p.stderr.String(), "receipt=rcpt_") {
		t.Errorf("no LIVE receipt logged:\n%s", p.stderr.String())
	}
}

func TestWorkerFailRollsBack(t *testing.T) {
	c := dial(t, server.Target)
	id := submit(t, c, `{"plan_id": "`+planID("go_rollback")+`", "steps": [
		{"step_id": "fill", "tool": "form_fill", "agent_id": "agent1", "confidence": 0.85,
		 "arguments": {"form_id": "signup", "fields": {"email": "a@example.com"}}},
		{"step_id": "inspect", "tool": "vision_inspect", "agent_id": "agent1", "confidence": 0.8, "depends_on": ["fill"],
		 "arguments": {"target": "#signup"}}]}`)
	p := startWorker(t, []string{"INTERLOCK_SERVER=" + server.Target, "INTERLOCK_TOKEN=env-token"},
		"--agent", "agent1", "--fail", "vision_inspect", "--fail", "send_email", "--max-items", "3")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	got := lines(t, p.stdout.Bytes())
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(got), p.stdout.String())
	}
	if got[0].StepID != "fill" || got[0].Mode != "LIVE" || got[0].Compensation || got[0].Outcome != "SUCCEEDED" {
		t.Errorf("line 0: %+v", got[0])
	}
	if got[1].StepID != "inspect" || got[1].Outcome != "FAILED" {
		t.Errorf("line 1: %+v", got[1])
	}
	if got[2].Tool != "form_clear" || !got[2].Compensation || got[2].Outcome != "SUCCEEDED" {
		t.Errorf("line 2 (the compensation): %+v", got[2])
	}
	if plan := waitPlan(t, c, id); plan.GetState() != interlockv1.PlanState_PLAN_STATE_ROLLED_BACK {
		t.Errorf("plan %v, want ROLLED_BACK: %s", plan.GetState(), plan.GetMessage())
	}
}

func TestWorkerUnknownAgent(t *testing.T) {
	p := startWorker(t, nil, "--target", server.Target, "--agent", "nobody")
	if code := p.wait(t, 15*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, p.stderr.String())
	}
	stderr := p.stderr.String()
	for _, want := range []string{"giving up", "NOT_FOUND", "UNKNOWN_AGENT", "nobody"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if p.stdout.Len() != 0 {
		t.Errorf("stdout: %q", p.stdout.String())
	}
}

func TestWorkerUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"no agent":          {"--target", server.Target},
		"cert without key":  {"--agent", "agent1", "--cert-file", "c.pem"},
		"negative max":      {"--agent", "agent1", "--max-items", "-1"},
		"unknown flag":      {"--agent", "agent1", "--verbose"},
		"positional":        {"--agent", "agent1", "extra"},
		"max-items no word": {"--agent", "agent1", "--max-items", "many"},
	} {
		var stderr bytes.Buffer
		if code := run(args, func(string) string { return "" }, io.Discard, &stderr, nil); code != exitUsage {
			t.Errorf("%s: exit %d, want 2; stderr:\n%s", name, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "usage: agent-worker") {
			t.Errorf("%s: no usage on stderr:\n%s", name, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, os.Getenv, io.Discard, &stderr, nil); code != exitOK {
		t.Errorf("--help: exit %d", code)
	}
	for _, flag := range []string{"-target", "-agent", "-token-file", "-ca-file", "-cert-file", "-key-file", "-fail", "-max-items"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
	// A CA file that does not exist: a clear error, exit 1.
	stderr.Reset()
	code := run([]string{"--agent", "agent1", "--target", server.Target, "--ca-file", "/nonexistent/ca.pem"},
		func(string) string { return "" }, io.Discard, &stderr, nil)
	if code != exitError || !strings.Contains(stderr.String(), "CA file") {
		t.Errorf("missing CA file: exit %d; stderr:\n%s", code, stderr.String())
	}
}

func TestWorkerSettings(t *testing.T) {
	env := map[string]string{"INTERLOCK_SERVER": "127.0.0.1:6000", "INTERLOCK_TOKEN": " env-token\n"}
	s, err := parseFlags([]string{"--agent", "a", "--fail", "x", "--fail", "y"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.target != "127.0.0.1:6000" || s.token != "env-token" || !s.fail["x"] || !s.fail["y"] || s.maxItems != 0 {
		t.Errorf("settings %+v", s)
	}
	if len(s.dialOptions()) != 1 {
		t.Errorf("dial options %d, want the token", len(s.dialOptions()))
	}
	s, err = parseFlags([]string{"--agent", "a", "--token-file", "t", "--ca-file", "ca", "--cert-file", "c", "--key-file", "k",
		"--target", "h:1", "--max-items", "3"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.target != "h:1" || s.token != "" || s.tokenFile != "t" || s.maxItems != 3 || len(s.dialOptions()) != 3 {
		t.Errorf("settings %+v", s)
	}
	s, err = parseFlags([]string{"--agent", "a"}, func(string) string { return "" }, io.Discard)
	if err != nil || s.target != interlock.DefaultTarget || len(s.dialOptions()) != 0 {
		t.Errorf("defaults %+v, %v", s, err)
	}
}

func TestWorkerStopsOnSIGTERMWhenIdle(t *testing.T) {
	p := startWorker(t, nil, "--target", server.Target, "--agent", "agent2")
	p.waitLog(t, "pulling work", 10*time.Second)
	time.Sleep(200 * time.Millisecond) // the stream is open
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "stopped") {
		t.Errorf("stderr:\n%s", p.stderr.String())
	}
}

func TestWorkerFinishesItemInHandOnStop(t *testing.T) {
	c := dial(t, server.Target)
	id := submit(t, c, `{"plan_id": "`+planID("go_stop")+`", "steps": [
		{"step_id": "look", "tool": "crm_lookup", "agent_id": "readonly", "confidence": 0.6,
		 "arguments": {"record_id": "CU-12345"}}]}`)
	var stdout, stderr bytes.Buffer
	w := newWorker(c, &settings{agent: "readonly"}, &stdout, slog.New(slog.NewTextHandler(&stderr, nil)))
	started, release := make(chan struct{}), make(chan struct{})
	w.runTool = func(ctx context.Context, item *interlockv1.WorkItem) (map[string]any, error) {
		close(started)
		<-release
		return w.simulate(ctx, item)
	}
	done := make(chan error, 1)
	go func() { done <- w.run(context.Background()) }()
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatalf("no work arrived; log:\n%s", stderr.String())
	}
	w.stop() // while busy: the item is finished and reported first
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the worker stopped with an item in hand: %v", err)
	default:
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not stop after the item")
	}
	got := lines(t, stdout.Bytes())
	if len(got) != 1 || got[0].StepID != "look" || got[0].Mode != "DRY_RUN" || got[0].Outcome != "SUCCEEDED" {
		t.Errorf("lines %+v", got)
	}
	if plan := waitPlan(t, c, id); plan.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Errorf("plan %v: %s", plan.GetState(), plan.GetMessage())
	}
}

func TestWorkerReconnects(t *testing.T) {
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("127.0.0.1:%d", port)
	// No server yet: the worker waits, reconnecting with a backoff.
	p := startWorker(t, nil, "--target", target, "--agent", "agent1", "--max-items", "1")
	p.waitLog(t, "reconnecting", 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := testserver.Start(ctx, testserver.Options{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c := dial(t, target)
	id := submit(t, c, `{"plan_id": "`+planID("go_reconnect")+`", "steps": [
		{"step_id": "fill", "tool": "form_fill", "agent_id": "agent1", "confidence": 0.7,
		 "arguments": {"form_id": "f", "fields": {"name": "x"}}}]}`)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	got := lines(t, p.stdout.Bytes())
	if len(got) != 1 || got[0].PlanID != id || got[0].Outcome != "SUCCEEDED" {
		t.Errorf("lines %+v", got)
	}
	if plan := waitPlan(t, c, id); plan.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Errorf("plan %v: %s", plan.GetState(), plan.GetMessage())
	}
}

const (
	agentToken    = "ilk_worker_test_agent1"
	operatorToken = "ilk_worker_test_operator"
)

// startSecure runs a server with TLS (mutual when asked) and a principals
// file: agent1 and an operator by token, agent1 by certificate.
func startSecure(t *testing.T, mutual bool) (*testserver.Server, *testserver.PKI) {
	t.Helper()
	pki, err := testserver.NewPKI(t.TempDir(), "agent1", "operator")
	if err != nil {
		t.Fatal(err)
	}
	principals := fmt.Sprintf("tokens:\n  %s: {id: agent1, kind: agent}\n  %s: {id: op, kind: operator}\n"+
		"certificates:\n  agent1: {id: agent1, kind: agent}\n  operator: {id: op, kind: operator}\n",
		testserver.TokenHash(agentToken), testserver.TokenHash(operatorToken))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := testserver.Start(ctx, testserver.Options{Secure: &testserver.Secure{
		PKI: pki, Principals: principals, MutualTLS: mutual, HealthClient: "operator",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, pki
}

func TestWorkerTLSWithTokenFile(t *testing.T) {
	s, pki := startSecure(t, false)
	operator, err := interlock.Dial(context.Background(), s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithToken(operatorToken))
	if err != nil {
		t.Fatal(err)
	}
	defer operator.Close()
	id := submit(t, operator, `{"plan_id": "`+planID("go_worker_tls")+`", "steps": [
		{"step_id": "inspect", "tool": "vision_inspect", "agent_id": "agent1", "confidence": 0.8, "arguments": {"target": "#a"}}]}`)
	tokenFile := filepath.Join(t.TempDir(), "agent1.token")
	os.WriteFile(tokenFile, []byte(agentToken+"\n"), 0o600)
	p := startWorker(t, nil, "--target", s.Target, "--agent", "agent1", "--ca-file", pki.CAFile,
		"--token-file", tokenFile, "--max-items", "1")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	if got := lines(t, p.stdout.Bytes()); len(got) != 1 || got[0].PlanID != id || got[0].Outcome != "SUCCEEDED" {
		t.Errorf("lines %+v", got)
	}
	if plan := waitPlan(t, operator, id); plan.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Errorf("plan %v: %s", plan.GetState(), plan.GetMessage())
	}

	// The token from INTERLOCK_TOKEN, but not one the server knows: exit 1, saying so.
	p = startWorker(t, []string{"INTERLOCK_TOKEN=ilk_not_known"}, "--target", s.Target, "--agent", "agent1", "--ca-file", pki.CAFile)
	if code := p.wait(t, 15*time.Second); code != 1 {
		t.Fatalf("a wrong token: exit %d; stderr:\n%s", code, p.stderr.String())
	}
	for _, want := range []string{"UNAUTHENTICATED", "INVALID_TOKEN", "INTERLOCK_TOKEN"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.stderr.String())
		}
	}
	// agent1's token working for agent2: refused.
	p = startWorker(t, []string{"INTERLOCK_TOKEN=" + agentToken}, "--target", s.Target, "--agent", "agent2", "--ca-file", pki.CAFile)
	if code := p.wait(t, 15*time.Second); code != 1 || !strings.Contains(p.stderr.String(), "PERMISSION_DENIED") {
		t.Fatalf("another agent's work: exit %d; stderr:\n%s", code, p.stderr.String())
	}
}

func TestWorkerMutualTLS(t *testing.T) {
	s, pki := startSecure(t, true)
	op := pki.Clients["operator"]
	operator, err := interlock.Dial(context.Background(), s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithClientCert(op.Cert, op.Key))
	if err != nil {
		t.Fatal(err)
	}
	defer operator.Close()
	id := submit(t, operator, `{"plan_id": "`+planID("go_worker_mtls")+`", "steps": [
		{"step_id": "fill", "tool": "form_fill", "agent_id": "agent1", "confidence": 0.7,
		 "arguments": {"form_id": "f", "fields": {"a": "b"}}}]}`)
	agent := pki.Clients["agent1"]
	p := startWorker(t, nil, "--target", s.Target, "--agent", "agent1", "--ca-file", pki.CAFile,
		"--cert-file", agent.Cert, "--key-file", agent.Key, "--max-items", "1")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	if got := lines(t, p.stdout.Bytes()); len(got) != 1 || got[0].PlanID != id || got[0].Mode != "DRY_RUN" {
		t.Errorf("lines %+v", got)
	}
	if plan := waitPlan(t, operator, id); plan.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Errorf("plan %v: %s", plan.GetState(), plan.GetMessage())
	}
}
