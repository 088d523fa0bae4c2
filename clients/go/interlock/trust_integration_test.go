package interlock_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

func TestIntegrationTrust(t *testing.T) {
	// Three failures of agent2's form_clear demote the pair (docs/trust.md):
	// its next call runs as DRY_RUN with the reason; GetTrust shows it; an
	// approver's ResetTrust promotes it back at once.
	target := ownServer(t)
	c := dialTo(t, target)
	approver := dialTo(t, target, interlock.WithMetadata("x-interlock-dev-principal", "alice"))
	ctx := testContext(t, 30*time.Second)
	call := interlock.ToolCall{AgentID: "agent2", Tool: "form_clear", Confidence: 0.95,
		Arguments: map[string]any{"form_id": uniqueID("form")}}
	for i := 0; i < 3; i++ {
		d, err := c.RequestToolCall(ctx, call)
		if err != nil {
			t.Fatal(err)
		}
		if d.GetMode() != interlockv1.ExecutionMode_EXECUTION_MODE_LIVE {
			t.Fatalf("call %d: %v, want LIVE before the demotion", i, d)
		}
		if _, err := c.ReportToolResult(ctx, interlock.Result{DecisionID: d.GetDecisionId(),
			AgentID: "agent2", Outcome: interlock.Failed}); err != nil {
			t.Fatal(err)
		}
	}
	demoted, err := c.RequestToolCall(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	reasons := strings.Join(demoted.GetReasons(), "; ")
	if demoted.GetMode() != interlockv1.ExecutionMode_EXECUTION_MODE_DRY_RUN ||
		!strings.Contains(reasons, "form_clear demoted for agent2 until ") ||
		!strings.Contains(reasons, "after 3 failures in 10 min") {
		t.Fatalf("decision %v, want DRY_RUN demoted after 3 failures", demoted)
	}
	pairs, err := c.GetTrust(ctx, "agent2", "form_clear")
	if err != nil || len(pairs) != 1 {
		t.Fatalf("GetTrust: %v, %v", pairs, err)
	}
	if pairs[0].GetState() != interlockv1.TrustState_TRUST_STATE_DEMOTED || pairs[0].GetDemotions() != 1 {
		t.Fatalf("pair %v, want DEMOTED once", pairs[0])
	}
	if _, err := approver.ResetTrust(ctx, "agent2", "form_clear", ""); interlock.Code(err) != codes.InvalidArgument {
		t.Errorf("a reset without a reason: %v, want INVALID_ARGUMENT", err)
	}
	reset, err := approver.ResetTrust(ctx, "agent2", "form_clear", "go client test")
	if err != nil || reset.GetState() != interlockv1.TrustState_TRUST_STATE_TRUSTED {
		t.Fatalf("ResetTrust: %v, %v", reset, err)
	}
	live, err := c.RequestToolCall(ctx, call)
	if err != nil || live.GetMode() != interlockv1.ExecutionMode_EXECUTION_MODE_LIVE {
		t.Fatalf("after the reset: %v, %v; want LIVE", live, err)
	}
	if _, err := c.ReportToolResult(ctx, interlock.Result{DecisionID: live.GetDecisionId(),
		AgentID: "agent2", Outcome: interlock.Succeeded}); err != nil {
		t.Fatal(err)
	}
}
