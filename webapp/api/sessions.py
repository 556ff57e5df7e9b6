"""No cookie session on the JSON API.

The API authenticates with keys, never with the login cookie, and nothing under ``/api/``
reads or writes ``session``. Opening Flask's signed-cookie session still builds an
itsdangerous serializer on every request (~6 % of a single-event feedback request's
Python); on the API we hand Flask its null session instead, which it never saves.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from .problems import API_PREFIX


class SessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(API_PREFIX):
            return self.make_null_session(app)
        return super().open_session(app, request)
