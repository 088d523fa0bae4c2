package interlock

import (
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// Tool outcomes, for ReportToolResult and ReportWork.
const (
	Succeeded = interlockv1.ToolOutcome_TOOL_OUTCOME_SUCCEEDED
	Failed    = interlockv1.ToolOutcome_TOOL_OUTCOME_FAILED
	TimedOut  = interlockv1.ToolOutcome_TOOL_OUTCOME_TIMED_OUT
)

// Execution modes, as the server decides them.
const (
	Mock   = interlockv1.ExecutionMode_EXECUTION_MODE_MOCK
	DryRun = interlockv1.ExecutionMode_EXECUTION_MODE_DRY_RUN
	Live   = interlockv1.ExecutionMode_EXECUTION_MODE_LIVE
)

// ToStruct converts a JSON object to a protobuf Struct: a map[string]any of
// JSON values, a *structpb.Struct, or anything encoding/json marshals to an
// object (a struct, a map[string]string, ...). nil gives an empty Struct.
// Numbers become doubles.
func ToStruct(v any) (*structpb.Struct, error) {
	switch x := v.(type) {
	case nil:
		return &structpb.Struct{}, nil
	case *structpb.Struct:
		if x == nil {
			return &structpb.Struct{}, nil
		}
		return x, nil
	case map[string]any:
		if x == nil {
			return &structpb.Struct{}, nil
		}
		if s, err := structpb.NewStruct(x); err == nil {
			return s, nil
		}
	}
	// Anything else (or a map holding []string, say) goes through JSON.
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not a JSON value: %w", err)
	}
	if string(data) == "null" {
		return &structpb.Struct{}, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("not a JSON object but %s", jsonKind(data))
	}
	return structpb.NewStruct(obj)
}

// jsonKind names the JSON type of an encoded value.
func jsonKind(data []byte) string {
	switch data[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// ModeName is the short name of an execution mode: "MOCK", "DRY_RUN", "LIVE".
func ModeName(mode interlockv1.ExecutionMode) string {
	return strings.TrimPrefix(mode.String(), "EXECUTION_MODE_")
}

// OutcomeName is the short name of a tool outcome: "SUCCEEDED", "FAILED", "TIMED_OUT".
func OutcomeName(outcome interlockv1.ToolOutcome) string {
	return strings.TrimPrefix(outcome.String(), "TOOL_OUTCOME_")
}

// PlanStateName is the short name of a plan state: "RUNNING", "SUCCEEDED", ...
func PlanStateName(state interlockv1.PlanState) string {
	return strings.TrimPrefix(state.String(), "PLAN_STATE_")
}

// PlanFinished reports whether a plan in this state will not change again.
func PlanFinished(state interlockv1.PlanState) bool {
	switch state {
	case interlockv1.PlanState_PLAN_STATE_SUCCEEDED,
		interlockv1.PlanState_PLAN_STATE_FAILED,
		interlockv1.PlanState_PLAN_STATE_FAILED_PARTIAL,
		interlockv1.PlanState_PLAN_STATE_CANCELLED,
		interlockv1.PlanState_PLAN_STATE_ROLLED_BACK:
		return true
	}
	return false
}
