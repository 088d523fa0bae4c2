package interlock

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// GrantSpec describes a grant (docs/grants.md): one agent may call one tool,
// with arguments that satisfy the constraint, until ExpiresAt and up to
// MaxUses times (0: no limit), without a new approval each time.
type GrantSpec struct {
	AgentID string
	Tool    string
	// ArgumentsEqual: named argument fields and the exact value each must have.
	ArgumentsEqual map[string]any
	// ArgumentPatterns: named string fields and a regular expression each
	// must match as a whole.
	ArgumentPatterns map[string]string
	// ArgumentsSchema: a JSON Schema (a subset, see docs/grants.md).
	ArgumentsSchema map[string]any
	// PlanID: only calls of this plan; empty for any call.
	PlanID    string
	ExpiresAt time.Time
	MaxUses   int32
	Reason    string
	// ApprovalID: the pending approval the grant is made from, if any.
	ApprovalID string
}

// GrantService is the raw GrantService stub (see ControlPlane).
func (c *Client) GrantService() interlockv1.GrantServiceClient {
	return interlockv1.NewGrantServiceClient(c.conn)
}

func structOf(name string, m map[string]any) (*structpb.Struct, error) {
	if m == nil {
		return nil, nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("interlock: %s: %w", name, err)
	}
	return s, nil
}

// CreateGrant creates a grant as the authenticated caller (an approver or
// an admin; never an agent, never for a call it asked for). Never retried.
func (c *Client) CreateGrant(ctx context.Context, spec GrantSpec) (*interlockv1.Grant, error) {
	equal, err := structOf("ArgumentsEqual", spec.ArgumentsEqual)
	if err != nil {
		return nil, err
	}
	patterns := map[string]any{}
	for k, v := range spec.ArgumentPatterns {
		patterns[k] = v
	}
	patternsPB, err := structOf("ArgumentPatterns", patterns)
	if err != nil {
		return nil, err
	}
	schema, err := structOf("ArgumentsSchema", spec.ArgumentsSchema)
	if err != nil {
		return nil, err
	}
	req := &interlockv1.CreateGrantRequest{
		AgentId:          spec.AgentID,
		Tool:             spec.Tool,
		ArgumentsEqual:   equal,
		ArgumentPatterns: patternsPB,
		ArgumentsSchema:  schema,
		PlanId:           spec.PlanID,
		MaxUses:          spec.MaxUses,
		Reason:           spec.Reason,
		ApprovalId:       spec.ApprovalID,
	}
	if !spec.ExpiresAt.IsZero() {
		req.ExpiresAt = timestamppb.New(spec.ExpiresAt)
	}
	resp, err := invoke(ctx, c, "CreateGrant", req, c.GrantService().CreateGrant)
	if err != nil {
		return nil, err
	}
	return resp.GetGrant(), nil
}

// GrantFilter selects grants for ListGrants; empty fields match everything.
type GrantFilter struct {
	AgentID string
	Tool    string
	States  []interlockv1.GrantState
}

// ListGrants returns the grants the filter selects, newest first. Retried on UNAVAILABLE.
func (c *Client) ListGrants(ctx context.Context, f GrantFilter) ([]*interlockv1.Grant, error) {
	req := &interlockv1.ListGrantsRequest{AgentId: f.AgentID, Tool: f.Tool, States: f.States}
	resp, err := invoke(ctx, c, "ListGrants", req, c.GrantService().ListGrants)
	if err != nil {
		return nil, err
	}
	return resp.GetGrants(), nil
}

// RevokeGrant revokes a grant at once: it covers no call from now on. Never retried.
func (c *Client) RevokeGrant(ctx context.Context, grantID, reason string) (*interlockv1.Grant, error) {
	req := &interlockv1.RevokeGrantRequest{GrantId: grantID, Reason: reason}
	resp, err := invoke(ctx, c, "RevokeGrant", req, c.GrantService().RevokeGrant)
	if err != nil {
		return nil, err
	}
	return resp.GetGrant(), nil
}
