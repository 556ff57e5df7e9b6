"""Signed feedback tokens: what lets a browser send feedback on one real prediction.

A token is an HMAC-SHA256-signed, URL-safe string (itsdangerous) over the project id, the
prediction's row id and client id, an optional end-user id and an expiry. The product's
backend gets one per logged prediction and hands it to the widget; with a publishable key,
feedback without a valid token for its prediction is refused, so nobody can post opinions
about inputs the product never served.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "corrigenda.feedback-token.v1"
VERIFIED_CACHE_SIZE = 10_000


class TokenError(ValueError):
    """The token is malformed, forged, expired or for something else; the message says which."""


@dataclass(frozen=True, slots=True)
class FeedbackToken:
    project_id: int
    prediction_id: int
    prediction: str
    end_user: str | None
    expires_at: int

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires_at


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})


class TokenSigner:
    """Signs and verifies feedback tokens with one secret key (build it once, reuse it)."""

    def __init__(self, secret_key: str, max_age_seconds: int) -> None:
        self._serializer = _serializer(secret_key)
        self.max_age_seconds = max_age_seconds
        # Tokens whose signature checked out: a page sends several events per token. Only the
        # signature check is cached; project and expiry are checked on every call.
        self._verified: dict[str, FeedbackToken] = {}

    def sign(
        self, *, project_id: int, prediction_id: int, prediction: str, end_user: str | None = None
    ) -> str:
        expires_at = int(time.time()) + self.max_age_seconds
        payload = [project_id, prediction_id, prediction, end_user or 0, expires_at]
        return str(self._serializer.dumps(payload))

    def verify(self, token: str, *, project_id: int) -> FeedbackToken:
        """The token's claims, or TokenError if it is not valid for ``project_id`` right now."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._load(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()  # crude but O(1) and bounded; a miss only costs an HMAC
            self._verified[token] = claims
        if claims.project_id != project_id:
            raise TokenError("the token was issued for another project")
        if claims.expired():
            raise TokenError("the token has expired; log the prediction again for a fresh one")
        return claims

    def _load(self, token: str) -> FeedbackToken:
        try:
            payload = self._serializer.loads(token)
            project_id, prediction_id, prediction, end_user, expires_at = payload
        except BadSignature as exc:
            raise TokenError("the token's signature is not valid") from exc
        except (TypeError, ValueError) as exc:
            raise TokenError("the token is malformed") from exc
        return FeedbackToken(
            int(project_id), int(prediction_id), str(prediction), end_user or None, int(expires_at)
        )
