package interlock_test

// Integration tests of the connection security against real servers out of
// development mode: TLS with bearer tokens, and mutual TLS.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/interlockv1"
	"github.com/interlock-dev/interlock/clients/go/internal/testserver"
)

const (
	agentToken    = "ilk_test_agent1_token"
	operatorToken = "ilk_test_operator_token"
)

// startSecure runs a server with TLS and a principals file: agent1 and the
// operator alice by token, agent1 by client certificate.
func startSecure(t *testing.T, mutual bool) (*testserver.Server, *testserver.PKI) {
	t.Helper()
	pki, err := testserver.NewPKI(t.TempDir(), "agent1", "stranger", "health")
	if err != nil {
		t.Fatal(err)
	}
	principals := fmt.Sprintf(`tokens:
  %s: {id: agent1, kind: agent}
  %s: {id: alice, kind: operator, roles: [approver]}
certificates:
  agent1: {id: agent1, kind: agent}
`, testserver.TokenHash(agentToken), testserver.TokenHash(operatorToken))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := testserver.Start(ctx, testserver.Options{Secure: &testserver.Secure{
		PKI: pki, Principals: principals, MutualTLS: mutual, HealthClient: "health",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, pki
}

func dialTo(t *testing.T, target string, opts ...interlock.Option) *interlock.Client {
	t.Helper()
	c, err := interlock.Dial(context.Background(), target, append([]interlock.Option{interlock.WithRetries(0, 0, 0)}, opts...)...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIntegrationTLSWithTokens(t *testing.T) {
	s, pki := startSecure(t, false)
	ctx := testContext(t, 30*time.Second)

	agent := dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithToken(agentToken))
	if _, err := agent.ListTools(ctx); err != nil {
		t.Fatalf("ListTools over TLS with a token: %v", err)
	}
	decision, err := agent.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent1", Tool: "vision_inspect", Confidence: 0.8,
		Arguments: map[string]any{"target": "#x"}})
	if err != nil {
		t.Fatalf("RequestToolCall as agent1: %v", err)
	}
	if decision.GetVerdict() != interlockv1.Verdict_VERDICT_ALLOW {
		t.Errorf("decision %v", decision)
	}
	_, err = agent.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent2", Tool: "vision_inspect", Confidence: 0.8,
		Arguments: map[string]any{"target": "#x"}})
	if interlock.Code(err) != codes.PermissionDenied {
		t.Errorf("agent1 acting as agent2: %v", err)
	}

	// The operator submits a plan (its token read from a file); agent1's worker runs it.
	tokenFile := filepath.Join(t.TempDir(), "operator.token")
	os.WriteFile(tokenFile, []byte(operatorToken+"\n"), 0o600)
	_, port, _ := net.SplitHostPort(s.Target)
	operator := dialTo(t, net.JoinHostPort("localhost", port), interlock.WithCAFile(pki.CAFile), interlock.WithTokenFile(tokenFile))
	planID := uniqueID("go_tls")
	req, err := interlock.ParsePlanJSON([]byte(`{"plan_id": "` + planID + `", "steps": [{"step_id": "look",
		"tool": "vision_inspect", "agent_id": "agent1", "confidence": 0.8, "arguments": {"target": "#signup"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := operator.SubmitPlan(ctx, req); err != nil {
		t.Fatalf("SubmitPlan as an operator: %v", err)
	}
	if _, err := agent.SubmitPlan(ctx, req); interlock.Code(err) != codes.PermissionDenied {
		t.Errorf("SubmitPlan as an agent: %v", err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	handled := make(chan *interlockv1.WorkItem, 4)
	go runWorker(wctx, t, agent, "agent1", handled)
	plan, err := operator.WaitPlan(ctx, planID, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if plan.GetState() != interlockv1.PlanState_PLAN_STATE_SUCCEEDED {
		t.Errorf("plan %v: %s", plan.GetState(), plan.GetMessage())
	}
	stop()

	// No token, a wrong token, no TLS, another CA: refused.
	_, err = dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile)).ListTools(ctx)
	wantError(t, err, codes.Unauthenticated, "MISSING_CREDENTIALS")
	_, err = dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithToken("ilk_wrong")).ListTools(ctx)
	wantError(t, err, codes.Unauthenticated, "INVALID_TOKEN")
	_, err = dialTo(t, s.Target, interlock.WithToken(agentToken)).ListTools(ctx)
	if interlock.Code(err) != codes.Unavailable {
		t.Errorf("plaintext to a TLS server: %v", err)
	}
	other, err := testserver.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = dialTo(t, s.Target, interlock.WithCAFile(other.CAFile), interlock.WithToken(agentToken)).ListTools(ctx)
	if interlock.Code(err) != codes.Unavailable {
		t.Errorf("a server certificate from another CA: %v", err)
	}
}

func TestIntegrationMutualTLS(t *testing.T) {
	s, pki := startSecure(t, true)
	ctx := testContext(t, 30*time.Second)
	cert := pki.Clients["agent1"]
	agent := dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithClientCert(cert.Cert, cert.Key))
	if _, err := agent.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent1", Tool: "vision_inspect", Confidence: 0.8,
		Arguments: map[string]any{"target": "#x"}}); err != nil {
		t.Fatalf("RequestToolCall with agent1's certificate: %v", err)
	}
	_, err := agent.RequestToolCall(ctx, interlock.ToolCall{AgentID: "agent2", Tool: "vision_inspect", Confidence: 0.8,
		Arguments: map[string]any{"target": "#x"}})
	if interlock.Code(err) != codes.PermissionDenied {
		t.Errorf("agent1's certificate acting as agent2: %v", err)
	}
	// A certificate plus a token: the token names the caller.
	both := dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithClientCert(cert.Cert, cert.Key), interlock.WithToken(operatorToken))
	if _, err := both.CancelPlan(ctx, "no_such_plan", "test"); interlock.Code(err) != codes.NotFound {
		t.Errorf("an operator cancelling an unknown plan: %v", err)
	}
	stranger := pki.Clients["stranger"]
	_, err = dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithClientCert(stranger.Cert, stranger.Key)).ListTools(ctx)
	wantError(t, err, codes.Unauthenticated, "UNKNOWN_CERTIFICATE")
	_, err = dialTo(t, s.Target, interlock.WithCAFile(pki.CAFile), interlock.WithToken(agentToken)).ListTools(ctx)
	if interlock.Code(err) != codes.Unavailable {
		t.Errorf("no client certificate to a mutual TLS server: %v", err)
	}
}

func TestIntegrationTokenOverLoopbackPlaintext(t *testing.T) {
	// A development server (no TLS, loopback) with a principals file
	// authenticates tokens: the client sends them over plaintext to loopback.
	principals := filepath.Join(t.TempDir(), "principals.yaml")
	doc := fmt.Sprintf("tokens:\n  %s: {id: agent1, kind: agent}\n", testserver.TokenHash(agentToken))
	if err := os.WriteFile(principals, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, time.Minute)
	s, err := testserver.Start(ctx, testserver.Options{ExtraArgs: []string{"--principals-file", principals}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := dialTo(t, s.Target, interlock.WithToken(agentToken)).ListTools(ctx); err != nil {
		t.Fatalf("a token over plaintext to loopback: %v", err)
	}
	_, err = dialTo(t, s.Target).ListTools(ctx)
	wantError(t, err, codes.Unauthenticated, "MISSING_CREDENTIALS")
}
