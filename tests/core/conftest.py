"""The behaviour suite's stores. Every test taking ``store_url`` (or ``repo``) runs on the
in-process memory store, a local folder and moto's S3; tests marked ``every_backend`` also run
on Azurite and fake-gcs-server. ``remote_url`` is the same for tests that need a remote bucket:
S3, plus Azure and GCS when marked. (A chosen few are marked, to keep the suite's time modest.)"""

import uuid

import pytest

from casstore import Repository
from casstore.store import MemoryStore

_S3 = pytest.param("s3", marks=pytest.mark.s3)
_CLOUDS = [
    pytest.param("azure", marks=pytest.mark.azure),
    pytest.param("gcs", marks=pytest.mark.gcs),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    every = metafunc.definition.get_closest_marker("every_backend") is not None
    clouds = _CLOUDS if every else []
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", ["memory", "local", _S3, *clouds], indirect=True)
    if "remote_url" in metafunc.fixturenames:
        metafunc.parametrize("remote_url", [_S3, *clouds], indirect=True)


@pytest.fixture
def store_url(request, tmp_path):
    """A fresh, empty store: in-process memory, a local folder, or a fresh prefix in a bucket
    over HTTP."""
    if request.param == "memory":
        name = f"core-{uuid.uuid4().hex}"
        yield f"memory://{name}"
        MemoryStore.forget(name)
    elif request.param == "local":
        yield str(tmp_path / "store")
    else:
        yield request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def remote_url(request):
    """A fresh prefix in a bucket over HTTP: moto's S3, Azurite or fake-gcs-server."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def repo(store_url):
    r = Repository(store_url)
    yield r
    r.store.close()


def needs_another_process(url: str) -> None:
    """Skip on the memory store: another process cannot see it."""
    if url.startswith("memory://"):
        pytest.skip("the memory store cannot be shared with another process")
