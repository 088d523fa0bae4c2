package interlock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// AuthorizationHeader is the metadata key the bearer token is sent under.
const AuthorizationHeader = "authorization"

// transportCredentials builds the channel's security from the options: TLS
// (server-authenticated or mutual) or plaintext, which is only allowed to a
// loopback address unless WithInsecure was given.
func transportCredentials(cfg *config, target string) (credentials.TransportCredentials, error) {
	if !cfg.tls() {
		if !cfg.insecure && !IsLoopbackTarget(target) {
			return nil, fmt.Errorf("interlock: refusing a plaintext channel to %q, which is not a loopback address: "+
				"use WithCAFile (TLS) or, for a development server only, WithInsecure", target)
		}
		return insecure.NewCredentials(), nil
	}
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

func tlsConfig(cfg *config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.serverName}
	if cfg.caFile != "" {
		pem, err := os.ReadFile(cfg.caFile)
		if err != nil {
			return nil, fmt.Errorf("interlock: reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("interlock: the CA file %s holds no PEM certificate", cfg.caFile)
		}
		tc.RootCAs = pool
	}
	if cfg.certFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.certFile, cfg.keyFile)
		if err != nil {
			return nil, fmt.Errorf("interlock: loading the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// IsLoopbackTarget reports whether a gRPC target names this machine: a
// loopback IP address, "localhost", or a Unix socket; a list of replicas
// when every address in it is loopback.
func IsLoopbackTarget(target string) bool {
	if addresses, err := ReplicaAddresses(target); err == nil && addresses != nil {
		for _, a := range addresses {
			if !IsLoopbackTarget(a) {
				return false
			}
		}
		return true
	}
	endpoint := target
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	if i := strings.Index(target, "://"); i > 0 {
		u, err := url.Parse(target)
		if err != nil {
			return false
		}
		endpoint = strings.TrimPrefix(u.Path, "/")
		if endpoint == "" {
			endpoint = u.Opaque
		}
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if zone := strings.IndexByte(host, '%'); zone >= 0 {
		host = host[:zone]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validToken reports whether a token can be sent in a header: printable
// ASCII without spaces.
func validToken(token string) bool {
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] >= 0x7f {
			return false
		}
	}
	return token != ""
}

// tokenCredentials sends the bearer token on every call and stream. A token
// file is read again whenever its size or modification time changes.
type tokenCredentials struct {
	token      string
	path       string
	requireTLS bool

	mu      sync.Mutex
	modTime time.Time
	size    int64
	cached  string
}

func newTokenCredentials(cfg *config) (*tokenCredentials, error) {
	if cfg.token == "" && cfg.tokenFile == "" {
		return nil, nil
	}
	tc := &tokenCredentials{token: cfg.token, path: cfg.tokenFile, requireTLS: cfg.tls()}
	if _, err := tc.current(); err != nil {
		return nil, err
	}
	return tc, nil
}

func (t *tokenCredentials) current() (string, error) {
	if t.path == "" {
		return t.token, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	info, err := os.Stat(t.path)
	if err != nil {
		return "", fmt.Errorf("interlock: the token file: %w", err)
	}
	if t.cached != "" && info.ModTime().Equal(t.modTime) && info.Size() == t.size {
		return t.cached, nil
	}
	token, err := ReadTokenFile(t.path)
	if err != nil {
		return "", err
	}
	t.cached, t.modTime, t.size = token, info.ModTime(), info.Size()
	return token, nil
}

// ReadTokenFile reads a bearer token from a file: its content with the
// surrounding whitespace trimmed, which must be one non-empty word.
func ReadTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("interlock: reading the token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("interlock: the token file %s is empty", path)
	}
	if !validToken(token) {
		return "", fmt.Errorf("interlock: the token file %s holds whitespace or control characters inside the token", path)
	}
	return token, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	token, err := t.current()
	if err != nil {
		return nil, err
	}
	return map[string]string{AuthorizationHeader: "Bearer " + token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a TLS
// channel must be secure; a plaintext one is allowed (loopback or WithInsecure).
func (t *tokenCredentials) RequireTransportSecurity() bool { return t.requireTLS }

var errNoTarget = errors.New("interlock: the target is empty")
