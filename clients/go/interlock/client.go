package interlock

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"

	"github.com/interlock-dev/interlock/clients/go/interlockv1"
)

// Version is this client's version, sent in the user agent.
const Version = "0.1.0"

// Client is a client of one Interlock server, or of several replicas. It is safe for concurrent use;
// Close it when done.
type Client struct {
	target string
	cfg    config
	conn   *grpc.ClientConn
	cp     interlockv1.ControlPlaneClient
	ps     interlockv1.PolicyServiceClient
}

// Dial opens a client of the server at target ("host:port", or any gRPC
// target), or of the replicas at a comma-separated list of IP:PORT
// ("10.0.0.1:50051,10.0.0.2:50051"): calls spread over those that answer
// (round_robin; see ReplicaAddresses). A "dns:///name:port" target spreads
// over every address the name resolves to. It loads the credentials the options name and returns at once,
// connecting in the background, unless WithBlock asks it to wait for the
// connection, as long as ctx allows. See the package documentation for the
// security options.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	if target == "" {
		return nil, errNoTarget
	}
	cfg := defaultConfig()
	if err := cfg.apply(opts); err != nil {
		return nil, fmt.Errorf("interlock: %w", err)
	}
	dialTarget, targetOpts, err := resolveTarget(target)
	if err != nil {
		return nil, fmt.Errorf("interlock: %w", err)
	}
	creds, err := transportCredentials(&cfg, target)
	if err != nil {
		return nil, err
	}
	token, err := newTokenCredentials(&cfg)
	if err != nil {
		return nil, err
	}
	dialOpts := append([]grpc.DialOption{grpc.WithUserAgent("interlock-go/" + Version)}, targetOpts...)
	dialOpts = append(dialOpts, cfg.dialOptions...)
	dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
	if token != nil {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(token))
	}
	if len(cfg.metadata) > 0 {
		md := cfg.metadata
		dialOpts = append(dialOpts,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(metadata.AppendToOutgoingContext(ctx, md...), method, req, reply, cc, opts...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(metadata.AppendToOutgoingContext(ctx, md...), desc, cc, method, opts...)
			}))
	}
	conn, err := grpc.NewClient(dialTarget, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("interlock: %w", err)
	}
	conn.Connect()
	if cfg.block {
		if err := waitReady(ctx, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("interlock: connecting to %s: %w", target, err)
		}
	}
	return &Client{
		target: target,
		cfg:    cfg,
		conn:   conn,
		cp:     interlockv1.NewControlPlaneClient(conn),
		ps:     interlockv1.NewPolicyServiceClient(conn),
	}, nil
}

func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return fmt.Errorf("the channel is shut down")
		}
		if !conn.WaitForStateChange(ctx, state) {
			return ctx.Err()
		}
	}
}

// Close closes the channel; calls and streams in flight are cancelled.
func (c *Client) Close() error { return c.conn.Close() }

// Target is the server's address as given to Dial.
func (c *Client) Target() string { return c.target }

// Conn is the underlying gRPC channel.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// ControlPlane is the raw ControlPlane stub, for what the methods do not
// cover. Its calls get the token, but no default deadline, retry or *Error.
func (c *Client) ControlPlane() interlockv1.ControlPlaneClient { return c.cp }

// PolicyService is the raw PolicyService stub (see ControlPlane).
func (c *Client) PolicyService() interlockv1.PolicyServiceClient { return c.ps }

// attemptContext bounds one attempt of a unary call: by the caller's
// deadline when ctx has one, else by the default timeout.
func (c *Client) attemptContext(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.timeout+extra)
}

// invoke runs a unary RPC with the client's deadline and retry rules and
// turns its error into an *Error. method is the RPC's name ("ListTools").
func invoke[Req, Resp any](ctx context.Context, c *Client, method string, req Req,
	rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	return invokeFor(ctx, c, method, req, 0, rpc)
}

// invokeFor is invoke with extra time added to the default deadline (for
// a call that waits on the server, like AwaitApproval).
func invokeFor[Req, Resp any](ctx context.Context, c *Client, method string, req Req, extra time.Duration,
	rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	var zero Resp
	for attempt := 0; ; attempt++ {
		actx, cancel := c.attemptContext(ctx, extra)
		resp, err := rpc(actx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if !shouldRetry(method, err, attempt, c.cfg.retries) {
			return zero, FromError(err)
		}
		if sleep(ctx, backoff(attempt, c.cfg.backoffBase, c.cfg.backoffMax)) != nil {
			return zero, FromError(err)
		}
	}
}
