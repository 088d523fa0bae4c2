package interlock_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

func TestIntegrationGrants(t *testing.T) {
	// An irreversible call waits for an approval; a grant for its agent, tool
	// and subject lets it run LIVE once without one; then it waits again.
	target := ownServer(t)
	c := dialTo(t, target)
	approver := dialTo(t, target, interlock.WithMetadata("x-interlock-dev-principal", "alice"))
	ctx := testContext(t, 20*time.Second)
	subject := uniqueID("refund")
	call := interlock.ToolCall{AgentID: "mailer", Tool: "send_email", Confidence: 0.85,
		Arguments: map[string]any{"to": []any{"a@example.com"}, "subject": subject, "body": "Done."}}

	g, err := approver.CreateGrant(ctx, interlock.GrantSpec{
		AgentID: "mailer", Tool: "send_email", ArgumentsEqual: map[string]any{"subject": subject},
		ArgumentPatterns: map[string]string{"body": `Done\.?`},
		ExpiresAt:        time.Now().Add(time.Hour), MaxUses: 1, Reason: "go client test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if g.GetState() != interlockv1.GrantState_GRANT_STATE_ACTIVE || g.GetMaxUses() != 1 {
		t.Fatalf("grant %v, want ACTIVE with max_uses 1", g)
	}
	covered, err := c.RequestToolCall(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	reasons := strings.Join(covered.GetReasons(), "; ")
	if covered.GetVerdict() != interlockv1.Verdict_VERDICT_ALLOW ||
		covered.GetMode() != interlockv1.ExecutionMode_EXECUTION_MODE_LIVE ||
		!strings.Contains(reasons, "covered by grant "+g.GetGrantId()) {
		t.Fatalf("decision %v, want ALLOW LIVE covered by %s", covered, g.GetGrantId())
	}
	again, err := c.RequestToolCall(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetVerdict() != interlockv1.Verdict_VERDICT_PENDING_APPROVAL {
		t.Fatalf("second call %v, want PENDING_APPROVAL (the grant's one use is taken)", again)
	}
	listed, err := c.ListGrants(ctx, interlock.GrantFilter{AgentID: "mailer", Tool: "send_email"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range listed {
		if x.GetGrantId() == g.GetGrantId() {
			found = true
			if x.GetUses() != 1 || x.GetState() != interlockv1.GrantState_GRANT_STATE_EXHAUSTED {
				t.Errorf("listed %v, want 1 use and EXHAUSTED", x)
			}
		}
	}
	if !found {
		t.Fatalf("grant %s not listed among %d", g.GetGrantId(), len(listed))
	}
	revoked, err := approver.RevokeGrant(ctx, g.GetGrantId(), "done")
	if err != nil || revoked.GetState() != interlockv1.GrantState_GRANT_STATE_REVOKED {
		t.Fatalf("RevokeGrant: %v, %v", revoked, err)
	}
	// Bad input: no expiry; an unknown grant.
	if _, err := approver.CreateGrant(ctx, interlock.GrantSpec{AgentID: "mailer", Tool: "send_email"}); interlock.Code(err) != codes.InvalidArgument {
		t.Errorf("a grant without an expiry: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := approver.RevokeGrant(ctx, "grt_unknown", ""); interlock.Code(err) != codes.NotFound {
		t.Errorf("revoking an unknown grant: %v, want NOT_FOUND", err)
	}
}
