"""`datasets add local` never follows a symlink out of the folder it was given: refused, naming link and target."""
from __future__ import annotations

import os

import pytest

from mistudio_core.cli import main
from mistudio_core.platform.store import Store

TEXT = "The state of the union is strong. " * 10


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the corpus")
    return folder, outside


def add(tmp_path, capsys, path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--home", str(tmp_path / "home"), "datasets", "add", "local", str(path)])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("link_kind", ["file", "folder"])
def test_a_link_out_of_the_given_folder_is_refused_naming_it(tmp_path, capsys, corpus, link_kind):
    folder, outside = corpus
    link = folder / ("leak.txt" if link_kind == "file" else "more")
    os.symlink(outside / "secret.txt" if link_kind == "file" else outside, link)
    code, text = add(tmp_path, capsys, folder)
    assert code == 2 and str(link) in text and str(outside) in text and "symlink" in text, text
    assert Store(tmp_path / "home").list("datasets") == [], "nothing was added"


def test_a_given_path_that_is_a_link_elsewhere_is_refused(tmp_path, capsys, corpus):
    folder, outside = corpus
    link = folder / "passwd.txt"
    os.symlink("/etc/passwd", link)
    code, text = add(tmp_path, capsys, link)
    assert code == 2 and str(link) in text and "/etc/passwd" in text, text
    code, text = add(tmp_path, capsys, folder)  # and the same link met inside the folder
    assert code == 2 and "/etc/passwd" in text, text


def test_links_inside_the_folder_are_fine(tmp_path, capsys, corpus):
    folder, _ = corpus
    (folder / "sub").mkdir()
    os.symlink(folder / "a.txt", folder / "sub" / "same.txt")
    code, text = add(tmp_path, capsys, folder)
    assert code == 0, text
    (m,) = Store(tmp_path / "home").list("datasets")
    assert m["n_docs"] == 2
