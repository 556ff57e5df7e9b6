"""What TRL's trainers accept, written down as checks (TRL itself is too heavy to install
for tests). Sources: TRL "Dataset formats" docs — conversational language modeling
(``messages``) for SFTTrainer, conversational preference with explicit prompt
(``prompt``/``chosen``/``rejected``) for DPOTrainer/RewardTrainer.

Stricter than TRL where TRL silently accepts rows that teach nothing or the wrong thing:
chosen == rejected, empty turns, and turns out of role order.
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


def _messages(turns: Any, where: str) -> list[str]:
    errors: list[str] = []
    if not isinstance(turns, list) or not turns:
        return [f"{where}: must be a non-empty list of messages"]
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            errors.append(f"{where}[{i}]: must be exactly {{role, content}}")
        elif turn["role"] not in ROLES:
            errors.append(f"{where}[{i}]: unknown role {turn['role']!r}")
        elif not isinstance(turn["content"], str) or not turn["content"].strip():
            errors.append(f"{where}[{i}]: content must be a non-empty string")
    return errors


def _order(roles: list[str], where: str) -> list[str]:
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        return [f"{where}: system message only first"]
    for i, role in enumerate(body):
        if role != ("user" if i % 2 == 0 else "assistant"):
            return [f"{where}: roles must alternate user/assistant, got {roles}"]
    return []


def sft_conversational_errors(row: dict[str, Any]) -> list[str]:
    if set(row) != {"messages"}:
        return [f"keys must be exactly messages, got {sorted(row)}"]
    errors = _messages(row["messages"], "messages")
    if errors:
        return errors
    roles = [t["role"] for t in row["messages"]]
    errors = _order(roles, "messages")
    if roles[-1] != "assistant":
        errors.append("messages: must end with the assistant turn to learn from")
    return errors


def preference_errors(row: dict[str, Any]) -> list[str]:
    missing = {"prompt", "chosen", "rejected"} - set(row)
    if missing:
        return [f"missing {sorted(missing)} (an explicit prompt is required)"]
    errors = _messages(row["prompt"], "prompt")
    errors += _messages(row["chosen"], "chosen") + _messages(row["rejected"], "rejected")
    if errors:
        return errors
    roles = [t["role"] for t in row["prompt"]]
    errors += _order(roles, "prompt")
    if roles[-1] != "user":
        errors.append("prompt: must end with the user turn")
    for side in ("chosen", "rejected"):
        if [t["role"] for t in row[side]] != ["assistant"]:
            errors.append(f"{side}: must be one assistant turn")
    if row["chosen"] == row["rejected"]:
        errors.append("chosen equals rejected")
    return errors
