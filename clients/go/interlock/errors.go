package interlock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of the server's errors.
const Domain = "interlock.v1"

// FieldViolation names one offending request field, from a BadRequest detail.
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a failed call to the Interlock server. Get it with errors.As:
//
//	var ierr *interlock.Error
//	if errors.As(err, &ierr) && ierr.Reason == "UNKNOWN_AGENT" { ... }
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's message, for people.
	Message string
	// Reason is the ErrorInfo reason (for example "RESULT_ALREADY_REPORTED"),
	// or "" when the server sent none (e.g. it could not be reached).
	Reason string
	// Domain is the ErrorInfo domain ("interlock.v1"), or "".
	Domain string
	// Metadata is the ErrorInfo metadata (never nil).
	Metadata map[string]string
	// FieldViolations lists every offending request field (BadRequest).
	FieldViolations []FieldViolation

	status *status.Status
}

// Error implements error: "CODE (REASON): message" and the violations.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("interlock: ")
	b.WriteString(codeName(e.Code))
	if e.Reason != "" && e.Reason != codeName(e.Code) {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	for i, v := range e.FieldViolations {
		if i == 0 {
			b.WriteString(" [")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", v.Field, v.Description)
		if i == len(e.FieldViolations)-1 {
			b.WriteString("]")
		}
	}
	return b.String()
}

// GRPCStatus returns the status the error was built from, so that
// status.Code(err) and status.FromError(err) work on it.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil {
		return e.status
	}
	return status.New(e.Code, e.Message)
}

// Is makes errors.Is(err, context.Canceled) and errors.Is(err,
// context.DeadlineExceeded) hold for the matching status codes.
func (e *Error) Is(target error) bool {
	switch target {
	case context.Canceled:
		return e.Code == codes.Canceled
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	}
	return false
}

// Violation returns the description of the violation of field, if any.
func (e *Error) Violation(field string) (string, bool) {
	for _, v := range e.FieldViolations {
		if v.Field == field {
			return v.Description, true
		}
	}
	return "", false
}

// codeName is the canonical name of a code: "NOT_FOUND", not "NotFound".
func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return c.String()
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// CodeName is the canonical name of a gRPC code, as the server and the
// other clients spell it ("NOT_FOUND", "UNAVAILABLE", ...).
func CodeName(c codes.Code) string { return codeName(c) }

// FromError turns the error of a gRPC call into an *Error, reading the
// ErrorInfo and BadRequest details of its google.rpc.Status. nil stays nil;
// an *Error is returned as it is. An error that carries no status (a
// context's error, say) becomes CANCELLED, DEADLINE_EXCEEDED or UNKNOWN.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var ierr *Error
	if errors.As(err, &ierr) {
		return ierr
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return fromStatus(st)
}

func fromStatus(st *status.Status) *Error {
	e := &Error{
		Code:     st.Code(),
		Message:  st.Message(),
		Metadata: map[string]string{},
		status:   st,
	}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain = d.GetReason(), d.GetDomain()
			for k, v := range d.GetMetadata() {
				e.Metadata[k] = v
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return e
}

// Code returns the gRPC code of an error from this package (or any error
// that carries a gRPC status): codes.OK for nil, codes.Unknown for others.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var ierr *Error
	if errors.As(err, &ierr) {
		return ierr.Code
	}
	return status.Code(err)
}

// Reason returns the ErrorInfo reason of an *Error in err's chain, or "".
func Reason(err error) string {
	var ierr *Error
	if errors.As(err, &ierr) {
		return ierr.Reason
	}
	return ""
}
