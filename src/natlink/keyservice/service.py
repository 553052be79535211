"""The key service: an HTTP service that evaluates the OPRF on blinded elements for providers.

Endpoints (JSON; every one but ``/v1/health`` needs ``Authorization: Bearer PROVIDER:CREDENTIAL``,
the credential as hex):

* ``POST /v1/evaluate`` ``{"purpose", "key_version", "blinded": base64(32-byte elements ...)}``
  -> ``{"purpose", "key_version", "count", "public_key", "evaluated": base64, "proof": base64}``:
  the evaluated elements in order and one batch DLEQ proof (RFC 9497) over all of them;
* ``GET /v1/public-key?purpose=P&key_version=N`` -> ``{"purpose", "key_version", "public_key"}``;
* ``GET /v1/health`` -> ``{"status": "ok"}`` (no authentication, nothing about keys).

Refusals are named, and never echo what was sent: 401 ``Unauthenticated`` (no or a wrong
credential, an unknown provider), 429 ``RateLimited`` (over the provider's evaluations per
window; with ``Retry-After``), 400 ``MalformedRequest``, 404 ``NotFound`` / ``UnknownKeyVersion``,
410 ``RetiredKeyVersion``, 413 ``RequestTooLarge``.

What the service keeps: the master key of each key version in memory (resolved from its
reference, :mod:`natlink.tokens.keys`), per-purpose OPRF keys derived from it on first use, a
counter per provider and window (in memory, or in the ``rate_limit_state`` file so that a
restart does not reset it), and the audit log: one JSON line per request with the time,
provider, purpose, key version, count of elements and outcome. Never a value (it sees none), a
blinded or evaluated element, or a credential: blinded elements live for one request.
Credentials are checked against their SHA-256 in the config, in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import ssl
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from natlink.config.keyservice import PUBLIC_KEY_PREFIX, KeyServiceConfig
from natlink.errors import ConfigError, KeyServiceAuthError, KeyServiceRateLimitedError, KeyServiceRequestError
from natlink.keyservice import oprf
from natlink.tokens import keys
from natlink.tokens.keys import KeyMaterial

__all__ = ["AuditLog", "KeyService", "RateLimiter", "credential_sha256", "make_server", "serve"]

log = logging.getLogger(__name__)

_UNKNOWN = "unknown"
_DUMMY_HASH = hashlib.sha256(b"natlink/keyservice/no-such-provider").hexdigest()


def credential_sha256(credential_hex: str) -> str:
    """What the service config stores for a credential (hex text, as the client sends it)."""
    return hashlib.sha256(credential_hex.strip().lower().encode("ascii")).hexdigest()


class AuditLog:
    """JSON lines: time, provider, purpose, key version, count, outcome. Counts, never values."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, *, provider: str, purpose: str | None, key_version: int | None, count: int, outcome: str) -> None:
        line = json.dumps({
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "provider": provider, "purpose": purpose, "key_version": key_version, "count": count, "outcome": outcome,
        }, sort_keys=True)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class RateLimiter:
    """Evaluations per fixed window and provider: a request fits whole or is refused whole.

    With a ``state`` file the counters survive a restart: each provider's window start (wall
    clock, seconds since the epoch) and evaluations used are written (mode 0600, replaced
    atomically) after every request they count, and read back at start. Counts only, as in the
    audit log. Without one they are in memory (a restart resets them)."""

    def __init__(self, clock: Callable[[], float] | None = None, *, state: str | Path | None = None) -> None:
        self._clock = clock or (time.time if state is not None else time.monotonic)
        self._state = Path(state) if state is not None else None
        self._used: dict[str, tuple[float, int]] = self._load() if self._state is not None else {}
        self._lock = threading.Lock()

    def take(self, provider: str, count: int, limit: int, window: float) -> float:
        """0 when ``count`` evaluations fit (and are counted), else the seconds until the window ends."""
        now = self._clock()
        with self._lock:
            start, used = self._used.get(provider, (now, 0))
            if now < start:  # a clock set back: the window starts again, the evaluations stay counted
                start = now
            if now - start >= window:
                start, used = now, 0
            if used + count > limit:
                self._used[provider] = (start, used)
                return max(start + window - now, 0.001)
            self._used[provider] = (start, used + count)
            self._save()
            return 0.0

    def _load(self) -> dict[str, tuple[float, int]]:
        assert self._state is not None
        if not self._state.exists():
            return {}
        try:
            raw = json.loads(self._state.read_text(encoding="utf-8"))
            return {str(p): (float(v["window_start"]), int(v["used"])) for p, v in raw["providers"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"{self._state}: not a rate-limit state file (JSON with providers' window_start and used)") from None

    def _save(self) -> None:
        if self._state is None:
            return
        data = json.dumps({"providers": {p: {"window_start": s, "used": u} for p, (s, u) in sorted(self._used.items())}})
        self._state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state.with_name(self._state.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._state)


class KeyService:
    """The service's logic, apart from HTTP: authenticate, limit, evaluate, audit."""

    def __init__(self, cfg: KeyServiceConfig, *, clock: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        # Every live version's master key is resolved (and checked) at start, not on first use.
        self._masters: dict[int, KeyMaterial] = {k.version: keys.resolve(k.key) for k in cfg.keys if not k.retired}
        self._retired = {k.version for k in cfg.keys if k.retired}
        self._purpose_keys: dict[tuple[int, str], oprf.PurposeKey] = {}
        self._lock = threading.Lock()
        self.limiter = RateLimiter(clock, state=cfg.rate_limit_state)
        self.audit = AuditLog(cfg.audit_log)

    def authenticate(self, header: str | None) -> str:
        """The provider a ``Bearer PROVIDER:CREDENTIAL`` header proves, else KeyServiceAuthError."""
        scheme, _, token = (header or "").partition(" ")
        name, _, credential = token.partition(":")
        known = self.cfg.providers.get(name) if scheme == "Bearer" else None
        expected = known.credential_sha256 if known else _DUMMY_HASH
        try:
            presented = credential_sha256(credential) if credential else ""
        except UnicodeEncodeError:
            presented = ""
        if not (hmac.compare_digest(presented, expected) and known):
            # A configured provider's name (never a caller's free text) goes into the audit line:
            # failed attempts against a provider show as such.
            raise _refusal(KeyServiceAuthError("unauthenticated: a known provider and its credential are required"),
                           401, "Unauthenticated", provider=name if known else _UNKNOWN)
        return name

    def purpose_key(self, purpose: str, key_version: int | None) -> oprf.PurposeKey:
        version = self.cfg.active_version if key_version is None else key_version
        if version in self._retired:
            raise _refusal(KeyServiceRequestError(f"key version {version} is retired"), 410, "RetiredKeyVersion")
        master = self._masters.get(version)
        if master is None:
            raise _refusal(KeyServiceRequestError(f"no key version {version}"), 404, "UnknownKeyVersion")
        with self._lock:
            key = self._purpose_keys.get((version, purpose))
            if key is None:
                key = self._purpose_keys[(version, purpose)] = oprf.PurposeKey(master, purpose)
        return key

    def evaluate(self, provider: str, purpose: str, key_version: int | None, blinded: bytes) -> dict[str, Any]:
        count = len(blinded) // oprf.ELEMENT_BYTES
        if count > self.cfg.max_batch:
            raise KeyServiceRequestError(f"at most {self.cfg.max_batch} elements per request, got {count}")
        key = self.purpose_key(purpose, key_version)  # before the limiter: a bad request costs nothing
        limit = self.cfg.limit_for(provider)
        wait = self.limiter.take(provider, count, limit.evaluations, limit.window_seconds)
        if wait:
            raise _refusal(
                KeyServiceRateLimitedError(f"over {limit.evaluations} evaluations per {limit.window_seconds:g} s; retry in {wait:.0f} s"),
                429, "RateLimited", retry_after=max(1, int(wait + 0.999)),
            )
        evaluated, proof = key.evaluate(blinded)
        return {
            "purpose": purpose, "key_version": key_version or self.cfg.active_version, "count": count,
            "public_key": PUBLIC_KEY_PREFIX + key.public_key.hex(),
            "evaluated": base64.b64encode(evaluated).decode("ascii"), "proof": base64.b64encode(proof).decode("ascii"),
        }


def _refusal(error: Exception, status: int, code: str, **extra: Any) -> Exception:
    """``error`` marked with the HTTP status and error name the handler answers with."""
    error.http = (status, code, extra)  # type: ignore[attr-defined]
    return error


def _error_name(error: Exception) -> tuple[int, str, dict[str, Any]]:
    if hasattr(error, "http"):
        return error.http
    if isinstance(error, KeyServiceAuthError):
        return 401, "Unauthenticated", {}
    return 400, "MalformedRequest", {}


class _Handler(BaseHTTPRequestHandler):
    server_version = "natlink-keyservice/1"
    sys_version = ""
    service: KeyService  # set on the subclass made by make_server

    timeout = 60  # seconds a connection may stay idle (a slow or stalled client frees its thread)

    def setup(self) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop,
        # so one stalled client cannot hold up the others.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        # The stdlib logs the request line (with its query string) to stderr: the audit log is the record.
        return

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, error: Exception, provider: str, purpose: str | None, version: int | None, count: int) -> None:
        status, name, extra = _error_name(error)
        provider = extra.get("provider", provider)
        self.service.audit.write(provider=provider, purpose=purpose, key_version=version, count=count, outcome=name)
        self.close_connection = True  # the body may be unread
        headers = {}
        if "retry_after" in extra:
            headers["Retry-After"] = str(extra["retry_after"])
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="natlink-keyservice"'
        self._send(status, {"error": name, "message": str(error)}, headers)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        if url.path == "/v1/health":
            self._send(200, {"status": "ok"})
            return
        if url.path != "/v1/public-key":
            self._send(404, {"error": "NotFound", "message": "no such endpoint"})
            return
        provider, purpose, version = _UNKNOWN, None, None
        try:
            provider = self.service.authenticate(self.headers.get("Authorization"))
            query = parse_qs(url.query, max_num_fields=4)
            purpose = oprf.check_purpose((query.get("purpose") or [None])[0])
            version = _version((query.get("key_version") or [None])[0])
            key = self.service.purpose_key(purpose, version)
        except (KeyServiceAuthError, KeyServiceRequestError, ValueError) as error:
            self._refuse(error if not isinstance(error, ValueError) else KeyServiceRequestError("bad query"), provider, purpose, version, 0)
            return
        self.service.audit.write(provider=provider, purpose=purpose, key_version=version, count=0, outcome="public_key")
        self._send(200, {"purpose": purpose, "key_version": version or self.service.cfg.active_version,
                         "public_key": PUBLIC_KEY_PREFIX + key.public_key.hex()})

    def do_POST(self) -> None:  # noqa: N802
        provider, purpose, version, count = _UNKNOWN, None, None, 0
        try:
            if urlsplit(self.path).path != "/v1/evaluate":
                self._send(404, {"error": "NotFound", "message": "no such endpoint"})
                return
            provider = self.service.authenticate(self.headers.get("Authorization"))
            request = self._read_json()
            purpose = oprf.check_purpose(request.get("purpose"))
            version = _version(request.get("key_version"))
            blinded = _base64(request.get("blinded"))
            count = len(blinded) // oprf.ELEMENT_BYTES
            answer = self.service.evaluate(provider, purpose, version, blinded)
        except (KeyServiceAuthError, KeyServiceRateLimitedError, KeyServiceRequestError) as error:
            self._refuse(error, provider, purpose, version, count)
            return
        self.service.audit.write(provider=provider, purpose=purpose, key_version=answer["key_version"], count=count, outcome="ok")
        self._send(200, answer)

    def _read_json(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise KeyServiceRequestError("a Content-Length is required") from None
        most = self.service.cfg.max_batch * 48 + 4096  # base64 of 32-byte elements + the JSON around them
        if length <= 0 or length > most:
            raise _refusal(KeyServiceRequestError(f"the body must be 1 to {most} bytes, got {length}"), 413, "RequestTooLarge")
        body = self.rfile.read(length)
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeyServiceRequestError("the body is not JSON") from None
        if not isinstance(request, dict):
            raise KeyServiceRequestError("the body must be a JSON object")
        return request


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise KeyServiceRequestError("key_version must be a positive integer")
    return value


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise KeyServiceRequestError("blinded must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyServiceRequestError("blinded is not valid base64") from None


def make_server(cfg: KeyServiceConfig, *, service: KeyService | None = None) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for ``cfg`` (``port: 0``: any free port)."""
    service = service or KeyService(cfg)
    handler = type("KeyServiceHandler", (_Handler,), {"service": service})
    server = ThreadingHTTPServer((cfg.host, cfg.port), handler)
    server.daemon_threads = True
    if cfg.tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cfg.tls.certificate, cfg.tls.private_key)
        if cfg.tls.client_ca:
            context.load_verify_locations(cfg.tls.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    # A failed handshake or a dropped connection is the client's problem: no traceback on stderr.
    server.handle_error = lambda _request, _address: log.debug("key service: a connection failed", exc_info=True)
    return server


def serve(cfg: KeyServiceConfig, *, ready: Callable[[str], None] = lambda _url: None) -> None:
    """Serve until interrupted; ``ready`` gets the URL once the socket is bound."""
    server = make_server(cfg)
    host, port = server.server_address[:2]
    ready(f"{'https' if cfg.tls else 'http'}://{host}:{port}")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
