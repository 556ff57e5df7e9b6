"""The app's feedback-token signer (built once per app from its secret key)."""

from __future__ import annotations

from flask import current_app

from corrigenda.tokens import TokenSigner

from ..extensions import get_settings


def token_signer() -> TokenSigner:
    signer = current_app.extensions.get("corrigenda.token_signer")
    if signer is None:
        signer = TokenSigner(current_app.config["SECRET_KEY"], get_settings().token_max_age_seconds)
        current_app.extensions["corrigenda.token_signer"] = signer
    return signer
