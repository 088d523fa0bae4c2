package interlock

// Unit tests: options, errors, retry decisions, deadlines and the
// connection security, against an in-process test double of the server.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
	"github.com/interlock-dev/interlock/clients/go/internal/testserver"
)

// fakeServer is a test double of the ControlPlane: it records what each
// call carried and fails as told.
type fakeServer struct {
	interlockv1.UnimplementedControlPlaneServer

	mu sync.Mutex
	// calls counts the calls of each method.
	calls map[string]int
	// auth is the authorization metadata of each call, in order.
	auth []string
	// requestIDs is the x-request-id metadata of each call, in order.
	requestIDs []string
	// deadlines is how long each method's last call had left (-1: no deadline).
	deadlines map[string]time.Duration
	// peerCN is the common name of the last client certificate seen.
	peerCN string
	// failUnavailable makes the first n calls of a method fail UNAVAILABLE.
	failUnavailable map[string]int
	// failWith makes every call of a method fail with that error.
	failWith map[string]error
}

func newFakeServer() *fakeServer {
	return &fakeServer{
		calls:           map[string]int{},
		deadlines:       map[string]time.Duration{},
		failUnavailable: map[string]int{},
		failWith:        map[string]error{},
	}
}

func (f *fakeServer) record(ctx context.Context, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	md, _ := metadata.FromIncomingContext(ctx)
	f.auth = append(f.auth, strings.Join(md.Get("authorization"), ","))
	f.requestIDs = append(f.requestIDs, strings.Join(md.Get("x-request-id"), ","))
	if deadline, ok := ctx.Deadline(); ok {
		f.deadlines[method] = time.Until(deadline)
	} else {
		f.deadlines[method] = -1
	}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			f.peerCN = info.State.PeerCertificates[0].Subject.CommonName
		}
	}
	if err := f.failWith[method]; err != nil {
		return err
	}
	if f.calls[method] <= f.failUnavailable[method] {
		return status.Error(codes.Unavailable, "not yet")
	}
	return nil
}

func (f *fakeServer) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeServer) lastAuth() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auth) == 0 {
		return "<no call>"
	}
	return f.auth[len(f.auth)-1]
}

func (f *fakeServer) ListTools(ctx context.Context, _ *interlockv1.ListToolsRequest) (*interlockv1.ListToolsResponse, error) {
	if err := f.record(ctx, "ListTools"); err != nil {
		return nil, err
	}
	return &interlockv1.ListToolsResponse{PolicyRevision: "rev1", Tools: []*interlockv1.ToolContract{{Name: "form_fill"}}}, nil
}

func (f *fakeServer) GetHealth(ctx context.Context, _ *interlockv1.GetHealthRequest) (*interlockv1.GetHealthResponse, error) {
	if err := f.record(ctx, "GetHealth"); err != nil {
		return nil, err
	}
	return &interlockv1.GetHealthResponse{Status: interlockv1.HealthStatus_HEALTH_STATUS_HEALTHY}, nil
}

func (f *fakeServer) GetPlan(ctx context.Context, req *interlockv1.GetPlanRequest) (*interlockv1.GetPlanResponse, error) {
	if err := f.record(ctx, "GetPlan"); err != nil {
		return nil, err
	}
	return &interlockv1.GetPlanResponse{Plan: &interlockv1.Plan{PlanId: req.GetPlanId()}}, nil
}

func (f *fakeServer) RequestToolCall(ctx context.Context, req *interlockv1.RequestToolCallRequest) (*interlockv1.RequestToolCallResponse, error) {
	if err := f.record(ctx, "RequestToolCall"); err != nil {
		return nil, err
	}
	return &interlockv1.RequestToolCallResponse{Decision: &interlockv1.Decision{DecisionId: "dec_1", Confidence: req.GetConfidence()}}, nil
}

func (f *fakeServer) ReportToolResult(ctx context.Context, _ *interlockv1.ReportToolResultRequest) (*interlockv1.ReportToolResultResponse, error) {
	if err := f.record(ctx, "ReportToolResult"); err != nil {
		return nil, err
	}
	return &interlockv1.ReportToolResultResponse{Result: &interlockv1.ToolResult{}}, nil
}

func (f *fakeServer) SubmitPlan(ctx context.Context, _ *interlockv1.SubmitPlanRequest) (*interlockv1.SubmitPlanResponse, error) {
	if err := f.record(ctx, "SubmitPlan"); err != nil {
		return nil, err
	}
	return &interlockv1.SubmitPlanResponse{Plan: &interlockv1.Plan{}}, nil
}

func (f *fakeServer) ResolveApproval(ctx context.Context, _ *interlockv1.ResolveApprovalRequest) (*interlockv1.ResolveApprovalResponse, error) {
	if err := f.record(ctx, "ResolveApproval"); err != nil {
		return nil, err
	}
	return &interlockv1.ResolveApprovalResponse{Approval: &interlockv1.Approval{}}, nil
}

func (f *fakeServer) AwaitApproval(ctx context.Context, req *interlockv1.AwaitApprovalRequest) (*interlockv1.AwaitApprovalResponse, error) {
	if err := f.record(ctx, "AwaitApproval"); err != nil {
		return nil, err
	}
	return &interlockv1.AwaitApprovalResponse{Approval: &interlockv1.Approval{ApprovalId: req.GetApprovalId()}}, nil
}

func (f *fakeServer) PullWork(req *interlockv1.PullWorkRequest, s grpc.ServerStreamingServer[interlockv1.PullWorkResponse]) error {
	if err := f.record(s.Context(), "PullWork"); err != nil {
		return err
	}
	item := &interlockv1.WorkItem{WorkId: "work_1", AgentId: req.GetAgentId(), Tool: "form_fill", Mode: DryRun}
	if err := s.Send(&interlockv1.PullWorkResponse{Item: item}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// startFake serves f on a loopback port, with TLS when creds is set.
func startFake(t *testing.T, f *fakeServer, creds credentials.TransportCredentials) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	interlockv1.RegisterControlPlaneServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dialFake(t *testing.T, target string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(context.Background(), target, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Bearer tokens -------------------------------------------------------------

func TestTokenSentOnCallsAndStreams(t *testing.T) {
	f := newFakeServer()
	c := dialFake(t, startFake(t, f, nil), WithToken("s3cret-token"), WithMetadata("X-Request-Id", "req-1"))
	if _, err := c.ListTools(shortCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.lastAuth(); got != "Bearer s3cret-token" {
		t.Errorf("unary call carried authorization %q", got)
	}
	stream, err := c.PullWork(shortCtx(t), "agent1")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := f.lastAuth(); got != "Bearer s3cret-token" {
		t.Errorf("stream carried authorization %q", got)
	}
	f.mu.Lock()
	ids := strings.Join(f.requestIDs, " ")
	f.mu.Unlock()
	if ids != "req-1 req-1" {
		t.Errorf("x-request-id of the call and the stream: %q", ids)
	}
	if err := (&config{}).apply([]Option{WithMetadata("Authorization", "Bearer x")}); err == nil {
		t.Error("WithMetadata set the authorization header")
	}
}

func TestNoTokenNoAuthorization(t *testing.T) {
	f := newFakeServer()
	c := dialFake(t, startFake(t, f, nil))
	if _, err := c.ListTools(shortCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.lastAuth(); got != "" {
		t.Errorf("a client without a token sent authorization %q", got)
	}
}

func TestTokenFileIsReadAndReread(t *testing.T) {
	f := newFakeServer()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("  first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dialFake(t, startFake(t, f, nil), WithTokenFile(path))
	if _, err := c.ListTools(shortCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.lastAuth(); got != "Bearer first-token" {
		t.Errorf("authorization %q", got)
	}
	// A rotated token is picked up.
	if err := os.WriteFile(path, []byte("second-token-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTools(shortCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.lastAuth(); got != "Bearer second-token-longer" {
		t.Errorf("after rotation: authorization %q", got)
	}
	// A token file that disappears fails the call UNAUTHENTICATED, without retries.
	os.Remove(path)
	_, err := c.ListTools(shortCtx(t))
	if Code(err) != codes.Unauthenticated {
		t.Errorf("missing token file: %v", err)
	}
}

func TestTokenOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n \n"), 0o600)
	spaced := filepath.Join(dir, "spaced")
	os.WriteFile(spaced, []byte("two words"), 0o600)
	for name, opts := range map[string][]Option{
		"empty token":       {WithToken("")},
		"token with space":  {WithToken("a b")},
		"token and file":    {WithToken("a"), WithTokenFile(empty)},
		"missing file":      {WithTokenFile(filepath.Join(dir, "missing"))},
		"empty file":        {WithTokenFile(empty)},
		"two words in file": {WithTokenFile(spaced)},
		"empty path":        {WithTokenFile("")},
	} {
		if c, err := Dial(context.Background(), "127.0.0.1:1", opts...); err == nil {
			c.Close()
			t.Errorf("%s: Dial accepted it", name)
		}
	}
}

// Options -------------------------------------------------------------------

func TestOptionValidation(t *testing.T) {
	for name, opt := range map[string]Option{
		"zero timeout":     WithDefaultTimeout(0),
		"negative retries": WithRetries(-1, 0, 0),
		"max below base":   WithRetries(1, time.Second, time.Millisecond),
		"half a cert":      WithClientCert("cert.pem", ""),
		"empty CA":         WithCAFile(""),
		"empty name":       WithServerName(""),
	} {
		cfg := defaultConfig()
		if err := cfg.apply([]Option{opt}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := defaultConfig()
	if err := cfg.apply([]Option{WithDefaultTimeout(time.Second), WithRetries(4, 0, 0), nil}); err != nil {
		t.Fatal(err)
	}
	if cfg.timeout != time.Second || cfg.retries != 4 || cfg.backoffBase != RetryBackoffBase || cfg.backoffMax != RetryBackoffMax {
		t.Errorf("config %+v", cfg)
	}
	if _, err := Dial(context.Background(), ""); err == nil {
		t.Error("Dial accepted an empty target")
	}
}

func TestPlaintextOnlyToLoopback(t *testing.T) {
	loopback := []string{"127.0.0.1:50051", "localhost:50051", "LOCALHOST:1", "[::1]:50051", "127.8.9.10:1",
		"dns:///127.0.0.1:50051", "passthrough:///localhost:1", "unix:///tmp/interlock.sock", "localhost"}
	remote := []string{"10.0.0.1:50051", "example.com:443", "dns:///example.com:443", "[2001:db8::1]:50051",
		"0.0.0.0:50051", "interlock:50051", "localhost.example.com:1"}
	for _, target := range loopback {
		if !IsLoopbackTarget(target) {
			t.Errorf("%s is loopback", target)
		}
	}
	for _, target := range remote {
		if IsLoopbackTarget(target) {
			t.Errorf("%s is not loopback", target)
		}
		// Dial refuses before making any connection.
		if c, err := Dial(context.Background(), target); err == nil {
			c.Close()
			t.Errorf("Dial(%s) allowed plaintext", target)
		} else if !strings.Contains(err.Error(), "plaintext") {
			t.Errorf("Dial(%s): %v", target, err)
		}
		// Allowed when asked for explicitly (checked without connecting).
		cfg := defaultConfig()
		cfg.apply([]Option{WithInsecure()})
		if _, err := transportCredentials(&cfg, target); err != nil {
			t.Errorf("WithInsecure, %s: %v", target, err)
		}
	}
}

// Retries and deadlines -----------------------------------------------------

func TestRetryDecisions(t *testing.T) {
	unavailable := FromError(status.Error(codes.Unavailable, "down"))
	for _, method := range []string{"ListTools", "GetPlan", "ListPlans", "ListApprovals", "GetHealth", "ListSignals", "GetPolicyStatus"} {
		if !shouldRetry(method, unavailable, 0, 2) || !shouldRetry(method, unavailable, 1, 2) {
			t.Errorf("%s is not retried on UNAVAILABLE", method)
		}
		if shouldRetry(method, unavailable, 2, 2) {
			t.Errorf("%s is retried past the limit", method)
		}
		for _, code := range []codes.Code{codes.DeadlineExceeded, codes.Internal, codes.NotFound, codes.Unauthenticated, codes.Canceled} {
			if shouldRetry(method, status.Error(code, "x"), 0, 2) {
				t.Errorf("%s is retried on %v", method, code)
			}
		}
	}
	for _, method := range []string{"RequestToolCall", "ReportToolResult", "SubmitPlan", "CancelPlan", "ResolveApproval",
		"AwaitApproval", "ReloadPolicies", "PullWork", "WatchEvents"} {
		if shouldRetry(method, unavailable, 0, 5) || Idempotent(method) {
			t.Errorf("%s is retried", method)
		}
	}
	if shouldRetry("ListTools", nil, 0, 2) {
		t.Error("a success is retried")
	}
}

func TestBackoffIsCappedExponential(t *testing.T) {
	base, limit := 100*time.Millisecond, time.Second
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		want *= time.Millisecond
		for range 50 {
			got := backoff(attempt, base, limit)
			if got < want/2 || got > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, got, want/2, want)
			}
		}
	}
	if got := backoff(1000, base, limit); got > limit {
		t.Errorf("backoff(1000) = %v", got)
	}
}

func TestIdempotentReadsRetriedOnUnavailable(t *testing.T) {
	f := newFakeServer()
	f.failUnavailable["ListTools"] = 2
	f.failUnavailable["GetHealth"] = 3
	f.failWith["GetPlan"] = status.Error(codes.NotFound, "no such plan")
	c := dialFake(t, startFake(t, f, nil), WithRetries(2, time.Millisecond, 5*time.Millisecond))
	ctx := shortCtx(t)
	if _, err := c.ListTools(ctx); err != nil {
		t.Fatalf("ListTools after two UNAVAILABLE: %v", err)
	}
	if n := f.count("ListTools"); n != 3 {
		t.Errorf("ListTools attempts: %d, want 3", n)
	}
	_, err := c.GetHealth(ctx)
	if Code(err) != codes.Unavailable {
		t.Errorf("GetHealth after three UNAVAILABLE: %v", err)
	}
	if n := f.count("GetHealth"); n != 3 {
		t.Errorf("GetHealth attempts: %d, want 3 (1 + 2 retries)", n)
	}
	if _, err := c.GetPlan(ctx, "p"); Code(err) != codes.NotFound || f.count("GetPlan") != 1 {
		t.Errorf("GetPlan NOT_FOUND: %v after %d attempts", err, f.count("GetPlan"))
	}
}

func TestWritesNeverRetried(t *testing.T) {
	f := newFakeServer()
	for _, m := range []string{"RequestToolCall", "ReportToolResult", "SubmitPlan", "ResolveApproval", "AwaitApproval"} {
		f.failUnavailable[m] = 100
	}
	c := dialFake(t, startFake(t, f, nil), WithRetries(5, time.Millisecond, time.Millisecond))
	ctx := shortCtx(t)
	_, err := c.RequestToolCall(ctx, ToolCall{AgentID: "a", Tool: "t", Confidence: 0.5})
	if Code(err) != codes.Unavailable {
		t.Errorf("RequestToolCall: %v", err)
	}
	_, err = c.ReportToolResult(ctx, Result{DecisionID: "d", AgentID: "a", Outcome: Succeeded})
	if Code(err) != codes.Unavailable {
		t.Errorf("ReportToolResult: %v", err)
	}
	_, err = c.SubmitPlan(ctx, SpecPlan(&interlockv1.PlanSpec{PlanId: "p"}))
	if Code(err) != codes.Unavailable {
		t.Errorf("SubmitPlan: %v", err)
	}
	_, err = c.ResolveApproval(ctx, "apr", Approve, "")
	if Code(err) != codes.Unavailable {
		t.Errorf("ResolveApproval: %v", err)
	}
	_, err = c.AwaitApproval(ctx, "apr", time.Second)
	if Code(err) != codes.Unavailable {
		t.Errorf("AwaitApproval: %v", err)
	}
	for _, m := range []string{"RequestToolCall", "ReportToolResult", "SubmitPlan", "ResolveApproval", "AwaitApproval"} {
		if n := f.count(m); n != 1 {
			t.Errorf("%s was sent %d times", m, n)
		}
	}
}

func TestDefaultDeadline(t *testing.T) {
	f := newFakeServer()
	c := dialFake(t, startFake(t, f, nil), WithDefaultTimeout(3*time.Second))
	if _, err := c.ListTools(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := f.deadlines["ListTools"]; d <= 2*time.Second || d > 3*time.Second {
		t.Errorf("without a deadline, the call had %v left, want the default 3s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.ListTools(ctx); err != nil {
		t.Fatal(err)
	}
	if d := f.deadlines["ListTools"]; d <= 15*time.Second {
		t.Errorf("the caller's 20s deadline became %v", d)
	}
	if _, err := c.AwaitApproval(context.Background(), "apr", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := f.deadlines["AwaitApproval"]; d <= 4*time.Second || d > 5*time.Second {
		t.Errorf("AwaitApproval waiting 2s had %v left, want 2s + the default 3s", d)
	}
	stream, err := c.PullWork(context.Background(), "agent1")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	item, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if item.GetWorkId() != "work_1" || item.GetAgentId() != "agent1" {
		t.Errorf("item %v", item)
	}
	if d := f.deadlines["PullWork"]; d != -1 {
		t.Errorf("the work stream got a deadline (%v left)", d)
	}
	// Close ends a Recv in progress with CANCELLED.
	go func() {
		time.Sleep(50 * time.Millisecond)
		stream.Close()
	}()
	_, err = stream.Recv()
	if !errors.Is(err, context.Canceled) || Code(err) != codes.Canceled {
		t.Errorf("Recv after Close: %v", err)
	}
	stream.Close() // twice is fine
}

func TestConfidenceAlwaysSent(t *testing.T) {
	f := newFakeServer()
	c := dialFake(t, startFake(t, f, nil))
	d, err := c.RequestToolCall(shortCtx(t), ToolCall{AgentID: "a", Tool: "t", Confidence: 0})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetConfidence() != 0 || d.GetDecisionId() != "dec_1" {
		t.Errorf("decision %v", d)
	}
	if _, err := c.RequestToolCall(shortCtx(t), ToolCall{AgentID: "a", Tool: "t", Arguments: []int{1}}); err == nil {
		t.Error("arguments that are not an object were sent")
	}
	if _, err := c.ReportToolResult(shortCtx(t), Result{DecisionID: "d", AgentID: "a"}); err == nil {
		t.Error("a result without an outcome was sent")
	}
	if _, err := c.ReportWork(shortCtx(t), &interlockv1.WorkItem{WorkId: "w"}, Result{Outcome: Succeeded}); err == nil {
		t.Error("a work report without an agent was sent")
	}
}

// Errors --------------------------------------------------------------------

func richStatus(t *testing.T) *status.Status {
	t.Helper()
	st, err := status.New(codes.InvalidArgument, "2 problems").WithDetails(
		&errdetails.ErrorInfo{Reason: "ARGUMENTS_SCHEMA", Domain: Domain, Metadata: map[string]string{"tool": "form_fill"}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "arguments.fields.email", Description: "1 is not of type 'string'"},
			{Field: "confidence", Description: "must be in [0, 1]"},
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestErrorFromStatusDetails(t *testing.T) {
	f := newFakeServer()
	f.failWith["GetHealth"] = richStatus(t).Err()
	c := dialFake(t, startFake(t, f, nil))
	_, err := c.GetHealth(shortCtx(t))
	var ierr *Error
	if !errors.As(err, &ierr) {
		t.Fatalf("%v (%T) is no *Error", err, err)
	}
	if ierr.Code != codes.InvalidArgument || ierr.Message != "2 problems" || ierr.Reason != "ARGUMENTS_SCHEMA" ||
		ierr.Domain != Domain || ierr.Metadata["tool"] != "form_fill" {
		t.Errorf("error %#v", ierr)
	}
	want := []FieldViolation{
		{"arguments.fields.email", "1 is not of type 'string'"},
		{"confidence", "must be in [0, 1]"},
	}
	if len(ierr.FieldViolations) != 2 || ierr.FieldViolations[0] != want[0] || ierr.FieldViolations[1] != want[1] {
		t.Errorf("violations %v", ierr.FieldViolations)
	}
	if d, ok := ierr.Violation("confidence"); !ok || d != "must be in [0, 1]" {
		t.Errorf("Violation(confidence) = %q, %v", d, ok)
	}
	if _, ok := ierr.Violation("tool"); ok {
		t.Error("Violation(tool) found")
	}
	msg := ierr.Error()
	for _, part := range []string{"INVALID_ARGUMENT", "(ARGUMENTS_SCHEMA)", "2 problems", "confidence: must be in [0, 1]"} {
		if !strings.Contains(msg, part) {
			t.Errorf("Error() = %q lacks %q", msg, part)
		}
	}
	if status.Code(err) != codes.InvalidArgument || Reason(err) != "ARGUMENTS_SCHEMA" {
		t.Errorf("status.Code %v, Reason %q", status.Code(err), Reason(err))
	}
	if st, ok := status.FromError(err); !ok || len(st.Details()) != 2 {
		t.Error("status.FromError lost the details")
	}
	// Wrapped, it is still found.
	wrapped := errors.Join(errors.New("context"), err)
	if !errors.As(wrapped, &ierr) || Code(wrapped) != codes.InvalidArgument {
		t.Error("a wrapped *Error is not found")
	}
}

func TestFromError(t *testing.T) {
	if FromError(nil) != nil {
		t.Error("FromError(nil) is not nil")
	}
	plain := FromError(status.Error(codes.Unavailable, "connection refused"))
	var ierr *Error
	if !errors.As(plain, &ierr) || ierr.Reason != "" || ierr.Metadata == nil || len(ierr.FieldViolations) != 0 {
		t.Errorf("a status without details: %#v", plain)
	}
	if plain.Error() != "interlock: UNAVAILABLE: connection refused" {
		t.Errorf("Error() = %q", plain.Error())
	}
	if FromError(plain) != plain {
		t.Error("an *Error is not returned as it is")
	}
	if !errors.Is(FromError(context.Canceled), context.Canceled) || Code(FromError(context.DeadlineExceeded)) != codes.DeadlineExceeded {
		t.Error("context errors")
	}
	if !errors.Is(FromError(status.Error(codes.DeadlineExceeded, "late")), context.DeadlineExceeded) {
		t.Error("DEADLINE_EXCEEDED is not context.DeadlineExceeded")
	}
	if errors.Is(plain, context.Canceled) {
		t.Error("UNAVAILABLE is context.Canceled")
	}
	if Code(nil) != codes.OK || Code(errors.New("x")) != codes.Unknown || Reason(errors.New("x")) != "" {
		t.Error("Code / Reason of non-gRPC errors")
	}
	if CodeName(codes.Canceled) != "CANCELLED" || CodeName(codes.FailedPrecondition) != "FAILED_PRECONDITION" {
		t.Error("CodeName")
	}
}

// Conversions ---------------------------------------------------------------

func TestToStruct(t *testing.T) {
	s, err := ToStruct(map[string]any{"to": []string{"a@example.com"}, "n": 2, "nested": map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Fields["to"].GetListValue().GetValues()[0].GetStringValue() != "a@example.com" ||
		s.Fields["n"].GetNumberValue() != 2 || s.Fields["nested"].GetStructValue().Fields["k"].GetStringValue() != "v" {
		t.Errorf("struct %v", s)
	}
	type args struct {
		FormID string `json:"form_id"`
	}
	s, err = ToStruct(args{FormID: "signup"})
	if err != nil || s.Fields["form_id"].GetStringValue() != "signup" {
		t.Errorf("from a Go struct: %v, %v", s, err)
	}
	if s, err := ToStruct(nil); err != nil || len(s.GetFields()) != 0 {
		t.Errorf("nil: %v, %v", s, err)
	}
	for _, bad := range []any{[]int{1}, "text", 3, map[string]any{"f": func() {}}} {
		if _, err := ToStruct(bad); err == nil {
			t.Errorf("ToStruct(%T) accepted", bad)
		}
	}
	if ModeName(Live) != "LIVE" || ModeName(DryRun) != "DRY_RUN" || OutcomeName(TimedOut) != "TIMED_OUT" ||
		PlanStateName(interlockv1.PlanState_PLAN_STATE_ROLLED_BACK) != "ROLLED_BACK" {
		t.Error("names")
	}
	if PlanFinished(interlockv1.PlanState_PLAN_STATE_RUNNING) || !PlanFinished(interlockv1.PlanState_PLAN_STATE_FAILED_PARTIAL) {
		t.Error("PlanFinished")
	}
}

func TestParsePlanJSON(t *testing.T) {
	req, err := ParsePlanJSON([]byte(`{"plan_id": "plan_1",
		"agent_assignments": {"agent1": ["vision_inspect", "form_fill"], "agent2": ["button_click"]},
		"execution_order": ["vision_inspect", "form_fill", "button_click"],
		"confidence_scores": {"vision_inspect": 0.8, "form_fill": 0.75, "button_click": 0.9}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := req.GetPhase21()
	if p.GetPlanId() != "plan_1" || len(p.GetAgentAssignments()["agent1"].GetTools()) != 2 ||
		len(p.GetExecutionOrder()) != 3 || p.GetConfidenceScores()["form_fill"] != 0.75 {
		t.Errorf("phase-21 plan %v", p)
	}
	req, err = ParsePlanJSON([]byte(`{"plan_id": "refund_1", "labels": {"team": "billing"},
		"steps": [{"step_id": "check", "tool": "crm_lookup", "agent_id": "ops", "confidence": 0.9,
		           "arguments": {"record_id": "CU-12345"}, "depends_on": ["pay"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	spec := req.GetSpec()
	if spec.GetPlanId() != "refund_1" || spec.GetLabels()["team"] != "billing" || len(spec.GetSteps()) != 1 {
		t.Fatalf("spec plan %v", spec)
	}
	step := spec.GetSteps()[0]
	if step.Confidence == nil || step.GetConfidence() != 0.9 || step.GetArguments().Fields["record_id"].GetStringValue() != "CU-12345" ||
		step.GetDependsOn()[0] != "pay" {
		t.Errorf("step %v", step)
	}
	for name, doc := range map[string]string{
		"not JSON":        `{"plan_id": `,
		"not an object":   `[1]`,
		"neither format":  `{"plan_id": "p"}`,
		"unknown field":   `{"plan_id": "p", "steps": [], "extra": 1}`,
		"wrong type":      `{"plan_id": "p", "steps": [{"confidence": "high"}]}`,
		"bad assignments": `{"plan_id": "p", "agent_assignments": ["a"], "execution_order": []}`,
	} {
		if _, err := ParsePlanJSON([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TLS and mutual TLS --------------------------------------------------------

func newPKI(t *testing.T) *testserver.PKI {
	t.Helper()
	p, err := testserver.NewPKI(t.TempDir(), "agent1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func serverCreds(t *testing.T, p *testserver.PKI, clientAuth tls.ClientAuthType) credentials.TransportCredentials {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: clientAuth, ClientCAs: pool})
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	f := newFakeServer()
	target := startFake(t, f, serverCreds(t, p, tls.NoClientCert))
	c := dialFake(t, target, WithCAFile(p.CAFile), WithToken("tls-token"))
	if _, err := c.ListTools(shortCtx(t)); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	if got := f.lastAuth(); got != "Bearer tls-token" {
		t.Errorf("authorization %q", got)
	}
	// By host name, with the name checked against the certificate.
	_, port, _ := net.SplitHostPort(target)
	c2 := dialFake(t, "localhost:"+port, WithCAFile(p.CAFile), WithServerName("localhost"))
	if _, err := c2.ListTools(shortCtx(t)); err != nil {
		t.Fatalf("over TLS to localhost: %v", err)
	}
	// A plaintext client cannot talk to it, nor one trusting another CA.
	plain := dialFake(t, target, WithRetries(0, 0, 0))
	if _, err := plain.ListTools(shortCtx(t)); Code(err) != codes.Unavailable {
		t.Errorf("plaintext to a TLS server: %v", err)
	}
	other := newPKI(t)
	wrongCA := dialFake(t, target, WithCAFile(other.CAFile), WithRetries(0, 0, 0))
	if _, err := wrongCA.ListTools(shortCtx(t)); Code(err) != codes.Unavailable {
		t.Errorf("TLS with the wrong CA: %v", err)
	}
	if f.count("ListTools") != 2 {
		t.Errorf("the server answered %d calls, want 2", f.count("ListTools"))
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	f := newFakeServer()
	target := startFake(t, f, serverCreds(t, p, tls.RequireAndVerifyClientCert))
	c := dialFake(t, target, WithCAFile(p.CAFile), WithClientCert(p.Clients["agent1"].Cert, p.Clients["agent1"].Key), WithToken("mtls-token"))
	stream, err := c.PullWork(shortCtx(t), "agent1")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("over mutual TLS: %v", err)
	}
	f.mu.Lock()
	cn := f.peerCN
	f.mu.Unlock()
	if cn != "agent1" {
		t.Errorf("the server saw client certificate %q", cn)
	}
	if got := f.lastAuth(); got != "Bearer mtls-token" {
		t.Errorf("authorization %q", got)
	}
	// Without a client certificate the handshake fails.
	noCert := dialFake(t, target, WithCAFile(p.CAFile), WithRetries(0, 0, 0))
	if _, err := noCert.ListTools(shortCtx(t)); Code(err) != codes.Unavailable {
		t.Errorf("TLS without a client certificate: %v", err)
	}
}

func TestTLSFilesRefused(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for name, opts := range map[string][]Option{
		"missing CA":         {WithCAFile(filepath.Join(dir, "missing.pem"))},
		"CA without PEM":     {WithCAFile(notPEM)},
		"missing key":        {WithCAFile(p.CAFile), WithClientCert(p.Clients["agent1"].Cert, filepath.Join(dir, "missing.key"))},
		"mismatched key":     {WithCAFile(p.CAFile), WithClientCert(p.Clients["agent1"].Cert, p.ServerKey)},
		"cert given as a CA": {WithCAFile(p.Clients["agent1"].Key)},
	} {
		if c, err := Dial(context.Background(), "127.0.0.1:1", opts...); err == nil {
			c.Close()
			t.Errorf("%s: Dial accepted it", name)
		}
	}
}

func TestReplicaAddresses(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   []string
		err    string
	}{
		{"127.0.0.1:50051", nil, ""},
		{"dns:///interlock.example:50051", nil, ""},
		{"127.0.0.1:1, 127.0.0.1:2", []string{"127.0.0.1:1", "127.0.0.1:2"}, ""},
		{"[::1]:1,[::1]:2", []string{"[::1]:1", "[::1]:2"}, ""},
		{"localhost:1,localhost:2", nil, "takes IP addresses"},
		{"127.0.0.1:1,[::1]:2", nil, "cannot mix"},
		{"127.0.0.1:1,", nil, "must be IP:PORT"},
	} {
		got, err := ReplicaAddresses(tc.target)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ReplicaAddresses(%q) error %v, want one saying %q", tc.target, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ReplicaAddresses(%q) = %v, %v; want %v", tc.target, got, err, tc.want)
		}
	}
	if _, err := Dial(context.Background(), "localhost:1,localhost:2"); err == nil {
		t.Error("Dial took a list of host names")
	}
	if IsLoopbackTarget("127.0.0.1:1,10.0.0.1:2") || !IsLoopbackTarget("127.0.0.1:1,127.0.0.2:2") {
		t.Error("IsLoopbackTarget of a list must need every address to be loopback")
	}
}
