"""A provider's client of the key service: inner tokens for values, without the master key.

:meth:`KeyServiceClient.inner_tokens` takes one purpose and many values, deduplicates them, and
for each batch of ``batch_size`` distinct values blinds each with a fresh random scalar
(:func:`natlink.keyservice.oprf.blind`), sends the blinded elements in one request, verifies the
service's batch proof against the public key *pinned in the provider's config* (never the one the
service sends), unblinds, and returns one 64-hex inner token per value, in order.

Nothing is kept between calls: no value -> token cache (in memory or on disk), no blinding
state beyond its request. A provider's files hold its credential and pinned public keys, which
reverse nothing.

Failures are named (:mod:`natlink.errors`): connection failures, timeouts and HTTP 5xx are
retried with exponential backoff (``retries``, ``backoff_seconds`` .. ``max_backoff_seconds``),
then :class:`~natlink.errors.KeyServiceUnavailableError`; 401/403
:class:`~natlink.errors.KeyServiceAuthError` at once; 429 waits for ``Retry-After`` while
``rate_limit_wait_seconds`` allows, then :class:`~natlink.errors.KeyServiceRateLimitedError`;
other refusals :class:`~natlink.errors.KeyServiceRequestError` with the service's error name;
a proof that does not verify :class:`~natlink.errors.KeyServiceProofError`.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Sequence

from natlink.config.keyservice import PUBLIC_KEY_PREFIX, KeyServiceClientConfig
from natlink.errors import (
    KeyServiceAuthError,
    KeyServiceProofError,
    KeyServiceRateLimitedError,
    KeyServiceRequestError,
    KeyServiceUnavailableError,
)
from natlink.keyservice import oprf
from natlink.tokens import keys

__all__ = ["KeyServiceClient"]

log = logging.getLogger(__name__)


class KeyServiceClient:
    """One provider's session with the key service (credential resolved from its reference)."""

    def __init__(self, cfg: KeyServiceClientConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self._authorization = f"Bearer {cfg.provider}:{keys.resolve_secret_text(cfg.credential)}"
        self._sleep = sleep
        self._context = None
        if cfg.url.startswith("https://"):
            self._context = ssl.create_default_context(cafile=cfg.tls_ca)
            if cfg.tls_client_certificate:
                self._context.load_cert_chain(cfg.tls_client_certificate, cfg.tls_client_key)
        self.requests = 0  # requests answered (for tests and benchmarks)

    def __repr__(self) -> str:
        return f"KeyServiceClient(url={self.cfg.url!r}, provider={self.cfg.provider!r}, key_version={self.cfg.key_version})"

    def __reduce__(self):
        raise KeyServiceAuthError("a key service client holds a credential and cannot be pickled; pass its config")

    def pinned_key(self, purpose: str) -> bytes:
        pinned = self.cfg.pinned(oprf.check_purpose(purpose))
        if pinned is None:
            raise KeyServiceProofError(
                f"no public key is pinned for purpose {purpose!r} (key version {self.cfg.key_version}): "
                "add it to the provider's key service config (`natlink keyservice public-keys` at the custodian; "
                "`--dataset` with the dataset's config for the purposes of its declared identifiers)"
            )
        return pinned

    def inner_tokens(self, purpose: str, values: Sequence[str]) -> list[str]:
        """One 64-hex inner token per value (in order); each distinct value is evaluated once."""
        public_key = self.pinned_key(purpose)
        distinct = list(dict.fromkeys(values))
        tokens: dict[str, str] = {}
        for start in range(0, len(distinct), self.cfg.batch_size):
            chunk = distinct[start:start + self.cfg.batch_size]
            outputs = self._evaluate(purpose, chunk, public_key)
            tokens.update(zip(chunk, (oprf.inner_token(o) for o in outputs)))
        try:
            return [tokens[v] for v in values]
        finally:
            tokens.clear()

    def public_key(self, purpose: str) -> bytes:
        """The service's public key for ``purpose`` at this key version (compare with the pin)."""
        query = urllib.parse.urlencode({"purpose": oprf.check_purpose(purpose), "key_version": self.cfg.key_version})
        answer = self._request("GET", f"/v1/public-key?{query}", None)
        return _public_key(answer)

    def _evaluate(self, purpose: str, values: list[str], public_key: bytes) -> list[bytes]:
        batch = oprf.blind(values)
        body = {"purpose": purpose, "key_version": self.cfg.key_version, "blinded": base64.b64encode(batch.blinded).decode("ascii")}
        answer = self._request("POST", "/v1/evaluate", body)
        if answer.get("purpose") != purpose or answer.get("key_version") != self.cfg.key_version:
            raise KeyServiceProofError("the key service answered for another purpose or key version")
        if _public_key(answer) != public_key:
            raise KeyServiceProofError(
                f"the key service's public key for {purpose!r} (key version {self.cfg.key_version}) is not the pinned one"
            )
        try:
            evaluated, proof = base64.b64decode(answer["evaluated"], validate=True), base64.b64decode(answer["proof"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise KeyServiceProofError("the key service's answer lacks evaluated elements or a proof") from None
        return batch.finalize(evaluated, proof, public_key)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        attempt, waited = 0, 0.0
        while True:
            request = urllib.request.Request(self.cfg.url + path, data=data, method=method)
            request.add_header("Authorization", self._authorization)
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self.cfg.timeout_seconds, context=self._context) as response:
                    answer = json.loads(response.read())
                self.requests += 1
                return answer
            except urllib.error.HTTPError as error:
                status, name, retry_after = error.code, _error_name(error), error.headers.get("Retry-After")
                error.close()
                if status in (401, 403):
                    raise KeyServiceAuthError(f"the key service refused provider {self.cfg.provider!r}: {name} (HTTP {status})") from None
                if status == 429:
                    pause = float(retry_after) if retry_after and retry_after.isdigit() else self.cfg.backoff_seconds
                    if waited + pause > self.cfg.rate_limit_wait_seconds:
                        raise KeyServiceRateLimitedError(
                            f"provider {self.cfg.provider!r} is over its rate limit at the key service (HTTP 429; retry after {pause:.0f} s)"
                        ) from None
                    waited += pause
                    self._sleep(pause)
                    continue
                if status < 500:
                    raise KeyServiceRequestError(f"the key service refused the request: {name} (HTTP {status})") from None
                failure = f"HTTP {status} {name}"
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as error:
                failure = type(getattr(error, "reason", error)).__name__
            except json.JSONDecodeError:
                failure = "an answer that is not JSON"
            if attempt >= self.cfg.retries:
                raise KeyServiceUnavailableError(
                    f"the key service at {self.cfg.url} did not answer after {attempt + 1} attempts (last: {failure})"
                )
            pause = min(self.cfg.backoff_seconds * 2 ** attempt, self.cfg.max_backoff_seconds)
            attempt += 1
            log.warning("key service %s: %s; retry %d of %d in %.1f s", self.cfg.url, failure, attempt, self.cfg.retries, pause)
            self._sleep(pause)


def _error_name(error: urllib.error.HTTPError) -> str:
    try:
        name = json.loads(error.read()).get("error")
    except Exception:  # noqa: BLE001 - any unreadable body: the status says enough
        return "unknown"
    return name if isinstance(name, str) and name.isalnum() else "unknown"


def _public_key(answer: dict[str, Any]) -> bytes:
    key = answer.get("public_key")
    if not isinstance(key, str) or not key.startswith(PUBLIC_KEY_PREFIX):
        raise KeyServiceProofError("the key service's answer has no public key")
    try:
        return bytes.fromhex(key[len(PUBLIC_KEY_PREFIX):])
    except ValueError:
        raise KeyServiceProofError("the key service's public key is not hex") from None
