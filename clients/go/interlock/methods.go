package interlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// ListTools returns the tool contracts of the active policy set (.Tools)
// and its revision (.PolicyRevision). Retried on UNAVAILABLE.
func (c *Client) ListTools(ctx context.Context) (*interlockv1.ListToolsResponse, error) {
	return invoke(ctx, c, "ListTools", &interlockv1.ListToolsRequest{}, c.cp.ListTools)
}

// ToolCall is a request to call a tool, for RequestToolCall.
type ToolCall struct {
	// AgentID is the calling agent; it must be known to the policy bundle.
	AgentID string
	// Tool is the tool's catalog name.
	Tool string
	// Arguments is a JSON object (see ToStruct), checked against the tool's
	// JSON Schema; nil sends an empty object.
	Arguments any
	// Confidence is the agent's confidence in the call, in [0, 1]. It is
	// always sent (the server requires it).
	Confidence float64
	// PlanID and StepID are set when the call belongs to a plan step.
	PlanID, StepID string
	// ApprovalID names an APPROVED approval that covers this call (same
	// agent, tool and arguments); the call uses it up and runs LIVE.
	ApprovalID string
}

// RequestToolCall asks whether, and in which mode, an agent may call a tool.
// The Decision has the verdict, the mode, the reasons, and the decision id
// to report the result against. Never retried.
func (c *Client) RequestToolCall(ctx context.Context, call ToolCall) (*interlockv1.Decision, error) {
	args, err := ToStruct(call.Arguments)
	if err != nil {
		return nil, fmt.Errorf("interlock: the arguments: %w", err)
	}
	req := &interlockv1.RequestToolCallRequest{
		AgentId:    call.AgentID,
		Tool:       call.Tool,
		Arguments:  args,
		Confidence: &call.Confidence,
		PlanId:     call.PlanID,
		StepId:     call.StepID,
		ApprovalId: call.ApprovalID,
	}
	resp, err := invoke(ctx, c, "RequestToolCall", req, c.cp.RequestToolCall)
	if err != nil {
		return nil, err
	}
	return resp.GetDecision(), nil
}

// Result is how a decided tool call ended, for ReportToolResult and ReportWork.
type Result struct {
	// DecisionID is the decision the result is for.
	DecisionID string
	// AgentID is the agent that ran the call: the one that asked.
	AgentID string
	// Outcome is Succeeded, Failed or TimedOut.
	Outcome interlockv1.ToolOutcome
	// Output is a JSON object (see ToStruct); nil sends an empty object.
	Output any
	// ErrorMessage says why the call failed.
	ErrorMessage string
	// Duration is how long the call ran.
	Duration time.Duration
	// WorkID is set when reporting a plan step's work item.
	WorkID string
}

// ReportToolResult reports how a decided tool call ended and returns the
// recorded result. Never retried: a second report of the same decision
// fails with ALREADY_EXISTS (reason RESULT_ALREADY_REPORTED).
func (c *Client) ReportToolResult(ctx context.Context, r Result) (*interlockv1.ToolResult, error) {
	if r.Outcome == interlockv1.ToolOutcome_TOOL_OUTCOME_UNSPECIFIED {
		return nil, errors.New("interlock: the result has no outcome")
	}
	output, err := ToStruct(r.Output)
	if err != nil {
		return nil, fmt.Errorf("interlock: the output: %w", err)
	}
	req := &interlockv1.ReportToolResultRequest{
		DecisionId:   r.DecisionID,
		AgentId:      r.AgentID,
		Outcome:      r.Outcome,
		Output:       output,
		ErrorMessage: r.ErrorMessage,
		Duration:     durationpb.New(r.Duration),
		WorkId:       r.WorkID,
	}
	resp, err := invoke(ctx, c, "ReportToolResult", req, c.cp.ReportToolResult)
	if err != nil {
		return nil, err
	}
	return resp.GetResult(), nil
}

// ReportWork reports how a work item from PullWork ended: r's outcome,
// output, error message and duration, with the item's work id, decision id
// and agent (those of r are used when set). Never retried. An item the
// server no longer waits for (cancelled, timed out, or lost with its
// stream) gives NOT_FOUND; another agent's item PERMISSION_DENIED.
func (c *Client) ReportWork(ctx context.Context, item *interlockv1.WorkItem, r Result) (*interlockv1.ToolResult, error) {
	if r.WorkID == "" {
		r.WorkID = item.GetWorkId()
	}
	if r.DecisionID == "" {
		r.DecisionID = item.GetDecisionId()
	}
	if r.AgentID == "" {
		r.AgentID = item.GetAgentId()
	}
	if r.AgentID == "" {
		return nil, fmt.Errorf("interlock: work item %q names no agent: set Result.AgentID", item.GetWorkId())
	}
	return c.ReportToolResult(ctx, r)
}

// SubmitPlan submits a plan (see SpecPlan, Phase21Plan and ParsePlanJSON)
// and returns the accepted plan: its state, its steps in the order they
// will run and the conflicts found. An invalid plan gives INVALID_ARGUMENT
// (reason INVALID_PLAN) with every problem in FieldViolations; a plan id
// used before ALREADY_EXISTS. Never retried.
func (c *Client) SubmitPlan(ctx context.Context, plan *interlockv1.SubmitPlanRequest) (*interlockv1.Plan, error) {
	resp, err := invoke(ctx, c, "SubmitPlan", plan, c.cp.SubmitPlan)
	if err != nil {
		return nil, err
	}
	return resp.GetPlan(), nil
}

// GetPlan returns a plan, its steps (state, decision, result) and its
// conflicts; NOT_FOUND (UNKNOWN_PLAN) if unknown. Retried on UNAVAILABLE.
func (c *Client) GetPlan(ctx context.Context, planID string) (*interlockv1.Plan, error) {
	resp, err := invoke(ctx, c, "GetPlan", &interlockv1.GetPlanRequest{PlanId: planID}, c.cp.GetPlan)
	if err != nil {
		return nil, err
	}
	return resp.GetPlan(), nil
}

// ListPlansOptions filters and pages ListPlans.
type ListPlansOptions struct {
	// States keeps the plans in these states; all when empty.
	States []interlockv1.PlanState
	// PageSize is the most plans a page holds (the server's default when 0; at most 100).
	PageSize uint32
	// PageToken is the NextPageToken of the previous page.
	PageToken string
}

// ListPlans returns one page of plans, by plan id: .Plans and
// .NextPageToken (empty on the last page). Retried on UNAVAILABLE.
func (c *Client) ListPlans(ctx context.Context, opts ListPlansOptions) (*interlockv1.ListPlansResponse, error) {
	req := &interlockv1.ListPlansRequest{States: opts.States, PageSize: opts.PageSize, PageToken: opts.PageToken}
	return invoke(ctx, c, "ListPlans", req, c.cp.ListPlans)
}

// CancelPlan cancels a plan that has not finished and returns it, normally
// CANCELLED already. A finished plan gives FAILED_PRECONDITION (reason
// PLAN_FINISHED). Never retried.
func (c *Client) CancelPlan(ctx context.Context, planID, reason string) (*interlockv1.Plan, error) {
	resp, err := invoke(ctx, c, "CancelPlan", &interlockv1.CancelPlanRequest{PlanId: planID, Reason: reason}, c.cp.CancelPlan)
	if err != nil {
		return nil, err
	}
	return resp.GetPlan(), nil
}

// WaitPlan polls a plan every interval (250 ms when 0) until it has
// finished (see PlanFinished) and returns it, or returns ctx's error, or
// the error of GetPlan.
func (c *Client) WaitPlan(ctx context.Context, planID string, interval time.Duration) (*interlockv1.Plan, error) {
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	for {
		plan, err := c.GetPlan(ctx, planID)
		if err != nil {
			return nil, err
		}
		if PlanFinished(plan.GetState()) {
			return plan, nil
		}
		if err := sleep(ctx, interval); err != nil {
			return plan, FromError(err)
		}
	}
}

// ApprovalFilter selects approvals for ListApprovals.
type ApprovalFilter struct {
	// States keeps approvals in these states; PENDING when empty.
	States                []interlockv1.ApprovalState
	PlanID, AgentID, Tool string
}

// ListApprovals returns the approvals the filter selects. Retried on UNAVAILABLE.
func (c *Client) ListApprovals(ctx context.Context, f ApprovalFilter) ([]*interlockv1.Approval, error) {
	req := &interlockv1.ListApprovalsRequest{States: f.States, PlanId: f.PlanID, AgentId: f.AgentID, Tool: f.Tool}
	resp, err := invoke(ctx, c, "ListApprovals", req, c.cp.ListApprovals)
	if err != nil {
		return nil, err
	}
	return resp.GetApprovals(), nil
}

// Approval resolutions, for ResolveApproval.
const (
	Approve = interlockv1.ApprovalResolution_APPROVAL_RESOLUTION_APPROVE
	Deny    = interlockv1.ApprovalResolution_APPROVAL_RESOLUTION_DENY
)

// ResolveApproval approves or denies a held call and returns the approval
// (a denial needs a reason). Who resolves it is the authenticated caller.
// Never retried.
func (c *Client) ResolveApproval(ctx context.Context, approvalID string, resolution interlockv1.ApprovalResolution, reason string) (*interlockv1.Approval, error) {
	req := &interlockv1.ResolveApprovalRequest{ApprovalId: approvalID, Resolution: resolution, Reason: reason}
	resp, err := invoke(ctx, c, "ResolveApproval", req, c.cp.ResolveApproval)
	if err != nil {
		return nil, err
	}
	return resp.GetApproval(), nil
}

// AwaitApproval waits on the server until the approval is resolved or
// expires, for at most wait (the server's default when 0), and returns it.
// Without a deadline on ctx the call's deadline is wait plus the default
// timeout. Not retried.
func (c *Client) AwaitApproval(ctx context.Context, approvalID string, wait time.Duration) (*interlockv1.Approval, error) {
	req := &interlockv1.AwaitApprovalRequest{ApprovalId: approvalID}
	if wait > 0 {
		req.Timeout = durationpb.New(wait)
	}
	resp, err := invokeFor(ctx, c, "AwaitApproval", req, max(wait, 0), c.cp.AwaitApproval)
	if err != nil {
		return nil, err
	}
	return resp.GetApproval(), nil
}

// GetHealth returns the server's health: status, score, components,
// anomalies, engine, policy revision, decision counts. Retried on UNAVAILABLE.
func (c *Client) GetHealth(ctx context.Context) (*interlockv1.GetHealthResponse, error) {
	return invoke(ctx, c, "GetHealth", &interlockv1.GetHealthRequest{}, c.cp.GetHealth)
}

// SignalFilter selects learning signals for ListSignals.
type SignalFilter struct {
	// Kinds keeps these kinds; all when empty.
	Kinds []interlockv1.SignalKind
	// Tool keeps one tool's signals.
	Tool string
	// Limit is the most signals returned (the server's default, 100, when 0; at most 1000).
	Limit uint32
}

// ListSignals returns learning signals, newest first, each with its
// evidence. Retried on UNAVAILABLE.
func (c *Client) ListSignals(ctx context.Context, f SignalFilter) ([]*interlockv1.Signal, error) {
	req := &interlockv1.ListSignalsRequest{Kinds: f.Kinds, Tool: f.Tool, Limit: f.Limit}
	resp, err := invoke(ctx, c, "ListSignals", req, c.cp.ListSignals)
	if err != nil {
		return nil, err
	}
	return resp.GetSignals(), nil
}

// PolicyStatus returns the active policy set: revision, engine, modules,
// reload counts, the last refused reload. Retried on UNAVAILABLE.
func (c *Client) PolicyStatus(ctx context.Context) (*interlockv1.GetPolicyStatusResponse, error) {
	return invoke(ctx, c, "GetPolicyStatus", &interlockv1.GetPolicyStatusRequest{}, c.ps.GetPolicyStatus)
}

// ReloadPolicies makes the server re-read its policy folder and swap it
// in. A broken set is refused (FAILED_PRECONDITION, reason POLICY_INVALID)
// and the active one keeps serving. Never retried.
func (c *Client) ReloadPolicies(ctx context.Context) (*interlockv1.ReloadPoliciesResponse, error) {
	return invoke(ctx, c, "ReloadPolicies", &interlockv1.ReloadPoliciesRequest{}, c.ps.ReloadPolicies)
}
