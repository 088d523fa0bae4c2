package interlock

import (
	"context"
	"errors"
	"io"
	"iter"
	"sync"

	"google.golang.org/grpc"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// Stream is a server stream of T: PullWork's work items or WatchEvents'
// events. Read it with Recv or All, and Close it when done. A Stream is not
// for concurrent Recv calls.
type Stream[T any] struct {
	recv   func() (T, error)
	cancel context.CancelFunc
	once   sync.Once
}

// WorkStream is the work stream of an agent's worker (PullWork).
type WorkStream = Stream[*interlockv1.WorkItem]

// EventStream is the event stream (WatchEvents).
type EventStream = Stream[*interlockv1.Event]

func newStream[T, Resp any](s grpc.ServerStreamingClient[Resp], cancel context.CancelFunc, get func(*Resp) T) *Stream[T] {
	return &Stream[T]{
		cancel: cancel,
		recv: func() (T, error) {
			resp, err := s.Recv()
			if err != nil {
				cancel() // the stream is over: release its context
				var zero T
				if errors.Is(err, io.EOF) {
					return zero, io.EOF
				}
				return zero, FromError(err)
			}
			return get(resp), nil
		},
	}
}

// Recv returns the next item. It returns io.EOF when the server ended the
// stream cleanly, and an *Error when it failed (UNAVAILABLE when the
// connection dropped or the server is stopping: reconnect after a pause;
// CANCELLED after Close or when the stream's context ended).
func (s *Stream[T]) Recv() (T, error) { return s.recv() }

// All yields every item until the stream ends: after the last item it
// yields (zero, err) once if the stream failed, and nothing more if it ended
// cleanly (io.EOF). Breaking out of the loop leaves the stream open; Close
// it.
func (s *Stream[T]) All() iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			item, err := s.recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			if !yield(item, nil) {
				return
			}
		}
	}
}

// Close ends the stream. It is safe to call more than once, and from
// another goroutine than the one in Recv, which then returns CANCELLED.
func (s *Stream[T]) Close() error {
	s.once.Do(s.cancel)
	return nil
}

// PullWork opens the work stream of agentID's worker: each WorkItem as the
// server hands it out. Run the item's tool with its arguments in its mode
// (MOCK and DRY_RUN: no side effects; LIVE: for real; Compensation: it
// undoes an earlier step) before its deadline, then report it with
// ReportWork while the stream is still open: when a stream ends, the server
// offers the MOCK and DRY_RUN items it held again, and marks a LIVE one
// AMBIGUOUS (a LIVE call is never repeated).
//
// The stream has no deadline and is never retried: it runs until Close, the
// end of ctx, or a failure (an unknown agent is NOT_FOUND on the first
// Recv; UNAVAILABLE when the connection drops or the server stops, when the
// caller should reconnect after a pause).
func (c *Client) PullWork(ctx context.Context, agentID string) (*WorkStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	s, err := c.cp.PullWork(sctx, &interlockv1.PullWorkRequest{AgentId: agentID})
	if err != nil {
		cancel()
		return nil, FromError(err)
	}
	return newStream(s, cancel, (*interlockv1.PullWorkResponse).GetItem), nil
}

// WatchOptions filters WatchEvents.
type WatchOptions struct {
	// AfterSeq resumes after this sequence number; 0 streams from the start.
	AfterSeq uint64
	// PlanID and AgentID keep one plan's or one agent's events.
	PlanID, AgentID string
	// Kinds keeps these kinds; all when empty.
	Kinds []interlockv1.EventKind
}

// WatchEvents opens the event stream: every event after opts.AfterSeq that
// matches the filters, in order, the stored history first and then live.
// The stream has no deadline and is never retried: after an error
// (UNAVAILABLE with reason SERVER_STOPPING when the server stops), call
// again with AfterSeq set to the Seq of the last event received; nothing
// is skipped or repeated.
func (c *Client) WatchEvents(ctx context.Context, opts WatchOptions) (*EventStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	req := &interlockv1.WatchEventsRequest{
		AfterSeq: opts.AfterSeq,
		PlanId:   opts.PlanID,
		AgentId:  opts.AgentID,
		Kinds:    opts.Kinds,
	}
	s, err := c.cp.WatchEvents(sctx, req)
	if err != nil {
		cancel()
		return nil, FromError(err)
	}
	return newStream(s, cancel, (*interlockv1.WatchEventsResponse).GetEvent), nil
}
