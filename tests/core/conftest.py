import pytest

from casstore import Repository


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store_url(request, tmp_path):
    """A fresh, empty store: a local folder, or a prefix in moto's S3 server over HTTP."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")


@pytest.fixture
def repo(store_url):
    r = Repository(store_url)
    yield r
    r.store.close()
