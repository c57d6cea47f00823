"""The dashboard: a static page the control-plane API serves, drawing what the API
answers (registry, RED metrics, traces, events, logs). No build step and no CDN: plain
JavaScript modules and uPlot, vendored with its licence under ``static/vendor``."""

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
