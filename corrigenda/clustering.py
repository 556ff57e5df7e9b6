"""Near-duplicate clustering: numpy-vectorised MinHash, signatures kept in the database.

Why our own MinHash rather than datasketch: the measured facts in the workers issue (and
the figures in docs/benchmarks.md) show a vectorised numpy pipeline computing an order of
magnitude more signatures per second than datasketch's bulk path, and datasketch's default
banding (threshold 0.8) misses ~13 % of planted near-duplicates. We band for a lower
threshold and verify every candidate by the signatures' estimated Jaccard similarity, so
recall comes from the banding and precision from the check. 8 bands × 3 rows verified at
0.5 (recall 0.973 on the planted benchmark) replaced 24 × 4 verified at 0.6 (0.955).

The LSH buckets are not a table: a cluster's band keys follow from its stored signature, and
each process keeps them in memory (``BandIndex``), synchronised with the database under the
project's processing lock. A B-tree of one row per (band key, cluster) was what bounded the
bulk path: at a million texts its random inserts into an index larger than the buffer
cache took over a third of the time, growing with the table (docs/benchmarks.md).

Matching is vectorised: band keys of a whole batch are looked up in the index at once,
only the candidates' signatures are read (ONE statement), candidate pairs found by sorting,
similarities computed by numpy; only texts that have a candidate at all go through the
(order-dependent) greedy choice in Python. A batch gives the same
clusters as the same texts sent one by one (tested).

All hashing is seeded and stable across processes (tabulation hashing of the UTF-8 bytes
and fixed universal-hash coefficients); Python's salted ``hash()`` is never used, because
signatures are stored and every worker must derive the same band keys from them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import event, text
from sqlmodel import Session, col, select

from .bulk import array_literal, chunks, dialect, insert_ignore, lock_project
from .models import Cluster, ClusterContent, utcnow
from .normalize import content_hash, normalize_text

NUM_PERM = 128
BANDS = 8
ROWS = 3
DEFAULT_THRESHOLD = 0.5
MAX_CHARS = 20_000
CHUNK_SHINGLES = 1 << 12
TEXTS_PER_GROUP = 4096

_MASK32 = np.uint64(0xFFFFFFFF)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_rng = np.random.default_rng(0x5EED_C0DE)
_TABLE = _rng.integers(0, np.iinfo(np.uint64).max, size=(32, 256), dtype=np.uint64)
_TABLE_FLAT = _TABLE.ravel()
_LENGTH_SALT = _rng.integers(0, np.iinfo(np.uint64).max, size=64, dtype=np.uint64)
# Multiply-add-shift hashing of 32-bit keys with 64-bit coefficients (strongly universal).
_PERM_A = _rng.integers(0, np.iinfo(np.uint64).max, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
_PERM_B = _rng.integers(0, np.iinfo(np.uint64).max, size=NUM_PERM, dtype=np.uint64)
_BAND_SALT = _rng.integers(0, np.iinfo(np.uint64).max, size=BANDS, dtype=np.uint64)
_EMPTY_SHINGLE = np.uint64(0x1234_5678_9ABC_DEF1)


def _token_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Stable 64-bit hashes of the space-separated tokens of all texts, and each token's text."""
    joined = "\x00".join(t.replace("\x00", " ")[:MAX_CHARS] for t in texts).encode("utf-8")
    data = np.frombuffer(joined, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    padded = np.ones(data.size + 2, dtype=bool)
    np.logical_or(data == 32, data == 0, out=padded[1:-1])
    starts = np.flatnonzero(padded[:-2] & ~padded[1:-1])
    ends = np.flatnonzero(~padded[1:-1] & padded[2:]) + 1
    if starts.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    lengths = ends - starts
    first_in_token = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    offset = np.arange(int(lengths.sum())) - np.repeat(first_in_token, lengths)
    positions = offset + np.repeat(starts, lengths)
    cells = np.minimum(offset, 31) * 256 + data[positions]
    contributions = _TABLE_FLAT.take(cells)
    hashes = np.bitwise_xor.reduceat(contributions, first_in_token)
    hashes ^= _LENGTH_SALT[np.minimum(lengths, 63)]
    text_of_token = np.searchsorted(np.flatnonzero(data == 0), starts)
    return hashes, text_of_token


def _shingles(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word-bigram shingles (a lone word is its own shingle; empty text gets a constant)."""
    tokens, owner = _token_hashes(texts)
    same_text = owner[:-1] == owner[1:]
    rotated = (tokens[:-1] << np.uint64(17)) | (tokens[:-1] >> np.uint64(47))
    bigrams = (rotated ^ tokens[1:]) * _MIX
    counts = np.bincount(owner, minlength=len(texts))
    singles = counts[owner] == 1
    empty = np.flatnonzero(counts == 0)
    values = np.concatenate(
        (bigrams[same_text], tokens[singles], np.full(empty.size, _EMPTY_SHINGLE))
    )
    owners = np.concatenate((owner[:-1][same_text], owner[singles], empty))
    order = np.argsort(owners, kind="stable")
    return values[order], owners[order]


def minhash(texts: Sequence[str]) -> np.ndarray:
    """MinHash signatures (``len(texts)`` × 128, uint32) of already-normalised texts."""
    signatures = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    # Texts go through tokenising in groups so temporary per-byte arrays stay small.
    for start in range(0, len(texts), TEXTS_PER_GROUP):
        group = texts[start : start + TEXTS_PER_GROUP]
        signatures[start : start + len(group)] = _minhash_group(group)
    return signatures


def _minhash_group(texts: Sequence[str]) -> np.ndarray:
    values, owners = _shingles(texts)
    signatures = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    starts = np.searchsorted(owners, np.arange(len(texts)))
    bounds = np.append(starts, owners.size)
    first = 0
    while first < len(texts):
        last = int(np.searchsorted(bounds, bounds[first] + CHUNK_SHINGLES, side="right")) - 1
        last = min(max(last, first + 1), len(texts))
        lo, hi = int(bounds[first]), int(bounds[last])
        signatures[first:last] = _minhash_block(values[lo:hi], bounds[first:last] - lo)
        first = last
    return signatures


def _minhash_block(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    folded = (values ^ (values >> np.uint64(32))) & _MASK32
    # Permutation-major layout: reducing along the contiguous axis is ~3x faster.
    products = _PERM_A[:, None] * folded[None, :]
    products += _PERM_B[:, None]
    mins = np.minimum.reduceat(products, offsets, axis=1)
    return (mins >> np.uint64(32)).astype(np.uint32).T


def band_keys(signatures: np.ndarray) -> np.ndarray:
    """Keys (``n`` × BANDS, int64): band index << 32 | a 32-bit mix of the band's rows.

    32 bits suffice: a key only proposes a candidate, and every candidate is verified by
    its signature."""
    rows = signatures[:, : BANDS * ROWS].astype(np.uint64).reshape(-1, BANDS, ROWS)
    keys = np.broadcast_to(_BAND_SALT, rows.shape[:2]).copy()
    for r in range(ROWS):
        keys = (keys ^ rows[:, :, r]) * _MIX
        keys ^= keys >> np.uint64(29)
    keys >>= np.uint64(32)
    keys |= np.arange(BANDS, dtype=np.uint64) << np.uint64(32)
    return keys.view(np.int64)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of signature ``a`` with each row of ``b``."""
    return (np.atleast_2d(b) == a).mean(axis=1)


@dataclass
class Assignment:
    """The outcome of clustering a batch: hash and cluster per key, and what was created."""

    content_hashes: dict[Any, str] = field(default_factory=dict)
    clusters: dict[Any, int] = field(default_factory=dict)
    created: list[int] = field(default_factory=list)
    near_duplicates: int = 0


@dataclass
class Plan:
    """Where each text of a batch goes: ``stored[i]`` an existing cluster id (or -1), else
    ``leader[i]`` the index of the batch text that founds its new cluster (``i`` itself
    for a founder). Founders in increasing index order are the new clusters."""

    stored: np.ndarray
    leader: np.ndarray

    @property
    def founders(self) -> np.ndarray:
        return np.flatnonzero((self.stored < 0) & (self.leader == np.arange(self.leader.size)))


def plan_matches(
    signatures: np.ndarray,
    keys: np.ndarray,
    candidate_keys: np.ndarray,
    candidate_clusters: np.ndarray,
    cluster_ids: np.ndarray,
    cluster_signatures: np.ndarray,
    threshold: float,
) -> Plan:
    """Greedy clustering of a batch, in order: each text joins the most similar candidate
    at or above ``threshold`` — a stored cluster sharing a band key (``candidate_keys`` /
    ``candidate_clusters``, signatures in ``cluster_ids`` / ``cluster_signatures``) or a new
    cluster founded by an earlier text of the batch sharing one — else founds a new cluster.
    Ties go to the older cluster (stored ones by id, then new ones by founding order)."""
    n = len(signatures)
    stored, stored_score = _best_stored(
        signatures, keys, candidate_keys, candidate_clusters, cluster_ids, cluster_signatures
    )
    stored_score[stored_score < threshold] = -1.0
    stored[stored_score < 0] = -1
    leader = np.arange(n)
    flat = keys.ravel()
    if n == 0 or flat.size == 0:
        return Plan(stored, leader)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    shared = (counts[inverse] > 1).reshape(keys.shape)
    local = shared.any(axis=1)
    local_index: dict[int, list[int]] = {}
    key_rows = keys.tolist()
    for i in np.flatnonzero(local | (stored >= 0)).tolist():
        best_score, best_leader = float(stored_score[i]), -1
        if local[i]:
            row_keys = [k for k, s in zip(key_rows[i], shared[i].tolist(), strict=True) if s]
            found = sorted({j for k in row_keys for j in local_index.get(k, ())})
            if found:
                scores = (signatures[found] == signatures[i]).mean(axis=1)
                top = int(np.argmax(scores))  # first maximum: the earliest founder
                if scores[top] >= threshold and scores[top] > best_score:
                    best_score, best_leader = float(scores[top]), found[top]
        if best_leader >= 0:
            stored[i], leader[i] = -1, best_leader
        elif stored[i] < 0 and local[i]:
            for k in row_keys:
                local_index.setdefault(k, []).append(i)
    return Plan(stored, leader)


def _best_stored(
    signatures: np.ndarray,
    keys: np.ndarray,
    candidate_keys: np.ndarray,
    candidate_clusters: np.ndarray,
    cluster_ids: np.ndarray,
    cluster_signatures: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per text: the most similar stored candidate (lowest id on ties) and its score."""
    n = len(signatures)
    best = np.full(n, -1, dtype=np.int64)
    score = np.full(n, -1.0)
    if n == 0 or candidate_keys.size == 0 or cluster_ids.size == 0:
        return best, score
    order = np.argsort(candidate_keys, kind="stable")
    sorted_keys, sorted_clusters = candidate_keys[order], candidate_clusters[order]
    flat = keys.ravel()
    lo = np.searchsorted(sorted_keys, flat, side="left")
    counts = np.searchsorted(sorted_keys, flat, side="right") - lo
    total = int(counts.sum())
    if total == 0:
        return best, score
    starts = np.cumsum(counts) - counts
    positions = np.arange(total) - np.repeat(starts, counts) + np.repeat(lo, counts)
    texts = np.repeat(np.arange(flat.size) // keys.shape[1], counts)
    clusters = sorted_clusters[positions]
    id_order = np.argsort(cluster_ids, kind="stable")
    where = np.searchsorted(cluster_ids, clusters, sorter=id_order)
    where = np.minimum(where, cluster_ids.size - 1)
    known = cluster_ids[id_order[where]] == clusters
    texts, clusters, rows = texts[known], clusters[known], id_order[where[known]]
    # one pair per (text, cluster): a cluster found through several bands counts once
    _, first = np.unique(texts * np.int64(cluster_ids.size) + rows, return_index=True)
    texts, clusters, rows = texts[first], clusters[first], rows[first]
    if texts.size == 0:
        return best, score
    scores = (signatures[texts] == cluster_signatures[rows]).mean(axis=1)
    pick = np.lexsort((clusters, -scores, texts))
    first = pick[np.r_[True, texts[pick][1:] != texts[pick][:-1]]]
    best[texts[first]] = clusters[first]
    score[texts[first]] = scores[first]
    return best, score


@dataclass
class Prepared:
    """A batch's normalised content hashes (first occurrence order) and, when asked for,
    their MinHash signatures: all the work that needs no database. A bulk caller prepares
    the next batch in a thread while the current one is in the database."""

    content_hashes: dict[Any, str]
    normalized: dict[str, str]
    signatures: np.ndarray | None = None

    def signatures_of(self, hashes: list[str]) -> np.ndarray:
        if self.signatures is None:
            return minhash([self.normalized[h] for h in hashes])
        row = {h: i for i, h in enumerate(self.normalized)}
        return self.signatures[[row[h] for h in hashes]]


def prepare_texts(
    texts: Sequence[tuple[Any, str]],
    options: dict[str, Any] | None = None,
    *,
    signatures: bool = True,
) -> Prepared:
    """Normalise and hash ``(key, raw text)`` pairs; with ``signatures`` also MinHash them."""
    hashes: dict[Any, str] = {}
    normalized: dict[str, str] = {}
    for key, raw in texts:
        norm = normalize_text(raw, options)
        digest = content_hash(norm)
        hashes[key] = digest
        normalized.setdefault(digest, norm)
    signed = minhash(list(normalized.values())) if signatures else None
    return Prepared(hashes, normalized, signed)


def assign_clusters(
    session: Session,
    *,
    project_id: int,
    texts: Sequence[tuple[Any, str]],
    options: dict[str, Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    near_duplicates: bool = True,
    prepared: Prepared | None = None,
) -> Assignment:
    """Give each ``(key, raw text)`` a cluster: same normalised hash, else a verified LSH
    near-duplicate, else a new cluster. Takes the project's processing lock (re-entrant)
    so concurrent callers never found two clusters for one near-duplicate group.
    ``prepared``: ``prepare_texts(texts, options)`` computed beforehand (``texts`` is then
    not read again)."""
    if prepared is None:  # signatures only for the hashes not seen before, below
        prepared = prepare_texts(texts, options, signatures=False)
    result = Assignment(content_hashes=dict(prepared.content_hashes))
    if not prepared.normalized:
        return result
    lock_project(session, project_id)
    with _index_scans(session):
        known = _known_hashes(session, project_id, list(prepared.normalized))
        fresh = [h for h in prepared.normalized if h not in known]
        if fresh:
            placed, created, joined = _place_new(
                session, project_id, fresh, prepared, threshold, near_duplicates
            )
            result.near_duplicates = joined
            result.created = created
            _record_hashes(session, project_id, placed)
            known.update(placed)
    result.clusters = {key: known[digest] for key, digest in result.content_hashes.items()}
    return result


def _known_hashes(session: Session, project_id: int, hashes: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    if dialect(session) == "postgresql":
        sql = text(
            "SELECT content_hash, cluster_id FROM cluster_content "
            "WHERE project_id = :project AND content_hash = ANY(CAST(:hashes AS varchar[]))"
        )
        params = {"project": project_id, "hashes": array_literal(hashes)}
        return dict(session.execute(sql, params).all())  # type: ignore[arg-type]
    for part in chunks(hashes):
        query = select(ClusterContent.content_hash, ClusterContent.cluster_id).where(
            ClusterContent.project_id == project_id, col(ClusterContent.content_hash).in_(part)
        )
        found.update(dict(session.exec(query).all()))
    return found


class _index_scans:  # noqa: N801 - used as a statement-scoped context manager
    """PostgreSQL: plan the enclosed statements with index scans and without JIT. Tables
    filled in bulk have no statistics yet, and for a long key array the planner would pick
    a sequential scan — whose cost grows with the table, i.e. quadratic over a bulk load —
    and JIT-compile it. Restores both settings (SQLite: nothing to do)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.previous: tuple[str, str] | None = None

    def __enter__(self) -> None:
        if dialect(self.session) == "postgresql":
            row = self.session.execute(
                text(
                    "SELECT current_setting('enable_seqscan'), current_setting('jit'), "
                    "set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)"
                )
            ).one()
            self.previous = (row[0], row[1])

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self.previous is not None:
            self.session.execute(
                text(
                    "SELECT set_config('enable_seqscan', :scan, true), "
                    "set_config('jit', :jit, true)"
                ),
                {"scan": self.previous[0], "jit": self.previous[1]},
            )


def _place_new(
    session: Session,
    project_id: int,
    fresh: list[str],
    prepared: Prepared,
    threshold: float,
    near_duplicates: bool,
) -> tuple[dict[str, int], list[int], int]:
    """Cluster id per fresh hash, the clusters created, and how many texts joined one."""
    if near_duplicates:
        signatures = prepared.signatures_of(fresh)
        keys = band_keys(signatures)
        index = _band_index(session, project_id)
        candidate_keys, candidate_clusters = index.candidates(keys)
        cluster_ids, cluster_signatures = _signatures(
            session, project_id, np.unique(candidate_clusters)
        )
        candidate_keys, candidate_clusters = _confirmed(
            candidate_keys, candidate_clusters, cluster_ids, cluster_signatures
        )
        plan = plan_matches(
            signatures,
            keys,
            candidate_keys,
            candidate_clusters,
            cluster_ids,
            cluster_signatures,
            threshold,
        )
    else:  # exact level only: no signatures, no bands
        signatures = np.zeros((len(fresh), 0), dtype=np.uint32)
        keys = np.zeros((len(fresh), 0), dtype=np.int64)
        plan = Plan(np.full(len(fresh), -1, dtype=np.int64), np.arange(len(fresh)))
    founders = plan.founders
    ids = _insert_clusters(
        session,
        project_id,
        [fresh[i] for i in founders.tolist()],
        signatures[founders] if near_duplicates else None,
    )
    if near_duplicates and ids.size:
        _pending(session, project_id, ids, keys[founders])
    new_id = np.full(len(fresh), -1, dtype=np.int64)
    new_id[founders] = ids
    cluster = np.where(plan.stored >= 0, plan.stored, new_id[plan.leader])
    placed = dict(zip(fresh, cluster.tolist(), strict=True))
    return placed, ids.tolist(), len(fresh) - founders.size


class BandIndex:
    """One project's LSH buckets, kept in the process: every stored cluster's band keys
    (``band_keys`` of its signature: band << 32 | 32-bit hash) with its id, in sorted
    segments merged like a binary counter (16 bytes per band, 128 per cluster).

    The database holds the truth — each cluster's signature, from whose first
    ``BANDS × ROWS`` values its band keys follow — and every process derives the same
    buckets from it: loaded once per project, then kept complete by a high-water mark of
    cluster ids. Ids are reserved from the sequence (SQLite: max rowid + 1) while the
    project's processing lock is held, and the lock is held until commit, so every cluster
    committed after the index last read the database has a larger id than any it has
    seen. Each ``assign_clusters`` call reads, under the lock, the clusters above the mark.
    The caller's own new clusters join at once, but the mark only moves past its own ids
    after its commit: a rolled-back id may be reused (SQLite) by another cluster, so an
    entry may be stale — every candidate is confirmed against the band keys of the
    signature actually stored under its id before it counts."""

    def __init__(self, mark: int) -> None:
        self.mark = mark
        self.segments: list[tuple[np.ndarray, np.ndarray]] = []
        self.guard = threading.Lock()

    def add(self, ids: np.ndarray, keys: np.ndarray) -> None:
        """``keys`` (``len(ids)`` × BANDS) of the clusters ``ids``."""
        if not keys.size:
            return
        flat = keys.ravel()
        order = np.argsort(flat, kind="stable")
        part = (flat[order], np.repeat(ids, keys.shape[1])[order])
        with self.guard:
            segments = [*self.segments, part]
            while len(segments) > 1 and segments[-2][0].size <= 2 * segments[-1][0].size:
                (a_keys, a_ids), (b_keys, b_ids) = segments[-2:]
                merged = np.concatenate((a_keys, b_keys))
                order = np.argsort(merged, kind="stable")  # two sorted runs: linear
                segments[-2:] = [(merged[order], np.concatenate((a_ids, b_ids))[order])]
            self.segments = segments

    def candidates(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(band key, cluster id) of every entry sharing a key with ``keys``."""
        unique = np.unique(keys)
        found_keys: list[np.ndarray] = []
        found_ids: list[np.ndarray] = []
        for segment_keys, segment_ids in self.segments:
            lo = np.searchsorted(segment_keys, unique, side="left")
            counts = np.searchsorted(segment_keys, unique, side="right") - lo
            total = int(counts.sum())
            if total:
                starts = np.cumsum(counts) - counts
                positions = np.arange(total) - np.repeat(starts - lo, counts)
                found_keys.append(segment_keys[positions])
                found_ids.append(segment_ids[positions])
        if not found_keys:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(found_keys), np.concatenate(found_ids)


_INDEXES: weakref.WeakKeyDictionary[Any, dict[int, BandIndex]] = weakref.WeakKeyDictionary()
_INDEXES_GUARD = threading.Lock()
_SESSION_KEY = "corrigenda.clustering.band_index"
_LOAD_ROWS = 50_000
# the first BANDS × ROWS values of a signature (uint32 little-endian) give its band keys
_BAND_BYTES = BANDS * ROWS * 4


def _band_index(session: Session, project_id: int) -> BandIndex:
    """The project's band index, brought up to date (the project lock is held)."""
    engine = session.get_bind()
    with _INDEXES_GUARD:
        indexes = _INDEXES.setdefault(engine, {})
    pending = _session_pending(session)
    current = indexes.get(project_id)
    if current is not None and project_id not in pending:
        # the first call of this transaction: the clusters others committed since; the
        # mark's own row must still be there (tables emptied or recreated: load afresh)
        rows = _fetch(
            session,
            text(
                f"SELECT id, substr(signature, 1, {_BAND_BYTES}) FROM cluster "
                "WHERE id >= :mark AND project_id = :project ORDER BY id"
            ),
            {"mark": current.mark, "project": project_id},
        )
        if current.mark and (not rows or rows[0][0] != current.mark):
            current = None
        elif rows:
            _index_rows(current, rows[1:] if current.mark else rows)
            with current.guard:
                current.mark = max(current.mark, int(rows[-1][0]))
    if current is None:
        current = _load_index(session, project_id)
        indexes[project_id] = current
    pending.setdefault(project_id, (current, -1))
    return current


def _index_rows(index: BandIndex, rows: Sequence[Sequence[Any]]) -> None:
    """Add ``(id, first signature bytes)`` rows (clusters without a signature: none)."""
    ids = [cid for cid, blob in rows if blob is not None and len(blob) == _BAND_BYTES]
    if not ids:
        return
    blob = b"".join(bytes(b) for _, b in rows if b is not None and len(b) == _BAND_BYTES)
    prefix = np.frombuffer(blob, dtype="<u4").reshape(len(ids), BANDS * ROWS)
    index.add(np.array(ids, dtype=np.int64), band_keys(prefix.astype(np.uint32)))


def _load_index(session: Session, project_id: int) -> BandIndex:
    """Every signed cluster of the project, read in parts of ``_LOAD_ROWS`` (the first
    signature bytes only)."""
    mark = session.execute(
        select(Cluster.id)
        .where(Cluster.project_id == project_id)
        .order_by(col(Cluster.id).desc())
        .limit(1)
    ).scalar()
    index = BandIndex(int(mark or 0))
    sql = text(
        f"SELECT id, substr(signature, 1, {_BAND_BYTES}) FROM cluster "
        "WHERE project_id = :project AND id > :after AND id <= :mark "
        f"ORDER BY id LIMIT {_LOAD_ROWS}"
    )
    after = 0
    while after < index.mark:
        rows = _fetch(session, sql, {"project": project_id, "after": after, "mark": index.mark})
        if not rows:
            break
        _index_rows(index, rows)
        after = int(rows[-1][0])
    return index


def _session_pending(session: Session) -> dict[int, tuple[BandIndex, int]]:
    """Per project touched in this transaction: its index and the highest cluster id this
    transaction created (-1: none). On commit the indexes' marks move past those ids."""
    pending = session.info.get(_SESSION_KEY)
    if pending is None:
        pending = session.info[_SESSION_KEY] = {}
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_rollback", _rolled_back)
    return pending


def _pending(session: Session, project_id: int, ids: np.ndarray, keys: np.ndarray) -> None:
    pending = _session_pending(session)
    current, mark = pending[project_id]
    current.add(ids, keys)
    pending[project_id] = (current, max(mark, int(ids.max())))


def _committed(session: Session) -> None:
    for current, top in session.info.pop(_SESSION_KEY, {}).values():
        with current.guard:
            current.mark = max(current.mark, top)
    session.info[_SESSION_KEY] = {}


def _rolled_back(session: Session) -> None:
    session.info[_SESSION_KEY] = {}


def _confirmed(
    candidate_keys: np.ndarray,
    candidate_clusters: np.ndarray,
    cluster_ids: np.ndarray,
    cluster_signatures: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs whose cluster's stored signature really has that band key (an
    index entry may be stale: a rolled-back id reused by another cluster)."""
    if candidate_keys.size == 0 or cluster_ids.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(cluster_ids, kind="stable")
    where = np.minimum(
        np.searchsorted(cluster_ids, candidate_clusters, sorter=order), order.size - 1
    )
    rows = order[where]
    known = cluster_ids[rows] == candidate_clusters
    actual = band_keys(cluster_signatures)
    bands = (candidate_keys >> 32).astype(np.int64) % BANDS
    known &= actual[rows, bands] == candidate_keys
    return candidate_keys[known], candidate_clusters[known]


def _fetch(session: Session, sql: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """All rows as plain tuples (numpy reads those without per-row attribute probing)."""
    return [tuple(row) for row in session.execute(sql, params)]


def _signatures(
    session: Session, project_id: int, cluster_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and signatures (uint32 rows) of this project's clusters among ``cluster_ids``."""
    ids: list[int] = []
    blobs: list[bytes] = []
    if cluster_ids.size and dialect(session) == "postgresql":
        sql = text(
            "SELECT id, signature FROM cluster "
            "WHERE id = ANY(CAST(:ids AS bigint[])) AND project_id = :project"
        )
        params = {"ids": array_literal(cluster_ids.tolist()), "project": project_id}
        result = session.execute(sql, params).all()
    else:
        result = []
        for part in chunks(cluster_ids.tolist()):
            query = select(Cluster.id, Cluster.signature).where(
                col(Cluster.id).in_(part), Cluster.project_id == project_id
            )
            result.extend(session.exec(query).all())
    for cid, blob in result:
        if blob and len(blob) == NUM_PERM * 4:
            ids.append(cid)
            blobs.append(bytes(blob))
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, NUM_PERM), np.uint32)
    matrix = np.frombuffer(b"".join(blobs), dtype="<u4").reshape(len(ids), NUM_PERM)
    return np.array(ids, dtype=np.int64), matrix.astype(np.uint32)


def _insert_clusters(
    session: Session,
    project_id: int,
    hashes: list[str],
    signatures: np.ndarray | None,
) -> np.ndarray:
    """Insert new clusters (ids increasing in the given order)."""
    if not hashes:
        return np.zeros(0, dtype=np.int64)
    blobs = None if signatures is None else signatures.astype("<u4")
    if dialect(session) == "postgresql":
        return _insert_clusters_pg(session, project_id, hashes, blobs)
    return _insert_clusters_orm(session, project_id, hashes, blobs)


def _insert_clusters_orm(
    session: Session, project_id: int, hashes: list[str], blobs: np.ndarray | None
) -> np.ndarray:
    clusters = [
        Cluster(
            project_id=project_id,
            content_hash=digest,
            signature=None if blobs is None else blobs[i].tobytes(),
        )
        for i, digest in enumerate(hashes)
    ]
    session.add_all(clusters)
    session.flush()
    return np.array([c.id for c in clusters], dtype=np.int64)


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _insert_clusters_pg(
    session: Session, project_id: int, hashes: list[str], blobs: np.ndarray | None
) -> np.ndarray:
    """Reserve ids from the sequence (in order), then one binary ``COPY``."""
    count = len(hashes)
    # nextval() per row, read back as binary COPY: no text array to build and parse
    raw = session.connection().connection.driver_connection
    query = (
        "COPY (SELECT nextval(pg_get_serial_sequence('cluster', 'id')) "
        f"FROM generate_series(1, {int(count)})) TO STDOUT (FORMAT BINARY)"
    )
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(query) as copy:
            data = b"".join(bytes(block) for block in copy)
    values = np.frombuffer(data[19:-2], dtype=[("n", ">i2"), ("l", ">i4"), ("v", ">i8")])
    ids = np.sort(values["v"].astype(np.int64))
    micros = (utcnow() - _PG_EPOCH) // _ONE_MICROSECOND
    columns: list[tuple[str, str, Any]] = [
        ("id", ">i8", ids),
        ("project_id", ">i8", project_id),
        ("content_hash", "S64", _hash_bytes(hashes)),
        ("created_at", ">i8", micros),
    ]
    if blobs is not None:
        columns.append(("signature", f"V{NUM_PERM * 4}", blobs.view(f"V{NUM_PERM * 4}")[:, 0]))
    _copy_binary(session, "cluster", count, columns)
    return ids


def _hash_bytes(hashes: list[str]) -> np.ndarray:
    return np.array([h.encode("ascii") for h in hashes], dtype="S64")


def _copy_binary(
    session: Session, table: str, count: int, columns: list[tuple[str, str, Any]]
) -> None:
    """PostgreSQL only: ``COPY … FORMAT BINARY`` of fixed-width fields built by numpy."""
    fields: list[tuple[str, Any]] = [("n", ">i2")]
    for i, (_, kind, _) in enumerate(columns):
        fields += [(f"l{i}", ">i4"), (f"v{i}", kind)]
    rows = np.empty(count, dtype=np.dtype(fields))
    rows["n"] = len(columns)
    for i, (_, kind, values) in enumerate(columns):
        rows[f"l{i}"] = np.dtype(kind).itemsize
        rows[f"v{i}"] = values
    payload = _COPY_HEADER + rows.tobytes() + b"\xff\xff"
    names = ", ".join(name for name, _, _ in columns)
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _record_hashes(session: Session, project_id: int, clusters: dict[str, int]) -> None:
    """New content hashes (checked absent under the project lock)."""
    if dialect(session) == "postgresql":
        columns: list[tuple[str, str, Any]] = [
            ("project_id", ">i8", project_id),
            ("content_hash", "S64", _hash_bytes(list(clusters))),
            ("cluster_id", ">i8", np.fromiter(clusters.values(), np.int64, len(clusters))),
        ]
        _copy_binary(session, "cluster_content", len(clusters), columns)
        return
    rows = [
        {"project_id": project_id, "content_hash": h, "cluster_id": cid}
        for h, cid in clusters.items()
    ]
    insert_ignore(session, ClusterContent.__table__, rows)
