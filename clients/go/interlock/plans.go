package interlock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// SpecPlan wraps a plan with explicit steps for SubmitPlan.
func SpecPlan(spec *interlockv1.PlanSpec) *interlockv1.SubmitPlanRequest {
	return &interlockv1.SubmitPlanRequest{Plan: &interlockv1.SubmitPlanRequest_Spec{Spec: spec}}
}

// Phase21Plan wraps a plan in the Phase-21 format for SubmitPlan.
func Phase21Plan(plan *interlockv1.Phase21Plan) *interlockv1.SubmitPlanRequest {
	return &interlockv1.SubmitPlanRequest{Plan: &interlockv1.SubmitPlanRequest_Phase21{Phase21: plan}}
}

// ParsePlanJSON reads a plan JSON document, in either format, as the
// server's JSON reader and `interlock plan submit` do: a document with
// "steps" is a spec plan (plan_id, labels, steps of step_id, tool,
// agent_id, arguments, confidence, depends_on); one with
// "agent_assignments" or "execution_order" a Phase-21 plan (plan_id,
// agent_assignments {agent: [tools]}, execution_order, confidence_scores).
// Only what the request cannot carry is an error here (bad JSON, a wrong
// type, an unknown field); the server validates the rest.
func ParsePlanJSON(data []byte) (*interlockv1.SubmitPlanRequest, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("interlock: the plan is not a JSON object: %w", err)
	}
	opts := protojson.UnmarshalOptions{}
	if _, ok := doc["steps"]; ok {
		spec := &interlockv1.PlanSpec{}
		if err := opts.Unmarshal(data, spec); err != nil {
			return nil, fmt.Errorf("interlock: the spec plan: %w", err)
		}
		return SpecPlan(spec), nil
	}
	_, hasAssignments := doc["agent_assignments"]
	_, hasOrder := doc["execution_order"]
	if !hasAssignments && !hasOrder {
		return nil, errors.New("interlock: the plan is neither format: expected \"steps\" (a spec plan) " +
			"or \"agent_assignments\" and \"execution_order\" (a Phase-21 plan)")
	}
	// The document lists each agent's tools as an array; the message wraps
	// them in a ToolList.
	if raw, ok := doc["agent_assignments"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		var assignments map[string]json.RawMessage
		if err := json.Unmarshal(raw, &assignments); err != nil {
			return nil, fmt.Errorf("interlock: the Phase-21 plan: agent_assignments must be an object of arrays: %w", err)
		}
		wrapped := make(map[string]map[string]json.RawMessage, len(assignments))
		for agent, tools := range assignments {
			wrapped[agent] = map[string]json.RawMessage{"tools": tools}
		}
		doc["agent_assignments"], _ = json.Marshal(wrapped)
	}
	rewritten, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("interlock: the Phase-21 plan: %w", err)
	}
	plan := &interlockv1.Phase21Plan{}
	if err := opts.Unmarshal(rewritten, plan); err != nil {
		return nil, fmt.Errorf("interlock: the Phase-21 plan: %w", err)
	}
	return Phase21Plan(plan), nil
}
