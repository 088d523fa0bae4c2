"""The operator console: an aiohttp application Interlock serves on ``console_listen``.

Pages are rendered on the server (Jinja2, autoescaped) and work without
JavaScript; ``static/console.js`` adds the live layer (server-sent events,
the header's pending count, waiting ages, partial refreshes). Every asset is
served from memory by this application: no CDN, nothing fetched at run time.

The gate every request passes (:func:`Console._gate`):

1. Static assets and the sign-in page are open. Anything else needs a session
   (:mod:`interlock.console.sessions`); a page without one redirects to the
   sign-in page saying why (expired, signed out, forged), a fetch gets 401.
2. The session's principal is looked up again from its credential, then the
   authorization policy is asked for ``UseConsole`` (operators and admins:
   an agent's token is refused the console) and, by each handler, for the
   RPC its page or action corresponds to (the inbox is ``ListApprovals``,
   approving is ``ResolveApproval``), through :meth:`Guard.authorize`: one
   policy decides for the API and the console.
3. Every state-changing request (POST) must carry the session's CSRF token.

TLS: when the server has a certificate, the console serves HTTPS with it (a
client certificate is asked for, not required, when a client CA is set, so a
person may sign in with either). In the insecure development mode every page
carries a banner saying so.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from interlock.auth import (
    DEV_HEADER,
    Principal,
    authenticate,
    token_hash,
)
from interlock.console import live, pages
from interlock.console.sessions import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionError,
    SessionKeeper,
)
from interlock.console.shared import CONSOLE, PRINCIPAL, SESSION, Services, http_status
from interlock.console.views import pretty
from interlock.errors import InterlockError, Unauthenticated

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
OPEN_PATHS = ("/signin", "/static/", "/favicon.ico")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

COOKIE_GRACE_SECONDS = 300

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def peer_names(request: web.Request) -> list[str]:
    """The verified client certificate's common name, then its DNS SANs."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return []
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    names += [v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
    return names


def _cert_context(names: list[str]) -> Callable[[], dict[str, list[bytes]] | None]:
    return lambda: (
        {
            "x509_common_name": [n.encode() for n in names[:1]],
            "x509_subject_alternative_name": [n.encode() for n in names[1:]],
        }
        if names
        else None
    )


class Console:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.config = services.config
        self.sessions = SessionKeeper(
            Path(self.config.data_dir), self.config.console_session_ttl_seconds
        )
        self.secure = not self.config.insecure
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            auto_reload=False,
        )
        self.templates.filters.update(
            when=_when, age=_age, short=lambda r: str(r)[:12], pretty=pretty
        )
        for name in self.templates.list_templates(extensions=["html"]):
            self.templates.get_template(name)  # load once, at start-up
        self.static = {
            path.name: path.read_bytes()
            for path in (HERE / "static").iterdir()
            if path.suffix in STATIC_TYPES
        }
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.app = self._build()

    # Building and serving ----------------------------------------------------------

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app[CONSOLE] = self
        app.router.add_get("/static/{name}", self.static_file)
        app.router.add_get("/favicon.ico", _no_content)
        app.router.add_get("/signin", self.signin_page)
        app.router.add_post("/signin", self.signin)
        app.router.add_post("/signout", self.signout)
        pages.add_routes(app.router)
        live.add_routes(app.router)
        return app

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.config.insecure:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert_file, self.config.tls_key_file)
        if self.config.tls_client_ca_file:
            context.load_verify_locations(self.config.tls_client_ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL  # a token sign-in needs no certificate
        return context

    async def start(self) -> int:
        host, _, port = self.config.console_listen.rpartition(":")
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=self.ssl_context())
        await site.start()
        addresses = runner.addresses  # the bound (host, port, ...) of each socket
        self.port = int(addresses[0][1]) if addresses else int(port)
        log.info(
            "console on %s://%s:%d/",
            "https" if self.secure else "http",
            host.strip("[]"),
            self.port,
        )
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # The gate ------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if not request.path.startswith(OPEN_PATHS):
                try:
                    session = self.sessions.read(request.cookies.get(COOKIE))
                    principal = self.principal_of(session, request)
                except SessionError as exc:
                    return self._unsigned(request, str(exc))
                request[SESSION], request[PRINCIPAL] = session, principal
                await self.s.guard.authorize("UseConsole", principal, None)
                if request.method == "POST":
                    form = await request.post()
                    token = request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD) or "")
                    if not self.sessions.csrf_ok(session, token):
                        log.warning("console: %s without a valid CSRF token refused", request.path)
                        return self.error_page(
                            request,
                            403,
                            "Refused: this form's security token is missing or not yours "
                            "(CSRF check). Reload the page and try again.",
                        )
            response = await handler(request)
        except InterlockError as exc:
            response = self.error_page(request, http_status(exc), exc.message)
        except web.HTTPException:
            raise
        except Exception:  # a bug: say so without leaking internals
            log.exception("console: %s %s failed", request.method, request.path)
            response = self.error_page(request, 500, "Interlock failed to show this page.")
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def principal_of(self, session: Session, request: web.Request) -> Principal:
        """The session's principal, looked up again from its credential."""
        directory = self.s.directory
        if session.via == "dev":
            if directory is not None:
                raise SessionError("the server now authenticates; sign in again")
            return authenticate(None, [(DEV_HEADER, session.credential)], lambda: None)
        if directory is None:
            raise SessionError("the server is in development mode now; sign in again")
        directory.refresh()
        if session.via == "token":
            found = directory.tokens.get(session.credential)
            if found is None:
                raise SessionError("your token is no longer valid; sign in again")
            principal = Principal(found.id, found.kind, found.roles, found.agents, "token")
        else:
            names = peer_names(request)
            if session.credential not in names:
                raise SessionError("sign in again with your client certificate")
            try:
                principal = authenticate(directory, [], _cert_context(names))
            except Unauthenticated as exc:
                raise SessionError(exc.message) from None
        if principal.id != session.principal_id:
            raise SessionError("your credential now names someone else; sign in again")
        return principal

    def _unsigned(self, request: web.Request, why: str) -> web.StreamResponse:
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            query = urllib.parse.urlencode({"why": why, "next": request.path_qs})
            raise web.HTTPSeeOther(f"/signin?{query}")
        return web.json_response({"error": why, "signin": "/signin"}, status=401)

    # Rendering ---------------------------------------------------------------------

    def render(
        self, request: web.Request, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        session: Session | None = request.get(SESSION)
        principal: Principal | None = request.get(PRINCIPAL)
        # A page that lists the pending approvals passes its own count, so the
        # header and the list it heads always agree.
        context.setdefault("pending", len(self.s.approvals.pending_since()))
        page = self.templates.get_template(template).render(
            principal=principal,
            csrf=self.sessions.csrf_token(session) if session else "",
            insecure=self.config.insecure,
            authenticates=self.s.directory is not None,
            path=request.path,
            **context,
        )
        return web.Response(text=page, status=status, content_type="text/html")

    def error_page(self, request: web.Request, status: int, message: str) -> web.Response:
        if "text/html" not in request.headers.get("Accept", "") and request.method == "GET":
            return web.json_response({"error": message}, status=status)
        return self.render(
            request, "error.html", status=status, status_code=status, message=message
        )

    # Static, sign-in, sign-out -------------------------------------------------------

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self.static.get(name)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=body,
            headers={
                "Content-Type": STATIC_TYPES[Path(name).suffix],
                "Cache-Control": "no-cache",
            },
        )

    async def signin_page(
        self, request: web.Request, status: int = 200, error: str = ""
    ) -> web.Response:
        return self.render(
            request,
            "signin.html",
            status=status,
            why=request.query.get("why", ""),
            next=_safe_next(request.query.get("next", "")),
            error=error,
            certificate=bool(peer_names(request)),
        )

    async def signin(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token") or "").strip()
        target = _safe_next(str(form.get("next") or "")) or "/approvals"
        directory = self.s.directory
        try:
            if directory is None:
                name = str(form.get("name") or "").strip() or "dev"
                principal = authenticate(None, [(DEV_HEADER, name)], lambda: None)
                credential = principal.id
            elif token:
                principal = authenticate(
                    directory, [("authorization", f"Bearer {token}")], lambda: None
                )
                credential = token_hash(token)
            else:
                names = peer_names(request)
                principal = authenticate(directory, [], _cert_context(names))
                credential = names[0]
            await self.s.guard.authorize("UseConsole", principal, None)
        except Unauthenticated as exc:
            return await self.signin_page(request, 401, exc.message)
        except InterlockError as exc:
            return await self.signin_page(request, http_status(exc), exc.message)
        cookie, _session = self.sessions.issue(principal.id, principal.via, credential)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            cookie,
            # A little longer than the session, so the server can say it expired.
            max_age=int(self.config.console_session_ttl_seconds) + COOKIE_GRACE_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )
        log.info("console: %s signed in (%s)", principal.id, principal.via)
        raise response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        await self.sessions.revoke(request[SESSION])
        response = web.HTTPSeeOther("/signin?why=" + urllib.parse.quote("you signed out"))
        response.del_cookie(COOKIE, path="/")
        raise response


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


def _when(seconds: float) -> str:
    if not seconds:
        return ""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no host, no //)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


__all__ = ["CONSOLE", "PRINCIPAL", "SESSION", "Console", "Services", "http_status"]
