"""Shared Streamlit helpers for the page's views: cached loaders, the clip player, unit links.

Every view takes the workspace path as a string; loaders are cached per resolved path and per index build, so
a rebuilt workspace is reloaded.

Examples
--------
>>> from audiovis.ui.common import get_index, get_model, clip_player, unit_link
>>> index = get_index(ws_path)                    # UnitIndex (st.cache_resource)
>>> st.markdown(f"[conv2:17]({unit_link('conv2:17', ws_path)})")
"""
from __future__ import annotations

import logging
import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from ..adapters import is_adapter_index
from ..errors import AudiovisError
from ..explore import SORT_KEYS, ClipView, Explorer, HeatMap, workspace_state
from ..pictures import render_heatmap, render_histogram, render_scores
from ..workspace import Workspace

DEFAULT_WS = "workspaces/demo"
WORKSPACES_ENV = "AUDIOVIS_WORKSPACES"   # the served workspaces, os.pathsep-separated (set by `audiovis serve`)
ALLOW_ADD_ENV = "AUDIOVIS_ALLOW_ADD"     # "1": the page may write (`audiovis serve --allow-writes`, or --allow-add)
log = logging.getLogger("audiovis.page")


def default_workspace() -> str:
    """``$AUDIOVIS_WORKSPACE``, else ``workspaces/demo``."""
    return os.environ.get("AUDIOVIS_WORKSPACE") or DEFAULT_WS


def served_workspaces() -> dict[str, str]:
    """The workspaces this server was started with, ``{name: resolved path}`` in the order given.

    From ``$AUDIOVIS_WORKSPACES`` (``audiovis serve -w A -w B``), else the single :func:`default_workspace`. A
    visitor only ever picks a *name* among these: nothing a visitor types is turned into a path. Names are the
    folders' names (``demo``), made unique with ``-2``, ``-3``...
    """
    return dict(_served(os.environ.get(WORKSPACES_ENV, ""), default_workspace()))


@lru_cache(maxsize=8)
def _served(raw: str, default: str) -> tuple[tuple[str, str], ...]:
    """(name, path) pairs of :func:`served_workspaces`, resolved once per setting (every link asks)."""
    paths = [p for p in raw.split(os.pathsep) if p.strip()] or [default]
    out: dict[str, str] = {}
    for p in paths:
        rp = str(Path(p).expanduser().resolve())
        if rp in out.values():
            continue
        base = Path(rp).name or "workspace"
        name, i = base, 2
        while name in out:
            name, i = f"{base}-{i}", i + 1
        out[name] = rp
    return tuple(out.items())


def pick_workspace(requested: str | None) -> tuple[str, bool]:
    """The name of the served workspace a visitor asked for (``?ws=``: a name, or a served path exactly as
    served), else the first one. Returns ``(name, refused)``: refused is True when ``requested`` named
    something this server does not serve."""
    served = served_workspaces()
    first = next(iter(served))
    if not requested:
        return first, False
    if requested in served:
        return requested, False
    for name, path in served.items():
        if requested == path:
            return name, False
    return first, True


def workspace_name(ws_path: str) -> str:
    """The name under which a served workspace appears in URLs (its path when it is not served)."""
    served = served_workspaces()
    for name, path in served.items():
        if path == str(ws_path):                  # the page passes the served path itself: no resolution
            return name
    rp = str(Path(ws_path).expanduser().resolve())
    for name, path in served.items():
        if path == rp:
            return name
    return str(ws_path)


def writes_allowed() -> bool:
    """True when the server was started with ``--allow-writes`` (alias ``--allow-add``): only then does the page
    write into a workspace (add an uploaded song, run a dissection, cache a dream). Otherwise it only reads."""
    return os.environ.get(ALLOW_ADD_ENV, "") == "1"


def upload_mb() -> int:
    """The largest upload the page takes, in MB (the cold-start limit; ``audiovis serve`` sets Streamlit's
    ``server.maxUploadSize`` to it, so the widget and the page state one limit)."""
    from ..coldstart import MAX_UPLOAD_BYTES
    return MAX_UPLOAD_BYTES // 1048576


def page_error(e: BaseException, ws_name: str = "WS") -> str:
    """What a visitor is told when a view fails: what is wrong and which command repairs it, never a traceback
    (that goes to the server log, logger ``audiovis.page``)."""
    log.error("view failed in workspace %s", ws_name, exc_info=e)
    ws_arg = f"-w {ws_name}" if ws_name else ""
    if isinstance(e, AudiovisError):
        return str(e)
    if isinstance(e, sqlite3.DatabaseError):
        return (f"The catalogue of workspace '{ws_name}' (catalog.sqlite) cannot be read ({e}). Rebuild it with "
                f"`audiovis ingest {ws_arg} --audio AUDIO_DIR --plays PLAYS --force`, then `audiovis run {ws_arg} "
                f"--audio AUDIO_DIR --plays PLAYS` (finished stages are reused).")
    if isinstance(e, FileNotFoundError):
        missing = Path(e.filename).name if e.filename else "a file"
        return (f"Workspace '{ws_name}' is missing {missing}. Rebuild its index with `audiovis index {ws_arg} "
                f"--force` (or `audiovis run` to redo every unfinished stage).")
    return (f"This view failed ({type(e).__name__}); the server log has the details. If an artifact of "
            f"workspace '{ws_name}' is damaged, `audiovis run {ws_arg} --audio AUDIO_DIR --plays PLAYS` redoes "
            f"every unfinished stage and `audiovis report {ws_arg}` lists the problems found so far.")


def index_stamp(ws_path: str) -> str:
    """Changes when the index is rebuilt, or its dissection, explanations or dictionaries (cache key)."""
    idx = Path(ws_path) / "index"
    files = [idx / "units.npz", idx / "dissection.json", idx / "explanations.json"]
    files += sorted((idx / "dict").glob("*/units.npz")) if (idx / "dict").is_dir() else []
    return ":".join(str(p.stat().st_mtime_ns) if p.exists() else "0" for p in files)


@st.cache_resource(show_spinner="Loading the model and the unit index...", max_entries=4)
def _explorer(ws_path: str, stamp: str) -> Explorer:
    import torch
    torch.set_grad_enabled(False)
    # one small forward per view: a single intra-op thread is ~8x faster than two on a busy 2-core machine
    torch.set_num_threads(int(os.environ.get("AUDIOVIS_TORCH_THREADS", "1")))
    return Explorer(ws_path)


def get_explorer(ws_path: str) -> Explorer:
    """The :class:`~audiovis.explore.Explorer` of a finished workspace (cached, one per workspace)."""
    ws_path = str(Workspace(ws_path).path)
    return _explorer(ws_path, index_stamp(ws_path))


def get_index(ws_path: str):
    """The workspace's :class:`~audiovis.index.UnitIndex` (cached)."""
    return get_explorer(ws_path).index


def get_model(ws_path: str):
    """The workspace's trained model in eval mode (cached)."""
    return get_explorer(ws_path).model


def has_trained_cnn(ws_path: str) -> bool:
    """Whether the workspace's index is of the CNN audiovis trained from plays (cold start, dreams, auralisation
    and backward queries need it), not of a model of your own (``--model``)."""
    ws = Workspace(ws_path)
    try:
        return not is_adapter_index(ws) and ws.get_meta("done:train") is not None
    finally:
        ws.close()


def ws_state(ws_path: str) -> tuple[str, str]:
    """('ready' | 'missing' | 'incomplete', message for the empty state)."""
    return workspace_state(ws_path)


@st.cache_data(show_spinner=False, max_entries=2000)
def encoded_clip(ws_path: str, song_idx: int, start_s: float, end_s: float, fmt: str = "ogg") -> tuple[bytes, str]:
    """A span of a song from its original file, encoded once (OGG Vorbis by default) and cached."""
    c = get_explorer(ws_path).clip_audio(song_idx, start_s, end_s, fmt)
    return c.data, c.mime


@st.cache_data(show_spinner=False, max_entries=256)
def unit_view_data(ws_path: str, unit: str, n: int = 10, bottom: bool = False, stamp: str = "") -> list[ClipView]:
    """Clips of a unit view with pictures and labels, and their encoded audio (each clip cached on its own)."""
    ex = get_explorer(ws_path)
    rows = ex.unit_view(unit, n=n, bottom=bottom, audio=False)
    for r in rows:
        r.audio, r.mime = encoded_clip(ws_path, r.song_idx, r.start_s, r.end_s)
    return rows


@st.cache_data(show_spinner=False, max_entries=64)
def unit_table(ws_path: str, layer: str | None, sort: str = "strength", query: str = "", flagged: bool = False,
               stamp: str = "") -> list[dict]:
    """:meth:`Explorer.unit_table` (cached): dead and edge units only with ``flagged``."""
    return get_explorer(ws_path).unit_table(layer, sort=sort, query=query, flagged=flagged)


@st.cache_data(show_spinner=False, max_entries=32)
def playlist_audio(ws_path: str, unit: str, n: int, bottom: bool = False, stamp: str = "") -> tuple[bytes, str, list]:
    """A unit's clips as one track (:func:`audiovis.playlist.playlist`): bytes, mime, each clip's start (s)."""
    from ..playlist import playlist
    p = playlist(get_explorer(ws_path), unit, n, bottom)
    return p.data, p.mime, p.starts


@st.cache_data(show_spinner=False, max_entries=32)
def heatmap(ws_path: str, layer: str, stamp: str = "") -> tuple[HeatMap, bytes]:
    hm = get_explorer(ws_path).heatmap(layer)
    return hm, render_heatmap(hm)


@st.cache_data(show_spinner=False, max_entries=64)
def score_png(ws_path: str, layer: str, stamp: str = "") -> bytes:
    """The distribution of a layer's explanation scores (:func:`audiovis.pictures.render_scores`)."""
    ex = get_explorer(ws_path)
    return render_scores([ex.explanations.get(u, {}).get("score") for u in ex.index.units(layer)], 480, 140)


def layer_table_columns() -> dict:
    """The layer overview table's columns: every number named, with a help text and one number format."""
    num = st.column_config.NumberColumn
    return {"open": st.column_config.LinkColumn("open", display_text="open ↗"),
            "strength": num("strength", format="%.2f", help="mean activation of its top clips"),
            "selectivity": num("selectivity (σ)", format="%.2f", help="(strength - mean) / std over all windows"),
            "mean": num("mean", format="%.2f", help="mean activation over all windows"),
            "label_score": num("AUROC", format="%.3f", help="the label's AUROC: how well the unit's activation "
                               "separates the concept's windows from the rest (0.5: chance, 1: perfectly)"),
            "score": num("r", format="%.2f", help="the explanation's simulation score: Pearson r of the predicted "
                         "and real activation on held-out songs"),
            "z": num("z", format="%.2f", help="mean activation on the top concept's windows, in standard "
                     "deviations from the unit's mean"),
            "sparsity": st.column_config.ProgressColumn("sparsity", min_value=0, max_value=1, format="%.2f",
                                                        help="share of windows where the unit is silent (<= 0)")}


def sort_keys(ex: Explorer) -> list[str]:
    """The unit list's sort keys: 'label' only with a dissection, 'score' only with explanations."""
    return [s for s in SORT_KEYS if (s != "label" or ex.dissection) and (s != "score" or ex.explanations)]


def explanation_markdown(e: dict) -> str:
    """'**Explanation:** groove=ska, bright · simulation score 0.83' for a unit view."""
    score = "n/a" if e.get("score") is None else f"{e['score']:.2f}"
    return (f"**Explanation:** {e.get('text', '')} · simulation score **{score}** (correlation of the activation "
            f"predicted from these terms with the real one, on songs the prediction was not fitted on)")


@st.cache_data(show_spinner=False, max_entries=512)
def histogram_png(ws_path: str, unit: str, stamp: str = "") -> bytes:
    s = get_explorer(ws_path).unit_stats(unit)
    return render_histogram(s["hist"], s["hist_edges"])


def writes_off_caption(what: str, command: str) -> None:
    """Says that ``what`` would write into the workspace, which this server does not allow, and the command
    that does it from a shell."""
    st.caption(f"{what} writes into the workspace, and this server only reads (the operator can allow it with "
               f"`audiovis serve --allow-writes`). From a shell: `{command}`.")


def clip_player(data: bytes, mime: str = "audio/ogg") -> None:
    """An audio player for encoded bytes (plays exactly them: no peak normalisation, no rounding of times)."""
    st.audio(data, format=mime)


def unit_link(unit: str, ws_path: str | None = None, n: int = 10, bottom: bool = False) -> str:
    """A relative URL (query string) that opens a unit view, e.g. ``?ws=...&view=unit&unit=conv2%3A17&n=10``."""
    q = {}
    if ws_path:
        q["ws"] = workspace_name(ws_path)
    q.update({"view": "unit", "unit": str(unit), "n": int(n), "bottom": int(bool(bottom))})
    return "?" + urlencode(q)


def song_link(song_id: str, ws_path: str | None = None, layer: str | None = None) -> str:
    q = {"ws": workspace_name(ws_path)} if ws_path else {}
    q.update({"view": "song", "song": song_id})
    if layer:
        q["layer"] = layer
    return "?" + urlencode(q)


def listener_link(user_id: str, ws_path: str | None = None) -> str:
    """A relative URL that opens a listener's page (``?view=listeners&user=...``)."""
    q = {"ws": workspace_name(ws_path)} if ws_path else {}
    q.update({"view": "listeners", "user": user_id})
    return "?" + urlencode(q)


def notice(msg: str) -> None:
    """A notice shown above the view in this run (what the URL asked for and what is shown instead)."""
    st.session_state.setdefault("_notices", []).append(msg)


def goto(**state) -> None:
    """Navigate inside the page: the values are applied to the widgets at the start of the next run."""
    st.session_state["_goto"] = state
    st.rerun()


def format_labels(labels: dict) -> str:
    """'groove=rock · lead=none→flute · ...' for a clip's ground truth."""
    return " · ".join(f"{c}={v}" for c, v in labels.items())


def rebuilding_notice(ws_path: str) -> None:
    """Say so while a writer (``audiovis run``, a stage, ``add``) holds the workspace's lock (:mod:`audiovis.lock`)."""
    from ..lock import lock_holder
    holder = lock_holder(ws_path)
    if holder is not None:
        st.info(f"This workspace is being rebuilt ({holder.get('command') or 'a writer'}, PID "
                f"{holder.get('pid', '?')}): what you see may change; reload the page when it finishes.", icon="🔧")
