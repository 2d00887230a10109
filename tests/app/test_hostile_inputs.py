"""Hostile files and strings through every way in (SAE import, dataset add, model add, ids, paths), in the app's
handlers and the CLI: each gets a clear message (problem + fix), never a traceback, and leaves the data directory
exactly as it was."""
from __future__ import annotations

import json
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from api_home import snapshot
from mistudio_core.cli import main as cli_main
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.io import save_sae
from mistudio_core.sae.model import SAE
from pages import datasets as dp
from pages import models as mp
from pages import saes as sp
from pages import share as shp
from pages.context import AppContext

D_IN, D_SAE, HOOK = 16, 32, "blocks.1.hook_resid_post"
MODEL = {"architecture": "LlamaForCausalLM", "n_layers": 2, "d_model": D_IN,
         "hook_points": [f"blocks.{i}.hook_{s}" for i in range(2) for s in ("resid_pre", "resid_post")]}


def _sae(fill=None, d_in=D_IN) -> SAE:
    torch.manual_seed(0)
    sae = SAE(SAEConfig("topk", d_in, D_SAE, k=4, metadata={"hook_name": HOOK}))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
        if fill is not None:
            sae.W_dec[3, 2] = fill
    return sae


def _folder(root: Path, name: str, sae: SAE | None = None, hook: str | None = HOOK) -> Path:
    folder = root / name
    save_sae(sae or _sae(), folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.setdefault("metadata", {})["hook_name"] = hook
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def hostile_saes(root: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, words the message must contain)."""
    out = {}
    good = _folder(root, "good")
    t = _folder(root, "truncated")
    data = (t / "sae_weights.safetensors").read_bytes()
    (t / "sae_weights.safetensors").write_bytes(data[: len(data) // 3])
    out["truncated weights"] = (t, "sae_weights.safetensors")
    bad_json = _folder(root, "bad-json")
    (bad_json / "cfg.json").write_text("{not json")
    out["cfg.json not JSON"] = (bad_json, "cfg.json")
    out["NaN weights"] = (_folder(root, "nan", _sae(float("nan"))), "NaN")
    out["Inf weights"] = (_folder(root, "inf", _sae(float("inf"))), "NaN/Inf")
    out["layer 999"] = (_folder(root, "deep", hook="blocks.999.hook_resid_post"), "no hook point")
    out["hook is a path"] = (_folder(root, "trav", hook="../../../tmp/x"), "not a hook name")
    out["hook with code"] = (_folder(root, "code", hook="blocks.1.hook_resid_post; import os"), "not a hook name")
    out["no hook at all"] = (_folder(root, "nohook", hook=None), "hook point")
    out["width is not d_model"] = (_folder(root, "wide", _sae(d_in=24)), "d_model")
    shape = _folder(root, "shape")
    save_file({"W_enc": torch.zeros(3, 3)}, str(shape / "sae_weights.safetensors"))
    out["wrong shapes"] = (shape, "W_")
    pickled = root / "pickled"
    pickled.mkdir()
    (pickled / "sae.pt").write_bytes(b"\x80\x04\x95" + os.urandom(64))
    out["pickle only"] = (pickled, "pickle")
    empty = root / "empty"
    empty.mkdir()
    out["empty folder"] = (empty, "not an SAE folder")
    npz = root / "layer_1" / "width_32" / "average_l0_5"
    npz.mkdir(parents=True)
    np.savez(npz / "params.npz", W_enc=np.array([object()], dtype=object))
    out["npz with objects"] = (npz, "params.npz")
    members = {f"sae/{f.name}": f.read_bytes() for f in good.iterdir()}
    out["zip bomb"] = (_zip(root / "bomb.zip", {**members, "sae/pad.bin": bytes(60 * 1024 ** 2)}), "zip bomb")
    out["many members"] = (_zip(root / "many.zip", {f"f{i}": b"x" for i in range(1_100)}), "more than")
    out["traversal member"] = (_zip(root / "trav.zip", {"../evil.txt": b"x", **members}), "outside")
    out["not an archive"] = (root / "noise.zip", "not a readable")
    (root / "noise.zip").write_bytes(os.urandom(2048))
    out["empty archive file"] = (root / "empty.tar.gz", "not a readable")
    (root / "empty.tar.gz").write_bytes(b"")
    link_tar = root / "link.tar"
    with tarfile.open(link_tar, "w") as tf:
        info = tarfile.TarInfo("sae/cfg.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    out["symlink member"] = (link_tar, "link")
    return out


HOSTILE_IDS = {"5,000 characters": "a" * 5000, "NUL": "sotu\x00x", "traversal": "../../etc/passwd",
               "RTL override": "sotu\u202eexe", "full-width": "ｓｏｔｕ", "zero-width": "so\u200btu",
               "blank": "   ", "hidden": ".tmp-x", "newline": "a\nb", "slash": "a/b", "backslash": "a\\b",
               "emoji": "sae-🙂"}


@pytest.fixture
def ctx(store, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with store.create("models", "tiny", dict(MODEL), artifact_id="tiny"):
        pass
    return AppContext(store=store, allowed_roots=[store.home, data])


def cli(argv: list[str]) -> int:
    try:
        return cli_main(argv)
    except SystemExit as e:  # argparse's own refusals (exit 2, usage on stderr)
        return int(e.code or 0)


def _clear(message: str) -> None:
    assert message.startswith("⚠"), message
    assert "Traceback" not in message and "Unexpected error" not in message, message
    assert len(message) < 700, message


def test_hostile_sae_files_are_refused_clearly_in_app_and_cli(ctx, tmp_path, capsys):
    cases = hostile_saes(tmp_path / "data")
    assert len(cases) >= 18
    before = snapshot(ctx.store.home)
    for name, (path, words) in cases.items():
        status, _ = shp.import_local(ctx, str(path), "tiny", "", "", "")
        _clear(status)
        assert words.lower() in status.lower(), (name, status)
        assert str(tmp_path) not in status.replace(str(path), ""), (name, status)  # no server paths besides theirs
        rc = cli(["--home", str(ctx.store.home), "import", str(path), "--model", "tiny"])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and "Traceback" not in err, (name, rc, err)
        assert snapshot(ctx.store.home) == before, f"{name} left something in the data directory"
    status, _ = shp.import_local(ctx, str(_folder(tmp_path / "data", "fine")), "tiny", "", "", "")
    assert status.startswith("✓"), status  # the same path takes a good SAE


@pytest.mark.parametrize("label", list(HOSTILE_IDS))
def test_hostile_ids_get_one_clear_message_everywhere(ctx, label, capsys):
    bad = HOSTILE_IDS[label]
    before = snapshot(ctx.store.home)
    for handler in (dp.delete, mp.summary, mp.delete, sp.detail, sp.delete):
        out = handler(ctx, bad)
        _clear(out[0])
    out = dp.statistics(ctx, bad, "tiny")
    _clear(out[0])
    out = shp.export(ctx, bad, "saelens")
    _clear(out[0] if isinstance(out, tuple) else out)
    home = str(ctx.store.home)
    for argv in (["datasets", "show", bad], ["datasets", "delete", bad], ["models", "show", bad],
                 ["models", "delete", bad], ["export", bad], ["jobs", "show", bad]):
        rc = cli(["--home", home, *argv])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and "Traceback" not in err, (argv, rc, err)
        assert len(err) < 600, err
    assert snapshot(ctx.store.home) == before


HOSTILE_PATHS = {"NUL": "data/a\x00b.txt", "5,000 characters": "x/" * 2500, "newline": "a\nb.txt",
                 "outside": "/etc/passwd", "traversal": "{data}/../../../etc/passwd", "missing": "{data}/nope.txt",
                 "long component": "{data}/" + "y" * 300}


@pytest.mark.parametrize("label", list(HOSTILE_PATHS))
def test_hostile_paths_for_datasets_models_and_imports(ctx, label, capsys):
    path = HOSTILE_PATHS[label].format(data=ctx.allowed_roots[1])
    before = snapshot(ctx.store.home)
    _clear(dp.add_local(ctx, path, "", "")[0])
    _clear(mp.add_local(ctx, path, "")[0])
    _clear(shp.import_local(ctx, path, "", "", "", "")[0])
    for argv in (["datasets", "add", "local", path], ["models", "add", "local", path],
                 ["import", path]):
        rc = cli(["--home", str(ctx.store.home), *argv])
        err = capsys.readouterr().err
        assert rc in (1, 2) and "Traceback" not in err, (argv, rc, err)
    assert snapshot(ctx.store.home) == before


def test_hostile_model_and_dataset_files(ctx, capsys):
    data = ctx.allowed_roots[1]
    fake = data / "model.gguf"
    fake.write_bytes(b"GGUF" + struct.pack("<I", 3) + os.urandom(40))
    garbage = data / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{\"model_type\": \"llama\", \"hidden_size\": ")
    files = {"bad.parquet": b"PAR1" + os.urandom(100), "bad.jsonl": b"{\"text\": 1\n{{{", "empty.txt": b"",
             "binary.csv": os.urandom(500), "nocol.csv": b"a,b\n1,2\n"}
    for name, blob in files.items():
        (data / name).write_bytes(blob)
    before = snapshot(ctx.store.home)
    status = mp.add_local(ctx, str(fake), "")[0]
    _clear(status)
    assert "model.gguf" in status and "GGUF" in status
    _clear(mp.add_local(ctx, str(garbage), "")[0])
    rc = cli(["--home", str(ctx.store.home), "models", "add", "local", str(fake)])
    err = capsys.readouterr().err
    assert rc == 2 and "model.gguf" in err and "Traceback" not in err, err
    for name in files:
        _clear(dp.add_local(ctx, str(data / name), "", "")[0])
    assert snapshot(ctx.store.home) == before


def test_upload_messages_show_no_server_paths(ctx, tmp_path):
    from pages.common import hide_paths, scrub

    hide_paths((str(ctx.store.home), ""), (str(tmp_path / "uploads"), ""))
    msg = scrub(f"Cannot read {ctx.store.home}/saes/x/cfg.json or {tmp_path}/uploads/abc/sae.zip")
    assert str(tmp_path) not in msg and "saes/x/cfg.json" in msg and "abc/sae.zip" in msg
