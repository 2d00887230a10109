"""bench/gpu_suite.sh runs end to end in its --dry-run mode (tiny sizes, CPU), so the GPU run is known to work
before a GPU is lent: every row is measured and the JSON says what ran where."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_gpu_suite_dry_run_writes_every_row(tmp_path):
    out = tmp_path / "suite.json"
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1", "GPU_SUITE_TIMEOUT": "150"}
    res = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--dry-run"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["environment"]["dry_run"] is True and data["environment"]["device"] == "cpu"
    rows = data["rows"]
    for name in ("capture", "train_topk_256", "train_topk_1k", "extract", "steer"):
        assert rows[name]["tokens_per_s"] > 0, name
    assert "sparsify_topk_1k" in rows  # measured, or skipped with the reason
    assert rows["extract"]["vs_capture"] > 0
    assert "wrote" in res.stdout
