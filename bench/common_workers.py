"""Shared pieces of the workers benchmarks: a throw-away PostgreSQL database and a corpus of
support e-mails with planted near-duplicates (edits, greetings, signatures, quoted replies)."""

from __future__ import annotations

import os
import random
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN_URL = os.environ.get(
    "CORRIGENDA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

GREETINGS = ["", "Hi,", "Hello team,", "Dear support,", "Hey there,"]
SIGNATURES = [
    "",
    "Thanks,\nAnn",
    "Best regards,\nBob Stone\nACME Ltd",
    "--\nSent from my phone",
    "Cheers,\nCy",
]
QUOTES = [
    "",
    "\n\nOn Mon, 3 Mar 2025, Support <help@example.com> wrote:\n"
    "> Thank you for contacting us.\n> We will reply soon.",
]


@contextmanager
def throwaway_database() -> Iterator[str]:
    name = f"corrigenda_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def body(rng: random.Random, words: list[str]) -> list[str]:
    # Zipf-like word choice: common words repeat across unrelated messages, as in real mail.
    return [
        words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)]
        if rng.random() < 0.3
        else rng.choice(words)
        for _ in range(rng.randint(15, 60))
    ]


def edit(rng: random.Random, tokens: list[str], words: list[str]) -> list[str]:
    """A near-duplicate: one to three word substitutions, insertions or deletions."""
    tokens = list(tokens)
    for _ in range(rng.randint(1, 3)):
        position = rng.randrange(len(tokens))
        action = rng.random()
        if action < 0.4:
            tokens[position] = rng.choice(words)
        elif action < 0.7:
            tokens.insert(position, rng.choice(words))
        elif len(tokens) > 10:
            del tokens[position]
    return tokens


def dress(rng: random.Random, tokens: list[str]) -> str:
    greeting = rng.choice(GREETINGS)
    text = " ".join(tokens)
    if rng.random() < 0.3:
        text = text.capitalize()
    return "\n".join(p for p in (greeting, text, "", rng.choice(SIGNATURES)) if p) + rng.choice(
        QUOTES
    )


def corpus(n: int, duplicate_share: float = 0.2, seed: int = 42) -> tuple[list[str], list[int]]:
    """``n`` texts and the planted group of each (near-duplicates share their base's group)."""
    texts: list[str] = []
    groups: list[int] = []
    for chunk_texts, chunk_groups in corpus_chunks(n, n or 1, duplicate_share, seed):
        texts += chunk_texts
        groups += chunk_groups
    return texts, groups


def corpus_chunks(
    n: int, chunk: int, duplicate_share: float = 0.2, seed: int = 42
) -> Iterator[tuple[list[str], list[int]]]:
    """The same texts and groups as ``corpus``, ``chunk`` at a time, so a 1M-text run does not
    hold its input in memory: the planted bases are kept as word numbers (2 bytes a word)."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    number = {word: i for i, word in enumerate(words)}
    flat = array("H")  # every base's word numbers, one after another
    starts = array("Q", [0])  # base g is flat[starts[g]:starts[g + 1]]
    texts: list[str] = []
    groups: list[int] = []
    for _ in range(n):
        if len(starts) > 1 and rng.random() < duplicate_share:
            group = rng.randrange(len(starts) - 1)
            base = [words[i] for i in flat[starts[group] : starts[group + 1]]]
            texts.append(dress(rng, edit(rng, base, words)))
        else:
            group = len(starts) - 1
            tokens = body(rng, words)
            flat.extend(number[word] for word in tokens)
            starts.append(len(flat))
            texts.append(dress(rng, tokens))
        groups.append(group)
        if len(texts) == chunk:
            yield texts, groups
            texts, groups = [], []
    if texts:
        yield texts, groups


def pair_scores(groups: list[int], clusters: list[int]) -> tuple[float, float]:
    """Pairwise precision and recall of ``clusters`` against the planted ``groups``."""

    def pairs(counts: Counter[object]) -> int:
        return sum(c * (c - 1) // 2 for c in counts.values())

    together = pairs(Counter(zip(groups, clusters, strict=True)))
    predicted, planted = pairs(Counter(clusters)), pairs(Counter(groups))
    return (together / predicted if predicted else 1.0, together / planted if planted else 1.0)
