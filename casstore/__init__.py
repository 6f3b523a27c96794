"""casstore: a content-addressed, deduplicated artifact store for ML model versions.

    >>> from casstore import Repository
    >>> repo = Repository(".casstore")            # or "s3://bucket/prefix", any fsspec URL
    >>> repo.commit("bert", ["checkpoint/"], metrics={"accuracy": 0.91})
    >>> repo.rollback("bert")                     # quick rollback to the previous stable

Importing casstore never imports torch; ``casstore.torch`` does.
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
from casstore.ops.regression import MetricRule, RegressionPolicy
from casstore.ops.rollout import MoveResult
from casstore.repo.manifest import FileEntry, Manifest, TensorEntry, TrainingData
from casstore.repo.query import MetricCondition, Query, parse_condition
from casstore.repo.refs import ReflogEntry, RefValue, Split, Target
from casstore.repository import CommitResult, Repository, Stats, Version
from casstore.store import ObjectStore, open_store

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "CasstoreError",
    "CommitResult",
    "ConflictError",
    "CorruptObjectError",
    "Digest",
    "FileEntry",
    "InvalidInputError",
    "Manifest",
    "MetricCondition",
    "MetricRule",
    "MoveResult",
    "NotFoundError",
    "ObjectStore",
    "PermissionDeniedError",
    "Query",
    "RefValue",
    "ReflogEntry",
    "RegressionPolicy",
    "Repository",
    "Split",
    "Stats",
    "StoreFormatError",
    "Target",
    "TensorEntry",
    "TrainingData",
    "TransientBackendError",
    "UnsafePickleError",
    "UnsupportedError",
    "Version",
    "__version__",
    "open_store",
    "parse_condition",
]
