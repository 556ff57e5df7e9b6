"""Clustering short texts into the database-backed MinHash LSH, with planted near-duplicates.

    python bench/lsh.py --texts 200000          # PostgreSQL (throw-away database)

Prints: normalisation and MinHash throughput, end-to-end clustering time into PostgreSQL
(texts/s), peak memory, pairwise precision/recall on the planted near-duplicates, and the
same run with exact hashes only (baseline: time ratio, and the recall the LSH adds).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import resource
import sys
import tempfile
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common_workers import corpus_chunks, pair_scores, throwaway_database  # noqa: E402

from corrigenda.clustering import assign_clusters, minhash, prepare_texts  # noqa: E402
from corrigenda.db import make_engine, transaction  # noqa: E402
from corrigenda.models import Project, metadata  # noqa: E402
from corrigenda.normalize import normalize_text  # noqa: E402


def cluster_all(
    url: str, texts: Path, *, near: bool, slug: str, chunk: int
) -> tuple[float, list[int]]:
    """Cluster the texts of the file (one JSON string a line) ``chunk`` at a time; the file
    stands in for the database the worker reads its inputs from."""
    engine = make_engine(url)
    with transaction(engine) as session:
        project = Project(slug=slug, name=slug)
        session.add(project)
        session.flush()
        project_id = project.id
    clusters: list[int] = []
    started = time.perf_counter()
    lines = texts.open("rb")
    numbered = enumerate(orjson.loads(line) for line in lines)

    def batch() -> list[tuple[int, str]]:
        return list(itertools.islice(numbered, chunk))

    # The next batch is read, normalised and MinHashed in a thread while this one is in the
    # database (numpy and the driver's socket waits release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool, lines:
        part = batch()
        upcoming = pool.submit(prepare_texts, part, signatures=near)
        while part:
            prepared = upcoming.result()
            following = batch()
            if following:
                upcoming = pool.submit(prepare_texts, following, signatures=near)
            with transaction(engine) as session:
                result = assign_clusters(
                    session,
                    project_id=project_id,
                    texts=part,
                    near_duplicates=near,
                    prepared=prepared,
                )
            clusters.extend(result.clusters[i] for i, _ in part)
            part = following
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, clusters


def reset_peak_rss() -> bool:
    """Linux: restart the process's peak-RSS counter (VmHWM), so the clustering's own
    peak can be read afterwards — the corpus generator's temporaries peak higher."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=20_000, help="texts per transaction")
    parser.add_argument("--skip-exact", action="store_true", help="no exact-hash baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        texts = Path(folder) / "texts.jsonl"
        groups, sample = write_corpus(texts, args.texts)
        print(f"texts: {len(groups):,} ({len(set(groups)):,} planted groups, 20 % near-duplicates)")
        measure_normalise_and_minhash(sample)
        del sample
        corpus_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gc.collect()
        reset = reset_peak_rss()
        baseline_mb = rss_mb("VmRSS")
        print(
            f"peak RSS while writing the corpus to a file: {corpus_peak_mb:,.0f} MB; "
            f"RSS before clustering: {baseline_mb:,.0f} MB"
        )
        run_clustering(args, texts, groups, reset, baseline_mb)


def write_corpus(path: Path, n: int) -> tuple[array, list[str]]:
    """The corpus to a file, one JSON string a line (read back batch by batch while
    clustering, as a worker reads its inputs); the planted groups; the first 100,000 texts."""
    groups = array("L")
    sample: list[str] = []
    with path.open("wb") as out:
        for texts, chunk_groups in corpus_chunks(n, 20_000):
            out.write(b"".join(orjson.dumps(t) + b"\n" for t in texts))
            groups.extend(chunk_groups)
            if len(sample) < 100_000:
                sample += texts[: 100_000 - len(sample)]
    return groups, sample


def measure_normalise_and_minhash(sample: list[str]) -> None:
    started = time.perf_counter()
    normalized = [normalize_text(t) for t in sample]
    normalize_seconds = time.perf_counter() - started
    started = time.perf_counter()
    minhash(normalized)
    minhash_seconds = time.perf_counter() - started
    print(f"normalise: {len(sample) / normalize_seconds:,.0f} texts/s")
    print(f"minhash (numpy, 128 perms): {len(sample) / minhash_seconds:,.0f} signatures/s")


def run_clustering(
    args: argparse.Namespace, texts: Path, groups: array, reset: bool, baseline_mb: float
) -> None:
    with throwaway_database() as url:
        engine = make_engine(url)
        metadata.create_all(engine)
        engine.dispose()
        lsh_seconds, lsh = cluster_all(url, texts, near=True, slug="lsh", chunk=args.chunk)
        clustering_peak = rss_mb("VmHWM") if reset else float("nan")
        exact_seconds, exact = (
            (float("nan"), list(range(len(groups))))
            if args.skip_exact
            else cluster_all(url, texts, near=False, slug="exact", chunk=args.chunk)
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    precision, recall = pair_scores(groups, lsh)
    exact_precision, exact_recall = pair_scores(groups, exact)
    print(
        f"exact-hash only: {exact_seconds:.1f} s ({len(groups) / exact_seconds:,.0f} texts/s), "
        f"precision {exact_precision:.4f} recall {exact_recall:.4f}"
    )
    print(
        f"MinHash LSH:     {lsh_seconds:.1f} s ({len(groups) / lsh_seconds:,.0f} texts/s), "
        f"precision {precision:.4f} recall {recall:.4f}"
    )
    print(f"LSH / exact time ratio: {lsh_seconds / exact_seconds:.2f}")
    print(
        f"peak RSS while clustering: {clustering_peak:,.0f} MB "
        f"(+{clustering_peak - baseline_mb:,.0f} MB over the process before clustering)"
    )
    print(f"peak RSS of the whole benchmark (corpus generation included): {peak_mb:,.0f} MB")
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
