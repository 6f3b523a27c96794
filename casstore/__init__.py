"""casstore: a content-addressed, deduplicated artifact store for ML model versions.

    >>> from casstore import Repository
    >>> repo = Repository(".casstore")            # or "s3://bucket/prefix", any fsspec URL
    >>> repo.commit("bert", ["checkpoint/"], metrics={"accuracy": 0.91})
    >>> repo.rollback("bert")                     # quick rollback to the previous stable

The public API is what this module exports; the packages below it (``store``, ``chunking``,
``repo``, ``ops``) are the layers it is built from. Importing casstore never imports torch;
``casstore.torch`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casstore._lazy import lazy_attributes
from casstore.errors import (
    AlreadyExistsError,
    BackendError,
    CasstoreError,
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StoreFormatError,
    TransientBackendError,
    UnsafePickleError,
    UnsupportedError,
    UntrustedError,
)

if TYPE_CHECKING:
    from casstore.digest import Digest
    from casstore.ops.gc import GarbageCollector, GcPlan, GcReport
    from casstore.ops.hooks import Hooks
    from casstore.ops.regression import MetricRule, RegressionPolicy
    from casstore.ops.retention import RetentionPolicy
    from casstore.ops.rollout import MoveResult
    from casstore.ops.transfer import StoreOutcome, TransferReport
    from casstore.ops.verify import Problem, VerifyReport
    from casstore.repo.commit import CommitResult, CommitSpec
    from casstore.repo.config import StoreConfig
    from casstore.repo.leases import LeaseSettings
    from casstore.repo.query import MetricCondition, Query, parse_condition
    from casstore.repository import Repository, Stats, Version
    from casstore.store import ObjectStore, open_store

_LAZY = {
    "Digest": "casstore.digest",
    "GarbageCollector": "casstore.ops.gc",
    "GcPlan": "casstore.ops.gc",
    "GcReport": "casstore.ops.gc",
    "Hooks": "casstore.ops.hooks",
    "MetricRule": "casstore.ops.regression",
    "RegressionPolicy": "casstore.ops.regression",
    "RetentionPolicy": "casstore.ops.retention",
    "MoveResult": "casstore.ops.rollout",
    "StoreOutcome": "casstore.ops.transfer",
    "TransferReport": "casstore.ops.transfer",
    "Problem": "casstore.ops.verify",
    "VerifyReport": "casstore.ops.verify",
    "CommitResult": "casstore.repo.commit",
    "CommitSpec": "casstore.repo.commit",
    "StoreConfig": "casstore.repo.config",
    "LeaseSettings": "casstore.repo.leases",
    "MetricCondition": "casstore.repo.query",
    "Query": "casstore.repo.query",
    "parse_condition": "casstore.repo.query",
    "Repository": "casstore.repository",
    "Stats": "casstore.repository",
    "Version": "casstore.repository",
    "ObjectStore": "casstore.store",
    "open_store": "casstore.store",
}
"""Public names imported on first use (PEP 562), so a command imports only what it runs."""


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "CasstoreError",
    "CommitResult",
    "CommitSpec",
    "ConflictError",
    "CorruptObjectError",
    "Digest",
    "GarbageCollector",
    "GcPlan",
    "GcReport",
    "Hooks",
    "InvalidInputError",
    "LeaseSettings",
    "MetricCondition",
    "MetricRule",
    "MoveResult",
    "NotFoundError",
    "ObjectStore",
    "PermissionDeniedError",
    "Problem",
    "Query",
    "RegressionPolicy",
    "Repository",
    "RetentionPolicy",
    "Stats",
    "StoreConfig",
    "StoreFormatError",
    "StoreOutcome",
    "TransferReport",
    "TransientBackendError",
    "UnsafePickleError",
    "UnsupportedError",
    "UntrustedError",
    "VerifyReport",
    "Version",
    "__version__",
    "open_store",
    "parse_condition",
]
