"""casstore: a content-addressed, deduplicated artifact store for ML model versions.

    >>> from casstore import Repository
    >>> repo = Repository(".casstore")            # or "s3://bucket/prefix", any fsspec URL
    >>> repo.commit("bert", ["checkpoint/"], metrics={"accuracy": 0.91})
    >>> repo.rollback("bert")                     # quick rollback to the previous stable

The public API is what this module exports; the packages below it (``store``, ``chunking``,
``repo``, ``ops``) are the layers it is built from. Importing casstore never imports torch;
``casstore.torch`` does.
"""

from casstore.digest import Digest
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
)
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
    "VerifyReport",
    "Version",
    "__version__",
    "open_store",
    "parse_condition",
]
