"""What a version holds: running statistics, the manifest (with checksums) and the datasheet."""

from __future__ import annotations

import hashlib
import platform
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow

from .. import __version__
from .records import Record

MANIFEST_VERSION = 1
MAX_DISTINCT_LABELS = 1000
AGREEMENT_BINS = ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")


@dataclass
class BuildStats:
    """Counts gathered in the one pass over the snapshot (bounded memory)."""

    count_labels: bool = True
    total: int = 0
    splits: Counter[str] = field(default_factory=Counter)
    labels: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sources: Counter[str] = field(default_factory=Counter)
    model_versions: Counter[str] = field(default_factory=Counter)
    gold: int = 0
    agreement_n: int = 0
    agreement_sum: float = 0.0
    agreement_min: float | None = None
    agreement_bins: Counter[str] = field(default_factory=Counter)
    first_created: str | None = None
    last_created: str | None = None

    def add(self, record: Record) -> None:
        split = record.split or "train"
        self.total += 1
        self.splits[split] += 1
        self.sources[record.source] += 1
        self.add_model_version(record.model_version)
        self.gold += record.is_gold
        if self.count_labels:
            self.add_labels(split, record.target)
        if record.agreement is not None:
            self.add_agreement(record.agreement)
        created = record.created_at
        if created is not None:
            self.first_created = min(self.first_created or created, created)
            self.last_created = max(self.last_created or created, created)

    def add_labels(self, split: str, target: Any, n: int = 1) -> None:
        """Count ``n`` rows with ``target`` in ``split`` (at most ``MAX_DISTINCT_LABELS``
        distinct labels per split; later new ones count as ``(other)``)."""
        counter = self.labels[split]
        for label in target if isinstance(target, list) else (target,):
            key = label if isinstance(label, str) else "(other)"
            if key in counter:
                counter[key] += n
            else:
                counter[key if len(counter) < MAX_DISTINCT_LABELS else "(other)"] += n

    def add_model_version(self, model_version: str | None, n: int = 1) -> None:
        if len(self.model_versions) < MAX_DISTINCT_LABELS or model_version in self.model_versions:
            self.model_versions[model_version or ""] += n

    def add_agreement(self, value: float, n: int = 1) -> None:
        """Count ``n`` rows with agreement ``value``. NaN counts as no agreement: the rows
        carry ``null`` for it, and JSON (the stored manifest) cannot hold NaN."""
        if value != value:
            return
        self.agreement_n += n
        self.agreement_sum += value * n
        self.agreement_min = value if self.agreement_min is None else min(self.agreement_min, value)
        self.agreement_bins[AGREEMENT_BINS[min(max(int(value * 5), 0), 4)]] += n

    def agreement(self) -> dict[str, Any]:
        mean = self.agreement_sum / self.agreement_n if self.agreement_n else None
        return {
            "with_agreement": self.agreement_n,
            "without_agreement": self.total - self.agreement_n,
            "mean": mean,
            "min": self.agreement_min,
            "histogram": dict(sorted(self.agreement_bins.items())),
        }


def file_entry(root: Path, name: str, info: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one written file. A writer that hashed the bytes as it wrote
    them passes ``sha256`` (and ``bytes``) in ``info``; other files are read back once."""
    path = root / name
    if "sha256" in info:
        entry = {"path": name, **info}
        entry["bytes"], entry["sha256"] = entry.pop("bytes"), entry.pop("sha256")
        return entry
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"path": name, **info, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def software() -> dict[str, str]:
    return {
        "corrigenda": __version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }


def build_manifest(
    *,
    header: dict[str, Any],
    stats: BuildStats,
    files: list[dict[str, Any]],
    refused: dict[str, dict[str, int]],
    leakage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        **header,
        "software": software(),
        "counts": {
            "total": stats.total,
            "splits": dict(stats.splits),
            "labels": {split: dict(c.most_common()) for split, c in stats.labels.items()},
            "sources": dict(stats.sources),
            "model_versions": dict(stats.model_versions.most_common()),
            "gold": stats.gold,
        },
        "agreement": stats.agreement(),
        "refused": {name: counts for name, counts in refused.items() if counts},
        "leakage": leakage,
        "files": sorted(files, key=lambda f: f["path"]),
        "superseded": None,
    }


def _table(rows: list[tuple[Any, ...]], headings: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def datasheet(manifest: dict[str, Any], project: dict[str, Any]) -> str:
    """A Markdown datasheet (after "Datasheets for Datasets"): provenance, composition,
    labels, agreement, sources and the known limits a trainer should read first."""
    counts = manifest["counts"]
    number, total = manifest["number"], counts["total"]
    lines = [f"# {project['slug']} — dataset version {number}", ""]
    lines += [
        "## Motivation and provenance",
        "",
        f"Training examples for the project *{project['name']}* (task: {project['task_type']}),",
        "made from end users' corrections of model predictions, settled by agreement between",
        "users (`consensus`), by reviewers (`reviewed`) or taken from accepted predictions",
        f"(`implicit`). Created {manifest['created_at']} by Corrigenda "
        f"{manifest['software']['corrigenda']}; snapshot high-water mark "
        f"`{manifest['high_water_mark']}`.",
        "",
        f"Filter: `{manifest['filter'] or 'none (every live example)'}`",
        "",
        "## Composition",
        "",
    ]
    lines += _table(
        [(s, n) for s, n in counts["splits"].items()] + [("**total**", total)],
        ("split", "examples"),
    )
    lines += ["", "Sources:", ""]
    lines += _table(sorted(counts["sources"].items()), ("source", "examples"))
    lines += ["", "Model versions whose outputs were corrected:", ""]
    lines += _table(list(counts["model_versions"].items())[:20], ("model version", "examples"))
    lines += _label_section(counts)
    lines += _agreement_section(manifest["agreement"])
    lines += _splits_section(manifest)
    lines += _limits_section(manifest)
    return "\n".join(lines) + "\n"


def _label_section(counts: dict[str, Any]) -> list[str]:
    if not counts["labels"]:
        return ["", "## Labels", "", "Free-text targets: no label distribution.", ""]
    splits = list(counts["labels"])
    labels = sorted({label for c in counts["labels"].values() for label in c})
    rows = [(label, *(counts["labels"][s].get(label, 0) for s in splits)) for label in labels]
    return ["", "## Label distribution per split", "", *_table(rows, ("label", *splits))]


def _agreement_section(agreement: dict[str, Any]) -> list[str]:
    mean = agreement["mean"]
    return [
        "",
        "## Agreement",
        "",
        f"{agreement['with_agreement']} examples carry an agreement score "
        f"(mean {mean:.3f}, min {agreement['min']:.3f})"
        if mean is not None
        else "No example carries an agreement score.",
        "",
        *_table(list(agreement["histogram"].items()), ("agreement", "examples")),
    ]


def _splits_section(manifest: dict[str, Any]) -> list[str]:
    leakage = manifest["leakage"]
    return [
        "",
        "## Splits and leakage",
        "",
        f"Split ratios {manifest['split_ratios']}, assigned from each example's content",
        "cluster (exact and near-duplicate inputs share a cluster), so near-duplicates never",
        "straddle splits and an example keeps its split in later versions.",
        f"Leakage check: {leakage['cross_split_pairs']} near-duplicate pairs across splits "
        f"({leakage['method']}).",
    ]


def _limits_section(manifest: dict[str, Any]) -> list[str]:
    refused = manifest["refused"]
    lines = [
        "",
        "## Known limits",
        "",
        "- Selection bias: only predictions that end users reacted to (or that were audited)",
        "  become examples; the data over-represents visible mistakes.",
        "- `implicit` examples rest on users not objecting; they are weaker than `reviewed`.",
        "- Labels reflect the label set and reviewer guidance at the time of labeling.",
        "- Erasure requests received after this version mark it superseded in its manifest;",
        "  check `superseded` before reusing it.",
    ]
    for name, reasons in refused.items():
        detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
        lines.append(f"- `{name}` left out rows its trainers would mis-learn from ({detail}).")
    return lines
