package interlock

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Defaults of a client's options.
const (
	DefaultTarget  = "127.0.0.1:50051"
	DefaultTimeout = 5 * time.Second
	// DefaultRetries is how many times an idempotent read is retried on UNAVAILABLE.
	DefaultRetries = 2
	// The retry backoff: the first pause, and the longest.
	RetryBackoffBase = 100 * time.Millisecond
	RetryBackoffMax  = time.Second
)

// An Option configures Dial.
type Option func(*config) error

type config struct {
	token       string
	tokenFile   string
	caFile      string
	certFile    string
	keyFile     string
	serverName  string
	insecure    bool
	block       bool
	timeout     time.Duration
	retries     int
	backoffBase time.Duration
	backoffMax  time.Duration
	dialOptions []grpc.DialOption
	metadata    []string // key, value, key, value, ...
}

func defaultConfig() config {
	return config{
		timeout:     DefaultTimeout,
		retries:     DefaultRetries,
		backoffBase: RetryBackoffBase,
		backoffMax:  RetryBackoffMax,
	}
}

func (c *config) apply(opts []Option) error {
	var errs []error
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			errs = append(errs, err)
		}
	}
	if c.token != "" && c.tokenFile != "" {
		errs = append(errs, errors.New("WithToken and WithTokenFile exclude each other"))
	}
	return errors.Join(errs...)
}

// tls reports whether the options ask for a TLS channel.
func (c *config) tls() bool {
	return c.caFile != "" || c.certFile != "" || c.serverName != ""
}

// WithToken sends "authorization: Bearer <token>" metadata on every call.
func WithToken(token string) Option {
	return func(c *config) error {
		if token == "" {
			return errors.New("WithToken: the token is empty")
		}
		if !validToken(token) {
			return errors.New("WithToken: the token holds whitespace or control characters")
		}
		c.token = token
		return nil
	}
}

// WithTokenFile sends the token read from path (surrounding whitespace
// trimmed) as "authorization: Bearer <token>" metadata on every call. Dial
// reads the file once to check it; the client reads it again when it
// changes, so a rotated token is picked up without a new Dial.
func WithTokenFile(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("WithTokenFile: the path is empty")
		}
		c.tokenFile = path
		return nil
	}
}

// WithCAFile makes the channel TLS, trusting the CA certificates in the PEM
// file at path (and only those) to sign the server's certificate.
func WithCAFile(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("WithCAFile: the path is empty")
		}
		c.caFile = path
		return nil
	}
}

// WithClientCert makes the channel mutual TLS: the client presents the
// certificate and private key in these PEM files. Without WithCAFile the
// server's certificate is checked against the system's roots.
func WithClientCert(certFile, keyFile string) Option {
	return func(c *config) error {
		if certFile == "" || keyFile == "" {
			return errors.New("WithClientCert: both the certificate and the key file are needed")
		}
		c.certFile, c.keyFile = certFile, keyFile
		return nil
	}
}

// WithServerName checks the server's TLS certificate against name instead
// of the target's host name (and makes the channel TLS).
func WithServerName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("WithServerName: the name is empty")
		}
		c.serverName = name
		return nil
	}
}

// WithInsecure allows a plaintext channel to an address that is not a
// loopback address. Never use it in production: the server only runs
// without TLS in its development mode, on loopback.
func WithInsecure() Option {
	return func(c *config) error {
		c.insecure = true
		return nil
	}
}

// WithDefaultTimeout sets the deadline of each attempt of a call whose
// context has none (DefaultTimeout unless set). Streams get no deadline.
func WithDefaultTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithDefaultTimeout: %v is not positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithRetries sets how many times an idempotent read is retried on
// UNAVAILABLE (DefaultRetries unless set; 0 turns retries off), and the
// backoff between attempts: base doubles after each attempt up to limit.
// Zero durations keep RetryBackoffBase and RetryBackoffMax.
func WithRetries(retries int, base, limit time.Duration) Option {
	return func(c *config) error {
		if retries < 0 || base < 0 || limit < 0 {
			return errors.New("WithRetries: negative retries or backoff")
		}
		c.retries = retries
		if base > 0 {
			c.backoffBase = base
		}
		if limit > 0 {
			c.backoffMax = limit
		}
		if c.backoffMax < c.backoffBase {
			return fmt.Errorf("WithRetries: max backoff %v is below the base %v", c.backoffMax, c.backoffBase)
		}
		return nil
	}
}

// WithBlock makes Dial wait until the channel is connected, or its context
// ends. Without it Dial returns at once and connects in the background.
func WithBlock() Option {
	return func(c *config) error {
		c.block = true
		return nil
	}
}

// WithMetadata sends a metadata header on every call and stream, e.g. the
// x-request-id the server logs, or x-interlock-dev-principal, which names
// the caller of a server in insecure development mode. The authorization
// header is the token options' own.
func WithMetadata(key, value string) Option {
	return func(c *config) error {
		key = strings.ToLower(key)
		if key == "" || key == AuthorizationHeader {
			return fmt.Errorf("WithMetadata: %q cannot be set here (use WithToken for authorization)", key)
		}
		c.metadata = append(c.metadata, key, value)
		return nil
	}
}

// WithDialOptions passes extra options to grpc.NewClient (interceptors,
// keepalive, message sizes). The transport credentials are the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) error {
		c.dialOptions = append(c.dialOptions, opts...)
		return nil
	}
}
