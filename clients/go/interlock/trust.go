package interlock

import (
	"context"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// TrustService is the raw TrustService stub (see ControlPlane).
func (c *Client) TrustService() interlockv1.TrustServiceClient {
	return interlockv1.NewTrustServiceClient(c.conn)
}

// GetTrust returns the trust of (agent, tool) pairs (docs/trust.md): one pair
// when both are given, else every pair with an outcome so far that matches
// (an empty field matches all). Retried on UNAVAILABLE.
func (c *Client) GetTrust(ctx context.Context, agentID, tool string) ([]*interlockv1.PairTrust, error) {
	req := &interlockv1.GetTrustRequest{AgentId: agentID, Tool: tool}
	resp, err := invoke(ctx, c, "GetTrust", req, c.TrustService().GetTrust)
	if err != nil {
		return nil, err
	}
	return resp.GetPairs(), nil
}

// ResetTrust promotes a demoted pair back to TRUSTED at once, as the
// authenticated caller (an approver or an admin, never as the pair's own
// agent); the reason is required and audited. Never retried.
func (c *Client) ResetTrust(ctx context.Context, agentID, tool, reason string) (*interlockv1.PairTrust, error) {
	req := &interlockv1.ResetTrustRequest{AgentId: agentID, Tool: tool, Reason: reason}
	resp, err := invoke(ctx, c, "ResetTrust", req, c.TrustService().ResetTrust)
	if err != nil {
		return nil, err
	}
	return resp.GetTrust(), nil
}
