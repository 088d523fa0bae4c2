// Package testserver runs a real Interlock server (the Python one from the
// repository's .venv) on a free loopback port for the Go client's
// integration tests.
package testserver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Server is a running Interlock server process.
type Server struct {
	// Target is its gRPC address, 127.0.0.1:PORT.
	Target string
	// Dir holds its data dir, its copy of the policies and its log.
	Dir string

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// Options adjusts Start.
type Options struct {
	// Port to listen on; a free one when 0.
	Port int
	// ExtraArgs are appended to `interlock serve`.
	ExtraArgs []string
	// Secure, when set, runs the server with TLS and authentication
	// instead of the insecure development mode.
	Secure *Secure
}

// Secure is the security of a server that is not in development mode.
type Secure struct {
	// PKI signs the server's certificate (and the clients').
	PKI *PKI
	// Principals is the principals file's YAML (tokens by SHA-256,
	// certificates by name).
	Principals string
	// MutualTLS makes every client present a certificate signed by PKI.
	MutualTLS bool
	// HealthClient names the PKI client certificate the health check
	// presents (required with MutualTLS).
	HealthClient string
}

// TokenHash is how the principals file keys a bearer token: its SHA-256, in hex.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// RepoRoot finds the repository root: the nearest parent of the working
// directory holding protos/ and pyproject.toml.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "pyproject.toml")) && isDir(filepath.Join(dir, "protos")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testserver: cannot find the repository root (a folder with pyproject.toml and protos/) above the working directory")
		}
		dir = parent
	}
}

// Binary is the interlock executable: $INTERLOCK_BIN, else the
// repository's .venv/bin/interlock. It is an error, telling to run
// `make install`, when it is missing.
func Binary() (string, error) {
	if bin := os.Getenv("INTERLOCK_BIN"); bin != "" {
		if !isFile(bin) {
			return "", fmt.Errorf("testserver: INTERLOCK_BIN=%s does not exist: run `make install` in the repository root", bin)
		}
		return bin, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".venv", "bin", "interlock")
	if !isFile(bin) {
		return "", fmt.Errorf("testserver: the Interlock server %s is missing: run `make install` in %s first "+
			"(the Go client's integration tests need a real server)", bin, root)
	}
	return bin, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs `interlock serve` with a temporary data dir and a copy of the
// repository's policies, on a free loopback port (opts.Port when set), in
// insecure development mode unless opts.Secure is set, and waits until the
// standard health service says SERVING. It tries three free ports before
// giving up (another process may take the one it picked).
func Start(ctx context.Context, opts Options) (*Server, error) {
	var lastErr error
	for try := 0; try < 3; try++ {
		s, err := start(ctx, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if opts.Port != 0 || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "interlock-go-test-")
	if err != nil {
		return nil, err
	}
	policyDir := filepath.Join(dir, "policies")
	if err := copyTree(filepath.Join(root, "policies"), policyDir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Target:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Dir:     dir,
		logPath: filepath.Join(dir, "server.log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logFile.Close()
	args := append([]string{
		"serve",
		"--listen", s.Target,
		"--metrics-listen", "",
		"--data-dir", filepath.Join(dir, "data"),
		"--policy-dir", policyDir,
		"--no-fsync",
		"--health-interval-seconds", "0",
	}, opts.ExtraArgs...)
	creds := insecure.NewCredentials()
	if sec := opts.Secure; sec != nil {
		principals := filepath.Join(dir, "principals.yaml")
		if err := os.WriteFile(principals, []byte(sec.Principals), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args = append(args, "--no-insecure", "--principals-file", principals,
			"--tls-cert-file", sec.PKI.ServerCert, "--tls-key-file", sec.PKI.ServerKey)
		if sec.MutualTLS {
			args = append(args, "--tls-client-ca-file", sec.PKI.CAFile)
		}
		if creds, err = sec.healthCredentials(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = root
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.Env = serverEnv()
	setParentDeathSignal(s.cmd)
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("testserver: starting %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitServing(ctx, creds, 30*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// serverEnv is the environment without INTERLOCK_* settings that could
// change the server's configuration.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "INTERLOCK_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (sec *Secure) healthCredentials() (credentials.TransportCredentials, error) {
	pem, err := os.ReadFile(sec.PKI.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if sec.MutualTLS {
		kp, ok := sec.PKI.Clients[sec.HealthClient]
		if !ok {
			return nil, fmt.Errorf("testserver: a mutual TLS server needs a HealthClient certificate")
		}
		cert, err := tls.LoadX509KeyPair(kp.Cert, kp.Key)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}

func (s *Server) waitServing(ctx context.Context, creds credentials.TransportCredentials, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	conn, err := grpc.NewClient(s.Target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("testserver: the server exited before serving (%v); its log:\n%s", s.waitErr, s.Log())
		case <-ctx.Done():
			return fmt.Errorf("testserver: the server did not serve within %v; its log:\n%s", limit, s.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Log returns the server's log so far (its last 8 KiB).
func (s *Server) Log() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > 8192 {
		f.Seek(info.Size()-8192, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	return string(data)
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and removes its
// files.
func (s *Server) Stop() error {
	defer os.RemoveAll(s.Dir)
	select {
	case <-s.exited:
		return nil
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
