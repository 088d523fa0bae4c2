"""The console under TLS: HTTPS with the server's certificate, a Secure session
cookie, and sign-in with a client certificate (mutual TLS) or a token."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from tests.conftest import StartServer
from tests.helpers.security import Pki, write_principals


async def test_sign_in_over_https_with_a_client_certificate_or_a_token(
    start_server: StartServer, tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "pki")
    cert, key = pki.issue("localhost", server=True)
    tokens = write_principals(tmp_path / "principals.yaml", {"alice.ops.example": "alice"})
    running = await start_server(
        insecure=False,
        principals_file=str(tmp_path / "principals.yaml"),
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_client_ca_file=str(pki.ca_file),
        console_listen="127.0.0.1:0",
    )
    assert running.server.console is not None
    base = f"https://localhost:{running.server.console.port}"
    html = {"Accept": "text/html"}

    with_cert = ssl.create_default_context(cafile=str(pki.ca_file))
    with_cert.load_cert_chain(*pki.issue("alice.ops.example"))
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        # No token: the certificate the browser presented names the person.
        answer = await http.post(base + "/signin", data={"token": ""}, ssl=with_cert)
        assert answer.status == 200 and answer.url.path == "/approvals"
        assert "alice" in await answer.text()
        cookie = answer.history[0].cookies["interlock_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"

    without_cert = ssl.create_default_context(cafile=str(pki.ca_file))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        answer = await http.post(base + "/signin", data={"token": ""}, ssl=without_cert)
        assert answer.status == 401  # neither a token nor a certificate
        answer = await http.post(base + "/signin", data={"token": tokens["bob"]}, ssl=without_cert)
        assert answer.status == 200 and "bob" in await answer.text()
        answer = await http.get(base + "/policy", headers=html, ssl=without_cert)
        assert answer.status == 200
