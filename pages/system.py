"""System tab and the at-a-glance header line: accelerator, CPU and RAM from the shared server-side monitor.

The samples come from `mistudio_core.platform.system.get_monitor()` (one thread per process), so every viewer and every
reload sees the same last hour. The charts refresh on their own timer, which only ticks while this tab is open.
"""
from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mistudio_core.platform.system import SystemMonitor, get_monitor

from .common import fmt_bytes, on_show, table
from .context import AppContext

CHART_POINTS = 600  # the hour is thinned to this many points on the server before it is sent


def monitor(ctx: AppContext) -> SystemMonitor:
    return ctx.shared.get("monitor") or get_monitor()


def hardware_line(sample: dict) -> str:
    """One line: each GPU's name, utilisation, memory and temperature (or 'no GPU (CPU only)'), then CPU and RAM."""
    parts = []
    for g in sample.get("gpus") or []:
        temp = f" · {g['temp']:.0f} °C" if g.get("temp") is not None else ""
        util = f"{g['util']:.0f}%" if g.get("util") is not None else "?"
        parts.append(f"**{g.get('name') or 'GPU'}** {util} · {fmt_bytes(g.get('mem_used'))} / "
                     f"{fmt_bytes(g.get('mem_total'))}{temp}")
    if not parts:
        parts.append("**no GPU (CPU only)**")
    parts.append(f"CPU {sample['cpu']:.0f}%")
    parts.append(f"RAM {fmt_bytes(sample['ram_used'])} / {fmt_bytes(sample['ram_total'])}")
    return " | ".join(parts)


def history_figure(samples: list[dict]) -> go.Figure:
    """Utilisation (%) and memory (GiB) over time for CPU/RAM and every GPU, from the server-side buffer."""
    from datetime import datetime

    x = [datetime.fromtimestamp(s["t"]) for s in samples]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("Utilisation (%) and temperature (°C)", "Memory used (GiB)"))
    fig.add_trace(go.Scatter(x=x, y=[s["cpu"] for s in samples], name="CPU %", mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[s["ram_used"] / 2**30 for s in samples], name="RAM", mode="lines"),
                  row=2, col=1)
    n_gpus = max((len(s.get("gpus") or []) for s in samples), default=0)
    for i in range(n_gpus):
        def series(key: str, scale: float = 1.0) -> list:
            vals = [(s["gpus"][i].get(key) if i < len(s.get("gpus") or []) else None) for s in samples]
            return [v / scale if v is not None else None for v in vals]
        fig.add_trace(go.Scatter(x=x, y=series("util"), name=f"GPU{i} %", mode="lines"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=series("temp"), name=f"GPU{i} °C", mode="lines", line_dash="dot"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=series("mem_used", 2**30), name=f"GPU{i} memory", mode="lines"),
                      row=2, col=1)
    fig.update_layout(height=560, template="plotly_white", margin=dict(l=50, r=20, t=40, b=40),
                      legend=dict(orientation="h", y=-0.08), uirevision="system")
    fig.update_yaxes(rangemode="tozero")
    return fig


def system_status(ctx: AppContext) -> str:
    """The header's hardware line from the latest sample."""
    return hardware_line(monitor(ctx).latest())


def system_history(ctx: AppContext) -> tuple[str, go.Figure, object]:
    """Summary text, the history chart and a per-device table."""
    mon = monitor(ctx)
    latest = mon.latest()
    samples = mon.history(max_points=CHART_POINTS) or [latest]
    rows = [{"device": f"GPU{g['index']}", "name": g.get("name"), "util": g.get("util"), "temp": g.get("temp"),
             "mem": f"{fmt_bytes(g.get('mem_used'))} / {fmt_bytes(g.get('mem_total'))}"}
            for g in latest.get("gpus") or []]
    rows.append({"device": "CPU", "name": f"{_cpu_count()} cores", "util": latest["cpu"],
                 "mem": f"{fmt_bytes(latest['ram_used'])} / {fmt_bytes(latest['ram_total'])}"})
    span = samples[-1]["t"] - samples[0]["t"]
    note = "" if latest.get("gpus") else f"\n\nNo GPU found, running on CPU only ({latest.get('gpu_error') or ''})."
    text = (f"{hardware_line(latest)}\n\nHistory: {len(samples)} samples over {span / 60:.1f} min, one every "
            f"{mon.interval:g} s, kept for {mon.history_s / 60:.0f} min on the server.{note}")
    cols = {"device": "Device", "name": "Name", "util": "Utilisation %", "temp": "Temp °C", "mem": "Memory"}
    return text, history_figure(samples), table(rows, cols)


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def build(ctx: AppContext) -> None:
    gr.Markdown("Accelerator, CPU and memory over the last hour, sampled on the server every few seconds "
                "(the same history for every viewer).")
    summary = gr.Markdown()
    chart = gr.Plot(label="History", elem_id="system-chart")
    devices = gr.Dataframe(label="Devices", interactive=False)
    timer = gr.Timer(5.0)  # inside the tab: ticks only while the tab is open
    refresh = gr.Button("Refresh", size="sm")
    outputs = [summary, chart, devices]
    fn = lambda: system_history(ctx)  # noqa: E731 — bound to this app's context
    timer.tick(fn, outputs=outputs, api_name="system_history_tick", show_progress="hidden",
               api_visibility="undocumented")
    refresh.click(fn, outputs=outputs, api_name="system_history")
    on_show(ctx, fn, [], outputs, api_name="system_history_show", api_visibility="undocumented")


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
