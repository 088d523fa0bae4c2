package interlock_test

// Integration tests against a real Interlock server (the Python one in the
// repository's .venv), started once for the package on a free loopback port.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/interlockv1"
	"github.com/interlock-dev/interlock/clients/go/internal/testserver"
)

var server *testserver.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := testserver.Start(ctx, testserver.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start the Interlock server for the integration tests:", err)
		os.Exit(1)
	}
	server = s
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

var planSeq atomic.Int64

// uniqueID makes plan ids unique across the tests of one server.
func uniqueID(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano(), planSeq.Add(1))
}

func dial(t *testing.T, opts ...interlock.Option) *interlock.Client {
	t.Helper()
	c, err := interlock.Dial(context.Background(), server.Target, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ownServer starts a server of the test's own, for a test whose expectations
// depend on the server's state (the LIVE cap, a pair's trust) that other
// tests sharing the package's server would move; it stops with the test.
func ownServer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := testserver.Start(ctx, testserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s.Target
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantError checks that err is an *interlock.Error with the code and reason.
func wantError(t *testing.T, err error, code codes.Code, reason string) *interlock.Error {
	t.Helper()
	var ierr *interlock.Error
	if !errors.As(err, &ierr) {
		t.Fatalf("got error %v (%T), want an *interlock.Error %v", err, err, code)
	}
	if ierr.Code != code || ierr.Reason != reason {
		t.Fatalf("got %v / %q, want %v / %q: %v", ierr.Code, ierr.Reason, code, reason, ierr)
	}
	if reason != "" && ierr.Domain != interlock.Domain {
		t.Errorf("domain %q, want %q", ierr.Domain, interlock.Domain)
	}
	return ierr
}

func TestIntegrationDialBlock(t *testing.T) {
	c := dial(t, interlock.WithBlock())
	if c.Target() != server.Target {
		t.Errorf("Target() = %q", c.Target())
	}
}

func TestIntegrationListTools(t *testing.T) {
	c := dial(t)
	resp, err := c.ListTools(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPolicyRevision() == "" {
		t.Error("no policy revision")
	}
	var names []string
	for _, tool := range resp.GetTools() {
		names = append(names, tool.GetName())
	}
	for _, want := range []string{"vision_inspect", "form_fill", "form_clear", "crm_lookup"} {
		if !slices.Contains(names, want) {
			t.Errorf("tool %s missing from %v", want, names)
		}
	}
	for _, tool := range resp.GetTools() {
		if tool.GetName() == "form_fill" && tool.GetCompensatingTool() != "form_clear" {
			t.Errorf("form_fill's compensating tool is %q", tool.GetCompensatingTool())
		}
	}
}

func TestIntegrationRequestAndReport(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 10*time.Second)
	decision, err := c.RequestToolCall(ctx, interlock.ToolCall{
		AgentID:    "agent1",
		Tool:       "form_fill",
		Confidence: 0.75,
		Arguments:  map[string]any{"form_id": "signup", "fields": map[string]string{"email": "a@example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if decision.GetVerdict() != interlockv1.Verdict_VERDICT_ALLOW || decision.GetMode() != interlock.DryRun {
		t.Fatalf("decision %v %v, want ALLOW DRY_RUN: %v", decision.GetVerdict(), decision.GetMode(), decision.GetReasons())
	}
	if decision.GetDecisionId() == "" || len(decision.GetReasons()) == 0 {
		t.Fatalf("decision without id or reasons: %v", decision)
	}
	result, err := c.ReportToolResult(ctx, interlock.Result{
		DecisionID: decision.GetDecisionId(),
		AgentID:    "agent1",
		Outcome:    interlock.Succeeded,
		Output:     map[string]any{"filled": 1},
		Duration:   400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if result.GetOutcome() != interlock.Succeeded || result.GetMode() != interlock.DryRun || result.GetTool() != "form_fill" {
		t.Errorf("recorded result %v", result)
	}
	if got := result.GetDuration().AsDuration(); got != 400*time.Millisecond {
		t.Errorf("recorded duration %v", got)
	}
	// Reported twice: refused, and not retried by the client.
	_, err = c.ReportToolResult(ctx, interlock.Result{DecisionID: decision.GetDecisionId(), AgentID: "agent1", Outcome: interlock.Succeeded})
	wantError(t, err, codes.AlreadyExists, "RESULT_ALREADY_REPORTED")
	// Another agent's decision.
	decision2, err := c.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent1", Tool: "vision_inspect", Confidence: 0.8,
		Arguments: map[string]any{"target": "#submit"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ReportToolResult(ctx, interlock.Result{DecisionID: decision2.GetDecisionId(), AgentID: "agent2", Outcome: interlock.Failed})
	wantError(t, err, codes.PermissionDenied, "NOT_YOUR_DECISION")
	report(t, c, decision2)
}

// report reports a decided call SUCCEEDED: a LIVE call left unreported
// counts against the server's cap on LIVE executions in flight.
func report(t *testing.T, c *interlock.Client, d *interlockv1.Decision) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ReportToolResult(ctx, interlock.Result{DecisionID: d.GetDecisionId(), AgentID: d.GetAgentId(),
		Outcome: interlock.Succeeded, Duration: time.Millisecond}); err != nil {
		t.Errorf("reporting %s: %v", d.GetDecisionId(), err)
	}
}

func TestIntegrationUnknownAgent(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 10*time.Second)
	_, err := c.RequestToolCall(ctx, interlock.ToolCall{AgentID: "nobody", Tool: "vision_inspect", Confidence: 0.8,
		Arguments: map[string]any{"target": "x"}})
	ierr := wantError(t, err, codes.NotFound, "UNKNOWN_AGENT")
	if status.Code(err) != codes.NotFound || interlock.Code(err) != codes.NotFound {
		t.Errorf("status.Code = %v, interlock.Code = %v", status.Code(err), interlock.Code(err))
	}
	if ierr.Message == "" {
		t.Error("no message")
	}
	// The work stream of an unknown agent fails on its first Recv.
	stream, err := c.PullWork(ctx, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	_, err = stream.Recv()
	wantError(t, err, codes.NotFound, "UNKNOWN_AGENT")
}

func TestIntegrationInvalidArguments(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 10*time.Second)
	// Arguments that break the tool's schema: the field is named.
	_, err := c.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent1", Tool: "form_fill", Confidence: 0.75,
		Arguments: map[string]any{"form_id": "signup", "fields": map[string]any{"email": 1}}})
	ierr := wantError(t, err, codes.InvalidArgument, "ARGUMENTS_SCHEMA")
	if _, ok := ierr.Violation("arguments.fields.email"); !ok {
		t.Errorf("no violation of arguments.fields.email in %v", ierr.FieldViolations)
	}
	// A confidence out of range and a missing tool: every field at once.
	_, err = c.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent1", Confidence: 1.5})
	ierr = wantError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	if len(ierr.FieldViolations) < 2 {
		t.Errorf("want the tool and the confidence named, got %v", ierr.FieldViolations)
	}
	if _, ok := ierr.Violation("confidence"); !ok {
		t.Errorf("no violation of confidence in %v", ierr.FieldViolations)
	}
}

func TestIntegrationHealthSignalsPolicy(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 10*time.Second)
	health, err := c.GetHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if health.GetStatus() == interlockv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED || !health.GetEngineAvailable() {
		t.Errorf("health %v", health)
	}
	if _, err := c.ListSignals(ctx, interlock.SignalFilter{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	st, err := c.PolicyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRevision() != health.GetPolicyRevision() {
		t.Errorf("policy revision %q, health says %q", st.GetRevision(), health.GetPolicyRevision())
	}
}

func TestIntegrationApprovals(t *testing.T) {
	// A HIGH-risk irreversible call waits for a human approval; another
	// (dev) principal approves it; the call then runs LIVE, once.
	c := dial(t)
	approver := dial(t, interlock.WithMetadata("x-interlock-dev-principal", "alice"))
	ctx := testContext(t, 20*time.Second)
	record := fmt.Sprintf("CU-%08d", planSeq.Add(1)+time.Now().UnixNano()%1e7)
	call := interlock.ToolCall{AgentID: "ops", Tool: "delete_record", Confidence: 0.9,
		Arguments: map[string]any{"record_id": record, "reason": "GDPR erasure"}}
	held, err := c.RequestToolCall(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	if held.GetVerdict() != interlockv1.Verdict_VERDICT_PENDING_APPROVAL || held.GetApprovalId() == "" {
		t.Fatalf("decision %v, want PENDING_APPROVAL with an approval id", held)
	}
	pending, err := c.ListApprovals(ctx, interlock.ApprovalFilter{AgentID: "ops", Tool: "delete_record"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range pending {
		found = found || a.GetApprovalId() == held.GetApprovalId()
		if a.GetState() != interlockv1.ApprovalState_APPROVAL_STATE_PENDING {
			t.Errorf("approval %s is %v in the PENDING list", a.GetApprovalId(), a.GetState())
		}
	}
	if !found {
		t.Fatalf("approval %s not listed among %d", held.GetApprovalId(), len(pending))
	}
	// AwaitApproval returns when it is resolved.
	awaited := make(chan *interlockv1.Approval, 1)
	go func() {
		a, err := c.AwaitApproval(ctx, held.GetApprovalId(), 10*time.Second)
		if err != nil {
			t.Errorf("AwaitApproval: %v", err)
		}
		awaited <- a
	}()
	time.Sleep(100 * time.Millisecond)
	approved, err := approver.ResolveApproval(ctx, held.GetApprovalId(), interlock.Approve, "checked the ticket")
	if err != nil {
		t.Fatal(err)
	}
	if approved.GetState() != interlockv1.ApprovalState_APPROVAL_STATE_APPROVED || approved.GetResolvedBy() != "alice" {
		t.Errorf("approval %v", approved)
	}
	select {
	case a := <-awaited:
		if a.GetState() != interlockv1.ApprovalState_APPROVAL_STATE_APPROVED {
			t.Errorf("awaited approval %v", a)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("AwaitApproval did not return")
	}
	call.ApprovalID = held.GetApprovalId()
	live, err := c.RequestToolCall(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	if live.GetVerdict() != interlockv1.Verdict_VERDICT_ALLOW || live.GetMode() != interlock.Live {
		t.Errorf("the approved call: %v %v %v", live.GetVerdict(), live.GetMode(), live.GetReasons())
	}
	report(t, c, live)
	// Used up: a second call with it is refused, and so is resolving it again.
	if _, err := c.RequestToolCall(ctx, call); err == nil {
		t.Error("an approval was used twice")
	}
	_, err = approver.ResolveApproval(ctx, held.GetApprovalId(), interlock.Deny, "too late")
	if interlock.Code(err) != codes.FailedPrecondition {
		t.Errorf("resolving a used approval: %v", err)
	}
	_, err = c.AwaitApproval(ctx, "apr_unknown", 100*time.Millisecond)
	if interlock.Code(err) != codes.NotFound {
		t.Errorf("awaiting an unknown approval: %v", err)
	}
}

// runWorker pulls agent's work and reports each item SUCCEEDED until ctx
// ends; it returns the items it handled.
func runWorker(ctx context.Context, t *testing.T, c *interlock.Client, agent string, handled chan<- *interlockv1.WorkItem) error {
	stream, err := c.PullWork(ctx, agent)
	if err != nil {
		return err
	}
	defer stream.Close()
	for item, err := range stream.All() {
		if err != nil {
			return err
		}
		if item.GetAgentId() != agent || item.GetWorkId() == "" {
			t.Errorf("work item %v", item)
		}
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.ReportWork(rctx, item, interlock.Result{
			Outcome: interlock.Succeeded,
			Output:  map[string]any{"mode": interlock.ModeName(item.GetMode()), "validated": true},
		})
		cancel()
		if err != nil {
			return err
		}
		handled <- item
	}
	return io.EOF
}

func TestIntegrationPlanWithWorker(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 30*time.Second)
	planID := uniqueID("go_plan")
	args := func(m map[string]any) *structpb.Struct {
		s, err := interlock.ToStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	conf := func(v float64) *float64 { return &v }
	plan, err := c.SubmitPlan(ctx, interlock.SpecPlan(&interlockv1.PlanSpec{
		PlanId: planID,
		Labels: map[string]string{"suite": "go"},
		Steps: []*interlockv1.StepSpec{
			{StepId: "inspect", Tool: "vision_inspect", AgentId: "agent1", Confidence: conf(0.8),
				Arguments: args(map[string]any{"target": "#signup"})},
			{StepId: "fill", Tool: "form_fill", AgentId: "agent1", Confidence: conf(0.75), DependsOn: []string{"inspect"},
				Arguments: args(map[string]any{"form_id": "signup", "fields": map[string]any{"email": "a@example.com"}})},
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if plan.GetPlanId() != planID || len(plan.GetSteps()) != 2 {
		t.Fatalf("accepted plan %v", plan)
	}

	// Watch the plan's events while a worker runs it.
	events, err := c.WatchEvents(ctx, interlock.WatchOptions{PlanID: planID})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()

	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	handled := make(chan *interlockv1.WorkItem, 10)
	workerDone := make(chan error, 1)
	go func() { workerDone <- runWorker(wctx, t, c, "agent1", handled) }()

	finished, err := c.WaitPlan(ctx, planID, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if finished.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Fatalf("plan ended %v: %s", finished.GetState(), finished.GetMessage())
	}
	stopWorker()
	if err := <-workerDone; interlock.Code(err) != codes.Canceled {
		t.Errorf("the worker ended with %v, want CANCELLED", err)
	}
	close(handled)
	modes := map[string]string{}
	for item := range handled {
		if item.GetPlanId() == planID {
			modes[item.GetStepId()] = interlock.ModeName(item.GetMode())
		}
	}
	if modes["inspect"] != "LIVE" || modes["fill"] != "DRY_RUN" {
		t.Errorf("the worker ran %v, want inspect LIVE and fill DRY_RUN", modes)
	}

	// The event stream saw the plan through to PLAN_FINISHED, in order.
	var last uint64
	var kinds []interlockv1.EventKind
	for ev, err := range events.All() {
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if ev.GetSeq() <= last {
			t.Errorf("event seq %d after %d", ev.GetSeq(), last)
		}
		last = ev.GetSeq()
		if ev.GetPlanId() != planID {
			t.Errorf("event of plan %q in a stream filtered on %q", ev.GetPlanId(), planID)
		}
		kinds = append(kinds, ev.GetKind())
		if ev.GetKind() == interlockv1.EventKind_EVENT_KIND_PLAN_FINISHED {
			break
		}
	}
	for _, want := range []interlockv1.EventKind{
		interlockv1.EventKind_EVENT_KIND_DECISION,
		interlockv1.EventKind_EVENT_KIND_DISPATCH,
		interlockv1.EventKind_EVENT_KIND_RESULT,
		interlockv1.EventKind_EVENT_KIND_PLAN_FINISHED,
	} {
		if !slices.Contains(kinds, want) {
			t.Errorf("no %v event among %v", want, kinds)
		}
	}

	// Resuming after the last event seen repeats nothing of the history.
	resumed, err := c.WatchEvents(ctx, interlock.WatchOptions{PlanID: planID, AfterSeq: last,
		Kinds: []interlockv1.EventKind{interlockv1.EventKind_EVENT_KIND_PLAN_FINISHED}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *interlockv1.Event, 1)
	go func() {
		ev, err := resumed.Recv()
		if err == nil {
			got <- ev
		}
		close(got)
	}()
	select {
	case ev, ok := <-got:
		if ok {
			t.Errorf("resumed after seq %d and got event %d again", last, ev.GetSeq())
		}
	case <-time.After(300 * time.Millisecond):
	}
	resumed.Close()

	// The finished plan is listed, and a second plan under its id refused.
	list, err := c.ListPlans(ctx, interlock.ListPlansOptions{States: []interlockv1.PlanState{interlockv1.PlanState_PLAN_STATE_SUCCEEDED}, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range list.GetPlans() {
		found = found || p.GetPlanId() == planID
		if p.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
			t.Errorf("plan %s is %v in a list of SUCCEEDED plans", p.GetPlanId(), p.GetState())
		}
	}
	if !found {
		t.Errorf("plan %s not listed", planID)
	}
	_, err = c.SubmitPlan(ctx, interlock.SpecPlan(&interlockv1.PlanSpec{PlanId: planID, Steps: []*interlockv1.StepSpec{
		{StepId: "inspect", Tool: "vision_inspect", AgentId: "agent1", Confidence: conf(0.8), Arguments: args(map[string]any{"target": "#x"})},
	}}))
	wantError(t, err, codes.AlreadyExists, "PLAN_EXISTS")
}

func TestIntegrationInvalidPlan(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 10*time.Second)
	req, err := interlock.ParsePlanJSON([]byte(`{"plan_id": "` + uniqueID("go_bad") + `",
		"agent_assignments": {"agent1": ["vision_inspect"], "nobody": ["form_fill"]},
		"execution_order": ["vision_inspect", "form_fill", "no_such_tool"],
		"confidence_scores": {"vision_inspect": 0.8, "form_fill": 1.7}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SubmitPlan(ctx, req)
	ierr := wantError(t, err, codes.InvalidArgument, "INVALID_PLAN")
	if len(ierr.FieldViolations) < 2 {
		t.Errorf("want every problem listed, got %v", ierr.FieldViolations)
	}
	_, err = c.GetPlan(ctx, "no_such_plan")
	wantError(t, err, codes.NotFound, "UNKNOWN_PLAN")
}

func TestIntegrationCancelPlan(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 20*time.Second)
	// A DRY_RUN step for an agent no test runs a worker for: it waits.
	req, err := interlock.ParsePlanJSON([]byte(`{"plan_id": "` + uniqueID("go_cancel") + `",
		"steps": [{"step_id": "look", "tool": "crm_lookup", "agent_id": "mailer", "confidence": 0.6,
		           "arguments": {"record_id": "CU-12345"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := c.SubmitPlan(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := c.CancelPlan(ctx, plan.GetPlanId(), "go client test")
	if err != nil {
		t.Fatal(err)
	}
	if !interlock.PlanFinished(cancelled.GetState()) {
		cancelled, err = c.WaitPlan(ctx, plan.GetPlanId(), 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
	}
	if cancelled.GetState() != interlockv1.PlanState_PLAN_STATE_CANCELLED {
		t.Fatalf("plan is %v after CancelPlan", cancelled.GetState())
	}
	_, err = c.CancelPlan(ctx, plan.GetPlanId(), "again")
	wantError(t, err, codes.FailedPrecondition, "PLAN_FINISHED")
}

func TestIntegrationWatchFromStart(t *testing.T) {
	c := dial(t)
	ctx := testContext(t, 10*time.Second)
	// Make sure there is a decision to see.
	decision, err := c.RequestToolCall(ctx, interlock.ToolCall{AgentID: "readonly", Tool: "crm_lookup", Confidence: 0.9,
		Arguments: map[string]any{"record_id": "CU-12345"}})
	if err != nil {
		t.Fatal(err)
	}
	report(t, c, decision)
	stream, err := c.WatchEvents(ctx, interlock.WatchOptions{AgentID: "readonly",
		Kinds: []interlockv1.EventKind{interlockv1.EventKind_EVENT_KIND_DECISION}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetKind() != interlockv1.EventKind_EVENT_KIND_DECISION || ev.GetAgentId() != "readonly" || ev.GetSeq() == 0 {
		t.Errorf("event %v", ev)
	}
	// Close ends a stream blocked in Recv with CANCELLED.
	go func() {
		time.Sleep(100 * time.Millisecond)
		stream.Close()
	}()
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after Close: %v, want CANCELLED", err)
	}
}

func TestIntegrationRetriesUnavailable(t *testing.T) {
	// Nothing listens on this port: the reads are retried, then fail UNAVAILABLE.
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c, err := interlock.Dial(context.Background(), fmt.Sprintf("127.0.0.1:%d", port),
		interlock.WithRetries(2, 10*time.Millisecond, 20*time.Millisecond), interlock.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ListTools(context.Background())
	wantError(t, err, codes.Unavailable, "")
}
