"""Principals, tokens and certificates for the security tests.

:func:`write_principals` writes a principals file with a fresh token for each
test principal; :func:`channel` opens a channel that sends one of them.
:class:`Pki` makes a CA, a server certificate for 127.0.0.1 and client
certificates (also expired ones, and ones from a CA the server does not trust).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from interlock.auth import new_token, token_hash
from interlock.v1 import control_plane_pb2_grpc, policy_service_pb2_grpc

PRINCIPALS: dict[str, dict[str, Any]] = {
    "agent1": {"kind": "agent"},
    "agent2": {"kind": "agent"},
    "mailer": {"kind": "agent"},
    "ops": {"kind": "agent"},
    "planner": {"kind": "agent", "roles": ["planner"]},
    "alice": {"kind": "operator", "roles": ["approver"]},
    "bob": {"kind": "operator", "roles": ["approver"]},
    "carol": {"kind": "operator", "roles": ["approval-lead"]},
    "olga": {"kind": "operator", "roles": []},
    "root": {"kind": "admin", "roles": ["planner"]},
    # An operator who also acts as the mailer agent (may not approve its calls).
    "mallory": {"kind": "operator", "roles": ["approver"], "agents": ["mailer"]},
}


def write_principals(path: Path, certificates: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write the principals file; return each principal's token by id.
    ``certificates`` maps a certificate name (CN) to a principal id."""
    tokens = {pid: new_token() for pid in PRINCIPALS}
    doc = {
        "tokens": {
            token_hash(tokens[pid]): {"id": pid, **spec} for pid, spec in PRINCIPALS.items()
        },
        "certificates": {
            name: {"id": pid, **PRINCIPALS[pid]} for name, pid in (certificates or {}).items()
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return tokens


class _Bearer:
    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self.header)
        return details._replace(metadata=metadata)


# grpc.aio files an interceptor under its first matching kind only: one class each.
class _BearerUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def channel(
    address: str,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    interceptors: Any = [_BearerUnary(token), _BearerStream(token)] if token else None
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, interceptors=interceptors)


@dataclass
class Stubs:
    channel: grpc.aio.Channel

    @property
    def cp(self) -> control_plane_pb2_grpc.ControlPlaneStub:
        return control_plane_pb2_grpc.ControlPlaneStub(self.channel)

    @property
    def policy(self) -> policy_service_pb2_grpc.PolicyServiceStub:
        return policy_service_pb2_grpc.PolicyServiceStub(self.channel)


class Team:
    """A server with a principals file, and a channel per principal (``team["alice"]``)."""

    def __init__(self, running: Any, tokens: dict[str, str]) -> None:
        self.running = running
        self.tokens = tokens
        self.address = f"127.0.0.1:{running.server.port}"
        self._stubs: dict[str, Stubs] = {}

    def __getitem__(self, principal: str) -> Stubs:
        if principal not in self._stubs:
            self._stubs[principal] = Stubs(channel(self.address, self.tokens[principal]))
        return self._stubs[principal]

    async def close(self) -> None:
        for stubs in self._stubs.values():
            await stubs.channel.close()
        self._stubs.clear()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """A throwaway certificate authority and the certificates a test needs."""

    def __init__(self, directory: Path, name: str = "Interlock Test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(_pem(self.cert))

    def issue(
        self, common_name: str, *, server: bool = False, expired: bool = False
    ) -> tuple[Path, Path]:
        """A certificate and key signed by this CA; (cert file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)
        usage = (
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            if server
            else (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = common_name.replace(" ", "_") + ("-expired" if expired else "")
        cert_file, key_file = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_file.write_bytes(_pem(cert))
        key_file.write_bytes(_key_pem(key))
        return cert_file, key_file

    def client_credentials(
        self, cert: tuple[Path, Path] | None = None, trust: Path | None = None
    ) -> grpc.ChannelCredentials:
        """TLS credentials trusting ``trust`` (this CA), presenting ``cert`` if given."""
        root = (trust or self.ca_file).read_bytes()
        if cert is None:
            return grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=cert[1].read_bytes(),
            certificate_chain=cert[0].read_bytes(),
        )


__all__ = ["PRINCIPALS", "Pki", "Stubs", "Team", "channel", "write_principals"]
