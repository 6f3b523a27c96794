"""Any fsspec-aware tool reads any version: the read-only ``casstore://`` filesystem.

URL grammar (one form per place the store is named)::

    casstore://MODEL@VERSION/path/in/version                  store from options or env
    casstore://MODEL@VERSION/path/in/version::STORE_URL       store named in the URL (chained)

* ``VERSION``: ``1.2.0``, ``v1.2.0``, the full name ``MODEL_v1.2.0_YYYYMMDD_HHMMSS``,
  ``latest``, ``@REF``, or a bare ref name: ``bert@production`` is the ref ``production``.
  A spec that starts like a version (digit, ``v`` + digit, a full name) is always a version;
  write ``MODEL@@REF`` for a ref whose name looks like one. Refs are resolved on every call.
* Store, plain form: ``storage_options={"store": URL, "store_options": {...}}``, else
  ``$CASSTORE_STORE``, else ``./.casstore`` (the CLI's rule). Chained form: the store URL
  follows ``::`` as in fsspec's ``zip::``/``tar::`` chains
  (``casstore://bert@1.2.0/model.safetensors::s3://bucket/models``); its options go under the
  protocol name (``s3={"endpoint_url": ...}``). Naming the store both ways is refused.
* Directories: ``casstore://`` lists models, ``casstore://MODEL`` lists versions (as
  ``MODEL@SEMVER``), ``casstore://MODEL@VERSION[/dir]`` lists files; folders inside a version
  are implied by '/' in file paths. ``casstore://MODEL/file`` (no version) is refused.

Read-only: ``open`` in a writing mode, ``rm``, ``mkdir``, ``pipe`` ... raise
:class:`~casstore.errors.PermissionDeniedError` (a ``PermissionError``); commit to write.
Registered as the ``casstore`` protocol through the ``fsspec.specs`` entry point, so
``fsspec.open("casstore://...")`` and ``pandas.read_csv("casstore://...")`` work without
importing casstore first.
"""

from casstore.fs.filesystem import CasstoreFile, CasstoreFileSystem
from casstore.fs.paths import FsPath, parse_path, version_spec

__all__ = ["CasstoreFile", "CasstoreFileSystem", "FsPath", "parse_path", "version_spec"]
