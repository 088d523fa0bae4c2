// Package interlock is a Go client of the Interlock control plane: the gRPC
// server that AI agents' tool calls go through.
//
// Dial opens a client; its methods wrap the ControlPlane RPCs of
// interlock.v1 (the generated code is in package interlockv1) and return the
// server's protobuf messages:
//
//	c, err := interlock.Dial(ctx, "127.0.0.1:50051", interlock.WithTokenFile("/run/secrets/interlock"))
//	if err != nil { ... }
//	defer c.Close()
//	decision, err := c.RequestToolCall(ctx, interlock.ToolCall{
//		AgentID: "agent1", Tool: "form_fill", Confidence: 0.75,
//		Arguments: map[string]any{"form_id": "signup", "fields": map[string]any{"email": "a@example.com"}},
//	})
//
// # Connection security
//
// With no option the channel is plaintext, the server's insecure development
// mode, which only a loopback address serves; Dial refuses plaintext to any
// other address unless WithInsecure is given. WithCAFile turns on TLS (the
// server's certificate must chain to that CA), WithClientCert adds a client
// certificate (mutual TLS), and WithToken or WithTokenFile send
// "authorization: Bearer <token>" metadata on every call and stream.
//
// # Deadlines and retries
//
// A call whose context has no deadline gets the default timeout
// (WithDefaultTimeout, 5 s unless set) for each attempt; the streams
// (PullWork, WatchEvents) get none. Only the idempotent reads (ListTools,
// GetPlan, ListPlans, ListApprovals, GetHealth, ListSignals, PolicyStatus)
// are retried, on UNAVAILABLE only, with a capped exponential backoff
// (WithRetries). Calls that decide, record or change something
// (RequestToolCall, ReportToolResult, SubmitPlan, CancelPlan,
// ResolveApproval, ...) are never retried: a retry could record them twice.
// Streams are not retried either: their callers reconnect.
//
// # Errors
//
// Every failed RPC returns an *Error carrying the gRPC code, the message,
// the ErrorInfo reason, domain and metadata the server sent, and the
// BadRequest field violations; get it with errors.As. It also answers
// status.Code and status.FromError.
package interlock
