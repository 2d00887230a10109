"""`eval --suite`: its flags reach the spec, and bad input is refused with one clear message before any work."""
from __future__ import annotations

from mistudio_core.cli import main


def test_bad_parts_and_unknown_sae_are_refused(store, capsys):
    h = ["--home", str(store.home), "eval", "--suite", "--dataset", "sotu"]
    assert main([*h, "--sae", "x", "--parts", "core,vibes"]) == 2
    assert "Choose benchmark parts among core, absorption, probing, autointerp" in capsys.readouterr().err
    assert main([*h, "--sae", "missing"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
    assert main([*h, "--sae", "x", "--labeler-url", "ftp://nowhere"]) == 2
    assert "Base URL" in capsys.readouterr().err
