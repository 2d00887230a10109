"""`python -m mistudio_core datasets ...` end to end through `cli.main`, plus one real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from mistudio_core.cli import main
from tiny_tokenizer import TINY_MODEL_ID, register_tiny_tokenizer_model


def run(capsys, store, *argv, as_json=True):
    rc = main(["--home", str(store.home), *(["--json"] if as_json else []), "datasets", *argv])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if as_json and rc == 0 else out.out), out.err


def test_add_local_tokenize_show_list_delete(capsys, store, tmp_path):
    register_tiny_tokenizer_model(store)
    pd.DataFrame({"n": range(30), "body": [f"document number {i} about the union" for i in range(30)]}).to_csv(
        tmp_path / "d.csv", index=False)
    rc, added, _ = run(capsys, store, "add", "local", str(tmp_path / "d.csv"), "--name", "mine")
    assert rc == 0 and added["n_docs"] == 30 and added["name"] == "mine"
    did = added["id"]

    rc, stats, err = run(capsys, store, "tokenize", did, "--model", TINY_MODEL_ID, "--context-size", "16")
    assert rc == 0 and stats["context_size"] == 16 and stats["n_tokens"] == stats["n_contexts"] * 16
    assert "[100%]" in err  # progress goes to stderr, stdout stays valid JSON

    rc, shown, _ = run(capsys, store, "show", did)
    assert shown["manifest"]["tokenizations"] == [TINY_MODEL_ID]
    assert shown["tokenizations"][0]["stats"]["n_contexts"] == stats["n_contexts"]
    assert shown["preview"][0]["text"] == "document number 0 about the union"
    rc, text, _ = run(capsys, store, "show", did, as_json=False)
    assert f"tokenized for {TINY_MODEL_ID}" in text and "document number 0" in text

    rc, rows, _ = run(capsys, store, "list")
    assert [(r["id"], r["docs"], r["tokenized_for"]) for r in rows] == [(did, 30, TINY_MODEL_ID)]
    rc, _, _ = run(capsys, store, "delete", did)
    assert rc == 0 and run(capsys, store, "list")[1] == []


def test_tokenize_options_reach_the_config(capsys, store, tmp_path):
    register_tiny_tokenizer_model(store)
    (tmp_path / "a.txt").write_text("the state of the union is strong " * 40)
    did = run(capsys, store, "add", "local", str(tmp_path / "a.txt"))[1]["id"]
    rc, stats, _ = run(capsys, store, "tokenize", did, "--model", TINY_MODEL_ID, "--context-size", "8",
                       "--no-bos", "--no-pack", "--max-tokens", "40")
    assert rc == 0 and stats["n_tokens"] == 40
    cfg = json.loads((store.path("datasets", did) / "tokenized" / TINY_MODEL_ID / "config.json").read_text())
    assert (cfg["prepend_bos"], cfg["pack"], cfg["max_tokens"], cfg["bos_token_id"]) == (False, False, 40, None)


def test_user_errors_exit_2_with_one_clear_line(capsys, store, tmp_path):
    rc, out, err = run(capsys, store, "add", "local", str(tmp_path / "missing.txt"))
    assert rc == 2 and err.startswith("error: File or folder not found") and "Traceback" not in err
    rc, _, err = run(capsys, store, "add", "hub", "roneneldan/TinyStories", "--n-rows", "5")
    assert rc == 2 and "HF_HUB_OFFLINE" in err
    rc, _, err = run(capsys, store, "tokenize", "nope", "--model", "x")
    assert rc == 2 and "No dataset with id 'nope'" in err
    rc, _, err = run(capsys, store, "tokenize", "nope", "--model", "x", "--context-size", "1")
    assert rc == 2 and "context_size" in err


def test_add_builtin_then_list_human(capsys, store):
    rc, m, _ = run(capsys, store, "add", "builtin")
    assert rc == 0 and m["id"] == "sotu" and m["n_docs"] == 237
    rc, text, _ = run(capsys, store, "list", as_json=False)
    assert "id=sotu" in text and "docs=237" in text


def test_module_help_in_a_subprocess(store):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    top = subprocess.run([sys.executable, "-m", "mistudio_core", "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert top.returncode == 0 and "datasets" in top.stdout
    sub = subprocess.run([sys.executable, "-m", "mistudio_core", "--home", str(store.home), "datasets", "add",
                          "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert sub.returncode == 0 and all(s in sub.stdout for s in ("builtin", "local", "hub"))
