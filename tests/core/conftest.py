"""The behaviour suite's stores. Every test taking ``store_url`` (or ``repo``) runs on a local
folder and on moto's S3; tests marked ``every_backend`` also run on Azurite and
fake-gcs-server. ``remote_url`` is the same for tests that need a remote bucket: S3, plus Azure
and GCS when marked. (A chosen few are marked, to keep the suite's time modest.)"""

import pytest

from casstore import Repository

_S3 = pytest.param("s3", marks=pytest.mark.s3)
_CLOUDS = [
    pytest.param("azure", marks=pytest.mark.azure),
    pytest.param("gcs", marks=pytest.mark.gcs),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    every = metafunc.definition.get_closest_marker("every_backend") is not None
    clouds = _CLOUDS if every else []
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", ["local", _S3, *clouds], indirect=True)
    if "remote_url" in metafunc.fixturenames:
        metafunc.parametrize("remote_url", [_S3, *clouds], indirect=True)


@pytest.fixture
def store_url(request, tmp_path):
    """A fresh, empty store: a local folder, or a fresh prefix in a bucket over HTTP."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def remote_url(request):
    """A fresh prefix in a bucket over HTTP: moto's S3, Azurite or fake-gcs-server."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def repo(store_url):
    r = Repository(store_url)
    yield r
    r.store.close()
