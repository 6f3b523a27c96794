import pytest

from casstore.digest import Digest
from casstore.errors import InvalidInputError
from casstore.repo.keys import check_name, chunk_key, digest_from_chunk_key, version_key
from casstore.repo.versioning import bump, parse_spec


@pytest.mark.parametrize(
    "bad", ["", "a/b", "..", ".", "../x", "a\x00b", "a\nb", "-x", "x" * 129, " a", "a b", None, 3]
)
def test_bad_names_refused(bad):
    with pytest.raises(InvalidInputError):
        check_name("model", bad)


@pytest.mark.parametrize("good", ["bert", "vision_service", "llama-3.1-8b", "A1", "m+lora"])
def test_good_names(good):
    assert check_name("model", good) == good


def test_chunk_key_roundtrip():
    d = Digest.of(b"hello")
    assert digest_from_chunk_key(chunk_key(d)) == d
    assert digest_from_chunk_key("chunks/zz/" + d.hex()) is None
    assert digest_from_chunk_key("tmp/x") is None


def test_version_key_refuses_bad_semver():
    with pytest.raises(InvalidInputError):
        version_key("m", "1.2")
    with pytest.raises(InvalidInputError):
        version_key("m", "01.2.3")


def test_bump():
    assert bump(None) == "1.0.0"
    assert bump("1.2.3") == "1.2.4"
    assert bump("1.2.3", "minor") == "1.3.0"
    assert bump("1.2.3", "major") == "2.0.0"


@pytest.mark.parametrize(
    ("text", "semver", "ref"),
    [
        ("1.2.0", "1.2.0", None),
        ("v1.2.0", "1.2.0", None),
        ("@prod", None, "prod"),
        ("m_v1.2.0_20250918_143022", "1.2.0", None),
        ("v1.2.0_20250918_143022", "1.2.0", None),  # the "version" field of JSON output
        ("production", None, "production"),  # a bare ref name
        ("latest2", None, "latest2"),
    ],
)
def test_parse_spec(text, semver, ref):
    s = parse_spec("m", text)
    assert s.semver == semver
    assert s.ref == ref


@pytest.mark.parametrize(
    "bad",
    ["", "1.2", "v1", "1.2.3.4", "@", "@a/b", "other_v1.0.0_20250101_000000", "1.2.x",
     "v1.2.0_2025", "1.2.0_20250918_143022", "-x"],
)
def test_malformed_specs(bad):
    with pytest.raises(InvalidInputError):
        parse_spec("m", bad)
