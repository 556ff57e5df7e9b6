"""Normalising prediction inputs so the same content gets the same hash.

Unicode NFKC, casefold, whitespace collapsed; optionally quoted replies, e-mail
signatures and a leading salutation stripped first (the largest single lever for
near-duplicate recall on support e-mail). The hash is SHA-256: stable across processes and
machines, unlike ``hash()``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

import orjson

DEFAULT_OPTIONS = {"strip_quoted": True, "strip_signature": True, "strip_greeting": True}

# "On Tue, 3 Mar 2024, Ann <a@b.c> wrote:" and Outlook's "-----Original Message-----".
_REPLY_HEADER = re.compile(
    r"^\s*(on\b.{0,200}\bwrote:|-{2,}\s*original message\s*-{2,}|from:\s.+)\s*$",
    re.IGNORECASE,
)
_SIGNATURE_START = re.compile(
    r"^\s*(--\s*|(best|kind|warm)?\s*regards,?|thanks( again)?,?|thank you,?|cheers,?|"
    r"sincerely,?|sent from my \w+.*)\s*$",
    re.IGNORECASE,
)

_GREETING = re.compile(
    r"^\s*(hi|hello|hey|dear|greetings|good (morning|afternoon|evening))\b[^\n]{0,40}[,!:]?\s*$",
    re.IGNORECASE,
)


def strip_greeting(text: str) -> str:
    """Drop a salutation line ("Hi,", "Dear support team,") at the very start."""
    first, newline, rest = text.lstrip().partition("\n")
    return rest if newline and _GREETING.match(first) else text


def strip_quoted(text: str) -> str:
    """Drop ``>``-quoted lines and everything from a reply header on."""
    kept: list[str] = []
    for line in text.splitlines():
        if _REPLY_HEADER.match(line):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept)


def strip_signature(text: str) -> str:
    """Drop everything from the first sign-off line in the last part of the message."""
    lines = text.splitlines()
    first_candidate = max(1, len(lines) // 3)
    for index in range(first_candidate, len(lines)):
        if _SIGNATURE_START.match(lines[index]):
            return "\n".join(lines[:index])
    return text


def normalize_text(text: str, options: dict[str, Any] | None = None) -> str:
    """The canonical form of ``text`` used for hashing and shingling."""
    opts = {**DEFAULT_OPTIONS, **options} if options else DEFAULT_OPTIONS
    if opts["strip_quoted"]:
        text = strip_quoted(text)
    if opts["strip_signature"]:
        text = strip_signature(text)
    if opts["strip_greeting"]:
        text = strip_greeting(text)
    if not text.isascii():  # ASCII is already NFKC
        text = unicodedata.normalize("NFKC", text)
    # str.split() splits on exactly the characters ``\s`` matches (str.isspace): the same
    # result as collapsing runs of whitespace and stripping, without a regular expression.
    return " ".join(text.casefold().split())


def input_text(prediction_input: dict[str, Any] | None) -> str:
    """The text a prediction was made on; inputs without ``text`` use their canonical JSON."""
    data = prediction_input or {}
    text = data.get("text")
    if isinstance(text, str):
        return text
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def content_hash(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()
