"""audiovis listening page: pick a unit of the content CNN and hear what excites it.

``audiovis serve -w WS [-w WS2 ...]`` runs this file (from the installed package); ``streamlit run
streamlit_app.py`` in a source checkout runs the same page through a thin entry point, serving
``$AUDIOVIS_WORKSPACE`` or ``workspaces/demo``. The page serves only those workspaces: ``?ws=`` picks one of them
by name and opens nothing else. A view that fails shows what is wrong and how to repair it; the traceback goes to
the server log only. A thin shell: everything it shows is computed by :mod:`audiovis.explore` and
:mod:`audiovis.clips`, loaded through :mod:`audiovis.ui.common`.

URL query parameters reopen a view: ``?ws=...&view=unit&unit=conv2:17&n=10&bottom=0``,
``?view=layer&layer=conv2``, ``?view=song&song=S0001&layer=conv3`` (``ws`` is a served workspace's name).

Imports are absolute: Streamlit runs this file as a script (``__main__``), not as a module of the package.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import random

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import streamlit as st

from audiovis.errors import AudiovisError
from audiovis.flags import EDGE_S, FLAG_TEXT
from audiovis.playlist import GAP_S
from audiovis.ui.common import (
    clip_player,
    encoded_clip,
    explanation_markdown,
    format_labels,
    get_explorer,
    goto,
    has_trained_cnn,
    heatmap,
    histogram_png,
    index_stamp,
    layer_table_columns,
    notice,
    page_error,
    pick_workspace,
    playlist_audio,
    rebuilding_notice,
    score_png,
    served_workspaces,
    song_link,
    sort_keys,
    unit_link,
    unit_table,
    unit_view_data,
    workspace_name,
    ws_state,
)
from audiovis.ui.listeners import unit_listeners_ui
from audiovis.ui.why import layer_walk_ui, why_ui

VIEWS = {"unit": "Unit", "layer": "Layer overview", "song": "Song"}
OPTIONAL_VIEWS = {"compare": "A/B units", "listeners": "Listener", "coldstart": "Cold start",
                  "visualise": "Visualise"}
ALL_LAYERS = "(all layers)"
# widget keys kept across views (Streamlit drops the state of widgets not drawn in a run)
PERSIST = ("ws", "view", "layer", "unit", "n", "bottom", "sort", "query", "ov_layer", "ov_sort", "song",
           "song_query", "song_layer", "song_units", "ov_query", "flagged", "ov_flagged", "unit_a", "unit_b",
           "listener")


# ----------------------------------------------------------------------------- state and URL
def available_views() -> dict[str, str]:
    """The built-in views plus the optional ones whose module imports (``audiovis.ui.<name>``)."""
    out = dict(VIEWS)
    for name, label in OPTIONAL_VIEWS.items():
        try:
            if importlib.util.find_spec(f"audiovis.ui.{name}") is not None:
                out[name] = label
        except (ImportError, ValueError):
            pass
    return out


def _qp_int(qp, key: str, default: int) -> int:
    try:
        return int(qp.get(key, default))
    except (TypeError, ValueError):
        notice(f"{key}={qp.get(key)!r} is not a whole number; using {default}.")
        return default


def init_state() -> None:
    """First run of a session: widget values from the URL's query parameters (what cannot be honoured gives a
    notice). Later runs: apply a pending navigation (:func:`audiovis.ui.common.goto`) and keep widget values
    across views."""
    ss = st.session_state
    if "_init" not in ss:
        ss["_init"] = True
        qp = st.query_params
        ss["ws"], ss["_ws_refused"] = pick_workspace(qp.get("ws"))
        view = qp.get("view", "unit")
        views = available_views()
        ss["view"] = view if view in views else "unit"
        if view not in views:
            notice(f"view {view!r} does not exist; showing the unit view (views: {', '.join(views)}).")
        if qp.get("unit"):
            ss["_unit_from_url"] = qp["unit"].strip()
        elif qp.get("layer"):
            ss["_layer_from_url"] = qp["layer"]
        if qp.get("layer"):
            ss["ov_layer"] = ss["song_layer"] = qp["layer"]
        ss["n"] = _qp_int(qp, "n", 10)
        ss["bottom"] = str(qp.get("bottom", "0")).lower() in ("1", "true", "yes")
        if qp.get("song"):
            ss["song"] = ss["_song_from_url"] = qp["song"]
        if qp.get("user"):
            ss["_user_from_url"] = qp["user"]
        for side in ("a", "b"):                     # the A/B view's units
            if qp.get(side):
                ss[f"unit_{side}"] = qp[side]
        if qp.get("q"):
            ss["query"], ss["_open_first"] = qp["q"], not qp.get("unit")
    pending = ss.pop("_goto", None)
    if pending:
        for k, v in pending.items():
            ss[k] = v
    for k in PERSIST:
        if k in ss:
            ss[k] = ss[k]


def sync_query(params: dict) -> None:
    """Write the current view into the URL (shareable), only when it changed."""
    params = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


# ----------------------------------------------------------------------------- views
def workspace_ui() -> str | None:
    """Sidebar workspace picker (among the served ones only); the empty state when the workspace is not finished.
    Returns its path."""
    st.sidebar.title("audiovis")
    served = served_workspaces()
    if st.session_state.get("ws") not in served:
        st.session_state["ws"] = next(iter(served))
    if len(served) > 1:
        name = st.sidebar.selectbox("Workspace", list(served), key="ws", help="the workspaces this server serves")
    else:
        name = st.session_state["ws"]
        st.sidebar.caption(f"Workspace: **{name}**")
    if st.session_state.pop("_ws_refused", False):
        st.sidebar.warning("The workspace in the link is not served here; showing "
                           f"'{name}'. This server serves: {', '.join(served)}.")
    path = served[name]
    state, msg = ws_state(path)
    if state != "ready":
        st.title("audiovis: hear what a music-recommendation network has learned")
        st.info(msg, icon="📂")
        st.markdown("Build the demo workspace (480 songs with ground truth, about 5 minutes on a laptop):")
        st.code("audiovis demo", language="bash")
        st.markdown("or one from your own music and listening log:")
        st.code(f"audiovis run --workspace {path} --audio AUDIO_DIR --plays PLAYS.tsv", language="bash")
        st.markdown(f"Then serve it with `audiovis serve --workspace {path}`.")
        return None
    return path


def _unit_desc(ex, rows: list[dict]) -> dict[str, str]:
    out = {}
    for r in rows:
        s = f"{ex.unit_label(r['unit'])}  ·  sel {r['selectivity']:.1f}  ·  str {r['strength']:.2f}"
        if r.get("flag"):
            s += f"  ·  [{r['flag']}]"
        if r.get("label"):
            s += f"  ·  {r['label']}" + (f" {r['label_score']:.2f}" if r["label_score"] == r["label_score"] else "")
        if r.get("note"):
            s += f"  ·  {r['note']}"
        if r.get("explanation"):
            s += f"  ·  {r['explanation']}" + (f" (r {r['score']:.2f})" if r["score"] == r["score"] else "")
        out[r["unit"]] = s
    return out


def _random_unit(options: list[str]) -> None:
    st.session_state["unit"] = random.choice(options)


def _url_unit(ex) -> None:
    """The unit the URL asked for (a named unit, ``tags:rock``, is shown by its index); one that does not exist
    gives a notice and the default unit. A first visit gets the default unit (:meth:`Explorer.default_unit`)."""
    ss = st.session_state
    asked = ss.pop("_unit_from_url", None)
    if asked is not None:
        try:
            u = str(ex.parse(asked))
        except AudiovisError:
            u = ex.default_unit()
            notice(f"unit {asked} does not exist in this model; showing {ex.unit_label(u)}, its default unit "
                   f"(layers: {', '.join(f'{k} 0-{v - 1}' for k, v in ex.layers.items())}).")
        if ex.unit_flag(u):                       # asked for by name: shown, with its flag
            ss["flagged"] = True
        ss["unit"], ss["layer"] = u, u.split(":")[0]
    layer = ss.pop("_layer_from_url", None)
    if layer is not None and layer not in ex.layers:
        notice(f"layer {layer!r} does not exist in this model; showing all layers.")
        ss["layer"] = ALL_LAYERS
    elif layer is not None:
        ss["layer"] = layer
    if "unit" not in ss:
        ss["unit"] = ex.default_unit()
        ss.setdefault("layer", ALL_LAYERS)


def _new_search() -> None:
    """A new search looks in every layer and opens its best match."""
    st.session_state["layer"] = ALL_LAYERS
    st.session_state["_open_first"] = True


def unit_select_ui(ws_path: str) -> tuple[str | None, int, bool]:
    """Sidebar: layer, sorting, search, dead/edge toggle, the unit, a random-unit button, number of clips,
    least-activating."""
    ss = st.session_state
    ex = get_explorer(ws_path)
    stamp = index_stamp(ws_path)
    _url_unit(ex)
    layers = [ALL_LAYERS] + list(ex.layers)
    if ss.get("layer") not in layers:
        ss["layer"] = ALL_LAYERS
    sb = st.sidebar
    layer = sb.selectbox("Layer", layers, key="layer",
                         format_func=lambda l: l if l == ALL_LAYERS else f"{l} ({ex.layers[l]} units)")
    sorts = sort_keys(ex)
    if ss.get("sort") not in sorts:
        ss["sort"] = "selectivity"
    sort = sb.selectbox("Sort by", sorts, key="sort",
                        help="strength: mean of the top activations; selectivity: (strength - mean) / std; "
                             "sparsity: share of windows where the unit is silent; label: best dissection score "
                             "(AUROC); score: the explanation's simulation score (audiovis explain). A search "
                             "ranks by how well each unit matches first.")
    query = sb.text_input("Search", key="query", placeholder="unit, tag or label, e.g. distorted guitar",
                          help="unit ids, tag names, dissection labels and explanations, in every layer; best "
                               "match first", on_change=_new_search)
    flagged = sb.toggle("Show dead and edge units", key="flagged",
                        help=f"Dead units never fire; edge units fire only within {EDGE_S:g} s of a song's start "
                             "or end. They are hidden from rankings by default.")
    rows = unit_table(ws_path, None if layer == ALL_LAYERS else layer, sort, query, flagged, stamp)
    if query and not ex.dissection and not ex.explanations:
        sb.caption("Only unit ids and tag names are searched: labels come from `audiovis dissect` (about "
                   "a minute on the demo) or, with ground truth, from `audiovis run`'s label stage.")
    if not rows:
        sb.warning(f"No unit matches {query!r}.")
        return None, 10, False
    options = [r["unit"] for r in rows]
    if ss.pop("_open_first", False) and query:     # a new search opens its best match
        ss["unit"] = options[0]
    if ss.get("unit") not in options:
        ss["unit"] = options[0]
    desc = _unit_desc(ex, rows)
    ss["_unit_options"] = options
    unit = sb.selectbox(f"Unit ({len(options)})", options, key="unit", format_func=lambda u: desc.get(u, u))
    sb.button("Random unit", icon=":material/shuffle:", on_click=_random_unit, args=(options,), width="stretch")
    k = ex.index.k
    ss["n"] = min(max(int(ss.get("n", 10)), 1), k)
    n = sb.slider("Clips", 1, k, key="n")
    bottom = sb.toggle("Least-activating clips", key="bottom")
    return unit, n, bottom


def _stats_markdown(s: dict) -> str:
    """The unit's statistics as a small table that wraps at any width (metrics truncate at 820 px)."""
    return ("| strength | selectivity | sparsity | mean | std |\n|---|---|---|---|---|\n"
            f"| {s['strength']:.2f} | {s['selectivity']:.2f} σ | {s['sparsity']:.0%} | {s['mean']:.2f} | "
            f"{s['std']:.2f} |")


def _step_unit(options: list[str], unit: str, step: int) -> None:
    i = options.index(unit) if unit in options else 0
    st.session_state["unit"] = options[(i + step) % len(options)]


def unit_ui(ws_path: str) -> dict:
    """A unit's top (or least) clips: audio, log-mel with the activation over time, ground truth; statistics."""
    unit, n, bottom = unit_select_ui(ws_path)
    if unit is None:
        st.info("No unit to show: change the search.")
        return {"view": "unit"}
    ex = get_explorer(ws_path)
    stamp = index_stamp(ws_path)
    st.title(f"Unit {ex.unit_label(unit)}")
    options = st.session_state.get("_unit_options", [unit])
    nav = st.columns([1, 1, 1])
    nav[0].button("◀ previous", key="unit_prev", on_click=_step_unit, args=(options, unit, -1), width="stretch",
                  shortcut="K", help="the previous unit of this ranking (key K)")
    nav[1].button("next ▶", key="unit_next", on_click=_step_unit, args=(options, unit, 1), width="stretch",
                  shortcut="J", help="the next unit of this ranking (key J, as in a mail reader)")
    flag = ex.unit_flag(unit)
    if flag:
        st.warning(f"{unit} is flagged {FLAG_TEXT[flag]}.", icon="⚠️")
    if ex.unit_notes.get(unit):                    # what the model itself says a unit is (CREPE: a pitch bin)
        st.caption(f"{ex.model_name}: {ex.unit_notes[unit]}")
    expl = ex.unit_explanation(unit)
    if expl:
        st.markdown(explanation_markdown(expl))
    labs = ex.unit_labels(unit)
    if labs:
        st.markdown("**Labels** (network dissection: AUROC of its per-window activation for the concept against "
                    "the rest; ✓ a detector, AUROC ≥ 0.9): " + " · ".join(
                        f"`{x['concept']}` {x.get('score', float('nan')):.2f}{' ✓' if x.get('detector') else ''}"
                        for x in labs[:5]))
        if expl and expl.get("terms") and expl["terms"][0]["term"] not in {x["concept"] for x in labs[:5]}:
            st.caption("The explanation and the labels can name different concepts: a label scores each concept "
                       "alone (AUROC), the explanation picks the few terms that predict the activation best "
                       "together, on other songs.")
    s = ex.unit_stats(unit)
    st.markdown(_stats_markdown(s))         # full width: side by side with the histogram it truncates at 820 px
    st.caption("strength: mean activation of its top clips · selectivity: (strength - mean) / std, in standard "
               "deviations (σ) · sparsity: share of windows where it is silent (≤ 0) · mean, std: over all "
               "windows")
    st.image(histogram_png(ws_path, unit, stamp), caption="activation histogram over all windows (log count)")
    with st.expander("Listeners it recruits", expanded=False):
        unit_listeners_ui(ws_path, unit)
    if flag == "dead":
        st.info("No clips: a dead unit has no top clips, only arbitrary windows at (almost) one value.")
        return {"view": "unit", "unit": unit, "n": n, "bottom": int(bottom)}
    link = unit_link(unit, ws_path, n, bottom)
    centred = ("each clip's peak sits at a song's edge, so the clips are cut at the edge" if flag == "edge" else
               "centred on the unit's peak (dashed line)")
    st.markdown(f"{'Least' if bottom else 'Top'} {n} clips, one per song, each {ex.cfg.window_s:g} s {centred}; "
                f"cyan: activation over time. [Link to this view]({link})")
    if bottom and s["sparsity"] > 0.5:
        st.caption(f"{s['sparsity']:.0%} of all windows are silent (≤ 0) for this unit: these are a few of the "
                   "many tied at the bottom, in catalogue order.")
    with st.expander(f"Play all {n} clips in sequence", expanded=False):
        data, mime, starts = playlist_audio(ws_path, unit, n, bottom, stamp)
        clip_player(data, mime)
        st.caption(f"One track, rank order, {GAP_S:g} s of silence between clips; clip starts at "
                   + ", ".join(f"{t:.1f}" for t in starts) + " s.")
    rows = unit_view_data(ws_path, unit, n, bottom, stamp)
    for r in rows:                          # stacked, not in columns: at 820 px a narrow player loses its seek bar
        link = song_link(r.song_id, ws_path, unit.split(':')[0])
        st.markdown(f"**{r.rank}. {r.song_id}** · {r.start_s:.1f}–{r.end_s:.1f} s · "
                    f"activation **{r.activation:.2f}** [song]({link})"
                    + (f"  \n{format_labels(r.labels)}" if r.labels else ""))
        clip_player(r.audio, r.mime)
        st.image(r.image, width="content")
        why_ui(ws_path, r.song_id, unit=unit, at=r.start_s, key=f"why_{unit}_{r.rank}")
    if has_trained_cnn(ws_path) and ex.model is not None:
        c = st.columns(2)
        layer, i = unit.split(":")
        if c[0].button(f"Dream {unit}", key="unit_dream", width="stretch",
                       help="open the Visualise view's Dream tab with this unit"):
            goto(view="visualise", vis_dream_layer=layer, vis_dream_idx=i)
        if c[1].button(f"Auralise {unit}", key="unit_auralise", width="stretch",
                       help="open the Visualise view's Auralise tab with this unit and its top clips"):
            goto(view="visualise", vis_aur_layer=layer, vis_aur_idx=int(i))
    return {"view": "unit", "unit": unit, "n": n, "bottom": int(bottom)}


def layer_ui(ws_path: str) -> dict:
    """All units of a layer: a unit-by-concept heat map and a sortable table; a row opens its unit view."""
    import pandas as pd
    ss = st.session_state
    ex = get_explorer(ws_path)
    stamp = index_stamp(ws_path)
    layers = list(ex.layers)
    if ss.get("ov_layer") not in layers:
        ss["ov_layer"] = ss.get("layer") if ss.get("layer") in layers else layers[0]
    layer = st.sidebar.selectbox("Layer", layers, key="ov_layer",
                                 format_func=lambda l: f"{l} ({ex.layers[l]} units)")
    sorts = sort_keys(ex)
    if ss.get("ov_sort") not in sorts:
        ss["ov_sort"] = "unit"
    sort = st.sidebar.selectbox("Sort by", sorts, key="ov_sort")
    query = st.sidebar.text_input("Search", key="ov_query", placeholder="unit, label or explanation, e.g. ska")
    flagged = st.sidebar.toggle("Show dead and edge units", key="ov_flagged",
                                help=f"Dead units never fire; edge units fire only within {EDGE_S:g} s of a "
                                     "song's edge.")
    st.title(f"Layer {layer}: {ex.layers[layer]} units")
    for msg in ex.index.stale_dictionaries.values():
        st.warning(msg)
    if not ex.index.dictionaries and not ex.index.is_dictionary(layer):
        st.caption(f"Dictionary features (sparse combinations of a layer's units, browsable like units) are not "
                   f"built by default: `audiovis dictionary -w {workspace_name(ws_path)} --layer {layer}` (dense1 of "
                   f"the demo, 3,067 windows: 42 s on 2 shared cores; the time grows with the windows).")
    if ex.explanations:
        st.image(score_png(ws_path, layer, stamp), width=480, caption="simulation scores of the layer's "
                 "explanations (audiovis explain: Pearson r on held-out songs; dashed: median)")
    hm = None
    if ex.labels:
        hm, png = heatmap(ws_path, layer, stamp)
        st.markdown("Mean activation of each unit over the windows with each ground-truth value, in standard "
                    "deviations from the unit's mean (red: the unit fires more on that value).")
        st.image(png, width="stretch")
    rows = unit_table(ws_path, layer, sort, query, flagged, stamp)
    n_flagged = sum(bool(ex.unit_flag(u)) for u in ex.index.units(layer))
    if n_flagged and not flagged:
        st.caption(f"{n_flagged} of {ex.layers[layer]} units are dead or edge artifacts and hidden (the sidebar's "
                   "toggle shows them).")
    if not rows:
        st.info(f"No unit of {layer} matches {query!r}." if query else f"Every unit of {layer} is dead or an edge "
                "artifact: the sidebar's toggle shows them.")
        return {"view": "layer", "layer": layer}
    df = pd.DataFrame(rows)[["unit", "flag", "strength", "selectivity", "sparsity", "mean", "label", "label_score",
                             "explanation", "score"]]
    if not ex.explanations:
        df = df.drop(columns=["explanation", "score"])
    if hm is not None and len(hm.columns):
        col = {u: i for i, u in enumerate(hm.units)}
        best = [int(hm.z[col[u]].argmax()) for u in df["unit"]]
        live = [not f for f in df["flag"]]                 # a dead or edge unit has no concept to claim
        df["top concept"] = [hm.columns[b] if ok else "" for b, ok in zip(best, live)]
        df["z"] = [float(hm.z[col[u], b]) if ok else float("nan") for u, b, ok in zip(df["unit"], best, live)]
    df.insert(1, "open", [unit_link(u, ws_path) for u in df["unit"]])
    if not ex.dissection:
        df = df.drop(columns=["label", "label_score"])
    if not flagged:
        df = df.drop(columns=["flag"])
    st.markdown("Select a row to open its unit view (or follow its link).")
    ev = st.dataframe(df, hide_index=True, on_select="rerun", selection_mode="single-row", key=f"ov_table_{layer}",
                      column_config=layer_table_columns(),
                      width="stretch", height=420)
    sel = ev.selection.rows if ev is not None and hasattr(ev, "selection") else []
    if sel:
        u = df["unit"].iloc[sel[0]]
        goto(view="unit", unit=u, layer=layer, query="")
    return {"view": "layer", "layer": layer}


@st.cache_data(show_spinner=False, max_entries=64)
def _song_view(ws_path: str, song_idx: int, layer: str, n_units: int, stamp: str) -> tuple[bytes, list, dict, list]:
    ex = get_explorer(ws_path)
    v = ex.song_view(song_idx, layer, n_units)
    return ex.song_picture(v), v["units"], v["labels"], v["segments"]


@st.cache_data(show_spinner=False, max_entries=64)
def _taggram(ws_path: str, song_idx: int, stamp: str) -> tuple[bytes, list] | None:
    ex = get_explorer(ws_path)
    tg = ex.taggram(song_idx)
    if tg is None:
        return None
    mean = tg["T"].mean(0)
    top = [(tg["names"][i], float(mean[i])) for i in mean.argsort()[::-1][:5]]
    return ex.taggram_picture(tg), top


def song_ui(ws_path: str) -> dict:
    """A song's spectrogram with the activations of its most active units over time, and playback."""
    ss = st.session_state
    ex = get_explorer(ws_path)
    stamp = index_stamp(ws_path)
    q = st.sidebar.text_input("Find a song", key="song_query", placeholder="id or label, e.g. waltz flute")
    idx = ex.find_songs(q, limit=500)
    if not idx:
        st.sidebar.warning(f"No song matches {q!r}.")
        return {"view": "song"}
    options = [ex.song_ids[i] for i in idx]
    asked = ss.pop("_song_from_url", None)
    if ss.get("song") not in options:
        ss["song"] = options[0]
        if asked is not None and asked not in ex.song_ids:
            notice(f"song {asked!r} is not in this workspace; showing {options[0]}.")
    sid = st.sidebar.selectbox(f"Song ({len(options)})", options, key="song")
    layers = list(ex.layers)
    if ss.get("song_layer") not in layers:
        ss["song_layer"] = layers[-3] if len(layers) >= 3 else layers[0]
    layer = st.sidebar.selectbox("Layer", layers, key="song_layer")
    n_units = st.sidebar.slider("Units", 1, 10, 5, key="song_units")
    song_idx = ex.song_ids.index(sid)
    st.title(f"Song {sid}")
    problem = ex.song_problem(song_idx)
    if problem is not None:
        st.warning(f"No activations to show: {problem}. Fix or replace the file, then run `audiovis featurize` "
                   "and `audiovis index` (`audiovis report` lists every problem).")
        return {"view": "song", "song": sid, "layer": layer}
    png, units, labels, _segs = _song_view(ws_path, song_idx, layer, n_units, stamp)
    if labels:
        st.caption(format_labels(labels))
    data, mime = encoded_clip(ws_path, song_idx, 0.0, min(ex.song_duration(song_idx), 600.0))
    clip_player(data, mime)
    st.image(png, width="stretch")
    tg = _taggram(ws_path, song_idx, stamp)
    if tg is not None:
        png_tg, top = tg
        st.markdown("**Taggram**: the pretrained tagger's tags over the song, one column per "
                    f"{ex.cfg.window_s:g} s window (most likely tags on top). Most likely here: "
                    + ", ".join(f"`{n}` ({p:.2f})" for n, p in top))
        st.image(png_tg, width="stretch")
    st.markdown(f"Most active {layer} units in this song (peak in std above the unit's mean):")
    cols = st.columns(min(len(units), 5) or 1)
    for i, (u, z) in enumerate(units):
        with cols[i % len(cols)]:
            if st.button(f"{ex.unit_label(u)} (+{z:.1f} σ)", key=f"song_unit_{u}", width="stretch"):
                goto(view="unit", unit=u, layer=layer, query="")
    layer_walk_ui(ws_path, sid, ex.song_duration(song_idx))
    return {"view": "song", "song": sid, "layer": layer}


def optional_ui(name: str, ws_path: str) -> dict:
    """A view provided by another module, ``audiovis.ui.<name>.<name>_ui(ws_path)``."""
    mod = importlib.import_module(f"audiovis.ui.{name}")
    out = getattr(mod, f"{name}_ui")(ws_path)
    return out if isinstance(out, dict) else {"view": name}


def main() -> None:
    st.set_page_config(page_title="audiovis: listening page", page_icon="🎧", layout="wide")
    try:
        st.set_option("client.toolbarMode", "minimal")   # no "Deploy" button (`audiovis serve` sets it too)
    except Exception:                                    # noqa: BLE001 - an older Streamlit: keep its toolbar
        pass
    st.session_state["_notices"] = []
    init_state()
    notices = st.container()
    try:
        ws_path = workspace_ui()
        if ws_path is None:
            sync_query({"ws": st.session_state.get("ws")})
            return
        rebuilding_notice(ws_path)
        views = available_views()
        if not has_trained_cnn(ws_path):            # a model of your own, no plays: no cold start, no listeners
            views.pop("coldstart", None)
            views.pop("listeners", None)
        if st.session_state.get("view") not in views:
            st.session_state["view"] = "unit"
        view = st.sidebar.radio("View", list(views), key="view", format_func=views.get, horizontal=False)
        if view == "unit":
            params = unit_ui(ws_path)
        elif view == "layer":
            params = layer_ui(ws_path)
        elif view == "song":
            params = song_ui(ws_path)
        else:
            params = optional_ui(view, ws_path)
    except Exception as e:          # never a traceback in the page (Streamlit's rerun/stop are BaseExceptions)
        st.error(page_error(e, st.session_state.get("ws", "")), icon="⚠️")
        params = {"view": st.session_state.get("view")}
    for msg in st.session_state.get("_notices", []):
        notices.warning(msg, icon="🔗")
    sync_query({"ws": st.session_state.get("ws"), **params})


if __name__ == "__main__":
    main()
