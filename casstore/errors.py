"""The one exception tree of casstore.

Every error casstore raises on purpose derives from :class:`CasstoreError`. Errors from the
layers below (OSError, botocore, fsspec) are translated into this tree at one place, inside
the store backends, so callers never have to catch a third-party exception::

    CasstoreError
    ├── InvalidInputError (ValueError)      bad names, versions, paths, hostile files
    │   └── UnsafePickleError               a pickle that would import or call code
    ├── NotFoundError (FileNotFoundError)   unknown model, version, ref, object
    ├── AlreadyExistsError (FileExistsError) a version or object that already exists
    ├── ConflictError                       a compare-and-swap lost the race
    ├── CorruptObjectError                  stored bytes do not match their digest / format
    ├── StoreFormatError                    store written by an unknown (future) format
    ├── UnsupportedError                    the backend cannot give a needed guarantee
    ├── UntrustedError                      no valid signature from a trusted key / policy
    └── BackendError (OSError)              the storage backend failed
        ├── PermissionDeniedError           access denied / no credentials
        └── TransientBackendError           worth retrying: 5xx, throttling, timeouts
"""

from __future__ import annotations


class CasstoreError(Exception):
    """Base of every error casstore raises on purpose."""


class InvalidInputError(CasstoreError, ValueError):
    """The caller gave input casstore refuses: a bad name, version, path or file."""


class UnsafePickleError(InvalidInputError):
    """A pickle stream asks to import or call something outside the tensor allow-list."""


class NotFoundError(CasstoreError, FileNotFoundError):
    """A model, version, ref or object does not exist."""


class AlreadyExistsError(CasstoreError, FileExistsError):
    """Something that must be created fresh already exists."""


class ConflictError(CasstoreError):
    """A compare-and-swap lost the race: the object changed since it was read."""


class CorruptObjectError(CasstoreError):
    """Stored bytes do not match their digest or cannot be decoded."""


class StoreFormatError(CasstoreError):
    """The store was written with a format this version of casstore does not know."""


class UnsupportedError(CasstoreError):
    """The backend cannot provide a guarantee the operation needs."""


class UntrustedError(CasstoreError):
    """A version lacks the valid signatures from trusted keys its ref's trust policy requires,
    or a signature or trust-policy change does not verify."""


class BackendError(CasstoreError, OSError):
    """The storage backend failed (I/O error, HTTP error, ...)."""


class PermissionDeniedError(BackendError, PermissionError):
    """The backend refused access or no credentials were found."""


class TransientBackendError(BackendError):
    """A failure worth retrying: server errors, throttling, timeouts, dropped connections."""


__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "CasstoreError",
    "ConflictError",
    "CorruptObjectError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "StoreFormatError",
    "TransientBackendError",
    "UnsafePickleError",
    "UnsupportedError",
    "UntrustedError",
]
