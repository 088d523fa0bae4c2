package interlock

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
)

// The RPCs the client may retry: reads that change nothing on the server.
// Everything else (RequestToolCall, ReportToolResult, SubmitPlan,
// CancelPlan, ResolveApproval, AwaitApproval, ReloadPolicies, the streams)
// is sent once: a retry could decide or record a call twice.
var idempotentMethods = map[string]bool{
	"ListTools":       true,
	"GetPlan":         true,
	"ListPlans":       true,
	"ListApprovals":   true,
	"ListGrants":      true,
	"GetTrust":        true,
	"GetHealth":       true,
	"ListSignals":     true,
	"GetPolicyStatus": true,
}

// Idempotent reports whether the client retries the named RPC (its method
// name, e.g. "ListTools") on UNAVAILABLE.
func Idempotent(method string) bool { return idempotentMethods[method] }

// shouldRetry decides whether a failed attempt (0 for the first) of method
// is tried again: only an idempotent read, only on UNAVAILABLE, and only
// while attempts remain.
func shouldRetry(method string, err error, attempt, retries int) bool {
	if err == nil || attempt >= retries || !Idempotent(method) {
		return false
	}
	return Code(err) == codes.Unavailable
}

// backoff is the pause after a failed attempt (0 for the first): base
// doubling each attempt, capped at limit, with "equal jitter" (a random
// point in its upper half) so that many clients do not retry in step.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d, or until ctx ends (and returns its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
