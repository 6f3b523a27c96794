"""The JSON shapes every command's ``--json`` output is built from (documented in the README).

* a **version**: the requirements document's metadata (``Version.to_dict``): ``model_name``,
  ``version`` (``v1.2.0_YYYYMMDD_HHMMSS``), ``semver``, ``name`` (the full name), ``id`` (the
  manifest digest, also ``hash``), ...; a **version reference** (where a ref points, what a
  move changed) is its first fields: ``semver``, ``version``, ``name``, ``id``;
* a **ref value**: ``{"target": REF}`` or ``{"split": {"base": REF, "candidate": REF,
  "weight", "steps"}}``, plus ``describe`` (the one-line text the tables print);
* a **ref move**: ``model_name``, ``ref``, ``ok``, ``reverted``, ``old``/``new`` (ref values),
  ``message``, ``reflog`` (entries), ``notify_failures``;
* an **error**: ``{"error": {"type", "message", "exit_code"}}`` (see ``casstore.cli.main``).

Model names are ``model_name`` everywhere, as in the requirements document.
"""

from __future__ import annotations

from typing import Any

from casstore.errors import CasstoreError


def version_ref(repo: Any, model: str, semver: str, manifest: str) -> dict[str, Any]:
    """A version reference; ``version``/``name`` are None if its manifest cannot be read."""
    from casstore.digest import Digest

    doc: dict[str, Any] = {"semver": semver, "version": None, "name": None, "id": manifest}
    try:
        m = repo.manifest(Digest.parse(manifest))
    except (CasstoreError, ValueError):
        return doc
    doc["version"] = f"v{m.version}_{m.created_at:%Y%m%d_%H%M%S}"
    doc["name"] = m.name
    return doc


def ref_value(repo: Any, model: str, value: Any) -> dict[str, Any] | None:
    """A ref's value (a ``RefValue`` or None) as JSON."""
    if value is None:
        return None
    if value.target is not None:
        t = value.target
        return {"target": version_ref(repo, model, t.version, t.manifest),
                "describe": value.describe()}
    s = value.split
    return {
        "split": {
            "base": version_ref(repo, model, s.base.version, s.base.manifest),
            "candidate": version_ref(repo, model, s.candidate.version, s.candidate.manifest),
            "weight": s.weight,
            "steps": list(s.steps),
        },
        "describe": value.describe(),
    }


def reflog_entry(repo: Any, e: Any) -> dict[str, Any]:
    """One reflog entry as JSON."""
    doc = e.to_builtins()
    doc["model_name"] = doc.pop("model")
    doc["old"] = ref_value(repo, e.model, e.old)
    doc["new"] = ref_value(repo, e.model, e.new)
    return doc


def ref_move(repo: Any, res: Any) -> dict[str, Any]:
    """A ``MoveResult`` as JSON."""
    return {
        "model_name": res.model,
        "ref": res.ref,
        "ok": res.ok,
        "reverted": res.reverted,
        "old": ref_value(repo, res.model, res.old),
        "new": ref_value(repo, res.model, res.new),
        "message": res.message,
        "reflog": [reflog_entry(repo, e) for e in res.entries],
        "notify_failures": list(res.notify_failures),
    }


def version_summary(v: Any) -> dict[str, Any]:
    """The identifying fields of a version: ``model_name``, ``version``, ``semver``, ``name``,
    ``id`` (the head of ``Version.to_dict``)."""
    d = v.to_dict()
    return {k: d[k] for k in ("model_name", "version", "semver", "name", "id")}


def semver_ref(repo: Any, model: str, semver: str | None) -> dict[str, Any] | None:
    """A version reference for a semantic version (None if it is not stored any more)."""
    if semver is None:
        return None
    try:
        v = repo.get_version(model, semver)
    except CasstoreError:
        return {"semver": semver, "version": None, "name": None, "id": None}
    return {k: val for k, val in version_summary(v).items() if k != "model_name"}


def with_model_name(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its top-level ``model`` field named ``model_name``."""
    return {("model_name" if k == "model" else k): v for k, v in doc.items()}
