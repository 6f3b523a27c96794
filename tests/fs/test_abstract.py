"""fsspec's own abstract test suite, the read-only part, run against ``casstore://``.

Run: every test of ``fsspec.tests.abstract.AbstractGetTests`` (copying files, folders, globs
and lists of paths *from* the filesystem under test to local disk). The scenario fixtures that
fsspec builds with ``makedirs``/``touch``/``pipe`` on the filesystem under test are overridden:
the same trees are built on local disk and committed as a version, and the test reads them back
through ``casstore://m@VERSION/...``. ``test_get_directory_recursive`` creates its source with
``fs.mkdir``/``fs.touch``; it is overridden to commit the same ``src/file`` tree first and then
runs fsspec's assertions unchanged.

Not run: ``AbstractCopyTests``, ``AbstractPutTests``, ``AbstractPipeTests``,
``AbstractOpenTests`` and ``AbstractMvTests``: each writes to the filesystem under test (cp
within it, put into it, pipe, open "wb"/"xb", mv), which ``casstore://`` refuses by design;
``test_fs.py`` checks that every such call raises PermissionError.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.tests.abstract import AbstractFixtures, AbstractGetTests

from casstore import Repository
from casstore.fs import CasstoreFileSystem


class TestCasstoreGet(AbstractFixtures, AbstractGetTests):
    @pytest.fixture
    def repo(self, tmp_path_factory: pytest.TempPathFactory) -> Repository:
        return Repository(str(tmp_path_factory.mktemp("store")))

    @pytest.fixture
    def fs(self, repo: Repository) -> CasstoreFileSystem:
        return CasstoreFileSystem(repo)

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(p.rstrip("/") for p in parts)

    @pytest.fixture
    def fs_path(self) -> str:
        return "m@latest"

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False  # a version holds files; folders exist only through their files

    @pytest.fixture
    def commit_tree(self, repo: Repository, tmp_path_factory: pytest.TempPathFactory):
        """Build a scenario with one of fsspec's builders on local disk, commit it as a new
        version of ``m``, return the scenario's ``source`` folder inside that version."""

        def commit(build: Callable[..., str]) -> str:
            root = tmp_path_factory.mktemp("tree")
            source = build(LocalFileSystem(auto_mkdir=True), os.path.join, str(root))
            version = repo.commit("m", [str(root)]).version.version
            return f"m@{version}/{Path(source).relative_to(root).as_posix()}"

        return commit

    @pytest.fixture
    def fs_bulk_operations_scenario_0(self, commit_tree) -> str:
        return commit_tree(self._bulk_operations_scenario_0)

    @pytest.fixture
    def fs_glob_edge_cases_files(self, commit_tree) -> str:
        return commit_tree(self._glob_edge_cases_files)

    @pytest.fixture
    def fs_dir_and_file_with_same_name_prefix(self, commit_tree) -> str:
        return commit_tree(self._dir_and_file_with_same_name_prefix)

    @pytest.fixture
    def fs_10_files_with_hashed_names(self, commit_tree) -> str:
        return commit_tree(self._10_files_with_hashed_names)

    def test_get_directory_recursive(self, fs, fs_join, fs_path, local_fs, local_join,
                                     local_target, commit_tree):  # fmt: skip
        def build(some_fs, some_join, some_path: str) -> str:
            src = some_join(some_path, "src")
            some_fs.touch(some_join(src, "file"))
            return src

        src = commit_tree(build)
        assert src == fs_join(fs_path.replace("latest", "1.0.0"), "src")
        # from here on, fsspec's test body unchanged
        target = local_target
        assert not local_fs.exists(target)
        for loop in range(2):
            fs.get(src, target, recursive=True)
            assert local_fs.isdir(target)
            if loop == 0:
                assert local_fs.isfile(local_join(target, "file"))
                assert not local_fs.exists(local_join(target, "src"))
            else:
                assert local_fs.isfile(local_join(target, "file"))
                assert local_fs.isdir(local_join(target, "src"))
                assert local_fs.isfile(local_join(target, "src", "file"))
        local_fs.rm(target, recursive=True)
        assert not local_fs.exists(target)
        for _ in range(2):
            fs.get(src + "/", target, recursive=True)
            assert local_fs.isdir(target)
            assert local_fs.isfile(local_join(target, "file"))
            assert not local_fs.exists(local_join(target, "src"))
