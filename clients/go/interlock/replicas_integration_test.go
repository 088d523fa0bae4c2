package interlock_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/interlock-dev/interlock/clients/go/interlock"
	"github.com/interlock-dev/interlock/clients/go/internal/testserver"
)

// decisionsMade is how many decisions a server has made since it started
// (GetHealth's decisions, summed over verdicts), asked directly.
func decisionsMade(ctx context.Context, t *testing.T, target string) uint64 {
	t.Helper()
	c, err := interlock.Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	health, err := c.GetHealth(ctx)
	if err != nil {
		t.Fatalf("GetHealth of %s: %v", target, err)
	}
	var n uint64
	for _, count := range health.GetDecisions() {
		n += count
	}
	return n
}

// A comma-separated list of two real servers: once both are connected, 20
// calls split 10 and 10 (round_robin).
func TestIntegrationReplicasSpreadCalls(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	other, err := testserver.Start(ctx, testserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	targets := []string{server.Target, other.Target}
	c, err := interlock.Dial(ctx, strings.Join(targets, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	decide := func() {
		n++
		_, err := c.RequestToolCall(ctx, interlock.ToolCall{
			AgentID: "agent1", Tool: "vision_inspect", Confidence: 0.9,
			Arguments: map[string]any{"target": fmt.Sprintf("replicas %d", n)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	counts := func() []uint64 {
		return []uint64{decisionsMade(ctx, t, targets[0]), decisionsMade(ctx, t, targets[1])}
	}
	// The channel connects to each replica in the background: call until both have decided.
	for {
		got := counts()
		if got[0] > 0 && got[1] > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not every replica got a call: %v", got)
		}
		decide()
	}
	before := counts()
	for i := 0; i < 20; i++ {
		decide()
	}
	after := counts()
	if spread := []uint64{after[0] - before[0], after[1] - before[1]}; spread[0] != 10 || spread[1] != 10 {
		t.Fatalf("20 calls over two replicas went %v, want [10 10]", spread)
	}
}
