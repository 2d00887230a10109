"""Can the Hugging Face hub be reached right now? One answer shared by datasets, models and SAE imports, so
every hub request fails within seconds, with the reason, when it cannot be made."""
from __future__ import annotations

import os
import socket
import threading

HUB_PROBE_TIMEOUT_S = 3.0
"""How long the reachability probe waits; DNS here can otherwise hang ~50 s."""


def hub_offline_reason() -> str | None:
    """Why hub requests cannot be made now, or None. Checks the offline switches first (free), then whether the
    hub's host can be reached within a few seconds (DNS here can hang ~50 s, so it runs in a daemon thread)."""
    import huggingface_hub.constants as hfc

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{var}=1 is set"
    if getattr(hfc, "HF_HUB_OFFLINE", False):
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE)"
    host = hfc.ENDPOINT.split("://")[-1].split("/")[0]
    result: dict = {}

    def probe():
        try:
            socket.create_connection((host.split(":")[0], 443), timeout=HUB_PROBE_TIMEOUT_S).close()
            result["ok"] = True
        except OSError as e:
            result["error"] = e

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT_S + 0.5)
    if result.get("ok"):
        return None
    return f"cannot reach {host} ({result.get('error') or 'timed out'})"
