package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is a throwaway certificate authority with a server certificate and
// client certificates, as PEM files, for TLS and mutual TLS tests.
type PKI struct {
	// CAFile is the CA certificate.
	CAFile string
	// ServerCert and ServerKey are valid for 127.0.0.1, ::1 and localhost.
	ServerCert, ServerKey string
	// Clients holds each client's certificate and key, by common name.
	Clients map[string]KeyPair
}

// KeyPair is a certificate file and its private key file.
type KeyPair struct{ Cert, Key string }

// NewPKI writes a CA, a server certificate and a client certificate for
// each name (its common name) into dir. They are valid for an hour.
func NewPKI(dir string, clientNames ...string) (*PKI, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "interlock test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p := &PKI{CAFile: filepath.Join(dir, "ca.pem"), Clients: map[string]KeyPair{}}
	if err := writePEM(p.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	serial := int64(2)
	issue := func(name string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (KeyPair, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return KeyPair{}, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		serial++
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return KeyPair{}, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return KeyPair{}, err
		}
		kp := KeyPair{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+".key")}
		if err := writePEM(kp.Cert, "CERTIFICATE", der); err != nil {
			return KeyPair{}, err
		}
		return kp, writePEM(kp.Key, "PRIVATE KEY", keyDER)
	}
	server, err := issue("server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	p.ServerCert, p.ServerKey = server.Cert, server.Key
	for _, name := range clientNames {
		kp, err := issue(name, x509.ExtKeyUsageClientAuth, nil, nil)
		if err != nil {
			return nil, err
		}
		p.Clients[name] = kp
	}
	return p, nil
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
