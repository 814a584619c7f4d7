"""The "Visualise" view of the listening page: filters, dreamed audio, auralisation, backward queries and the
network dissection, each ending in something to look at and to listen to.

``visualise_ui(ws_path)`` draws the view (streamlit_app.py calls it); the work is done by
:mod:`audiovis.visualise`.
"""
from __future__ import annotations

import json
import os

import numpy as np
import streamlit as st

from ..clips import match_level
from ..pictures import figure_png, plot_logmel
from .common import clip_player, get_index, get_model, has_trained_cnn, unit_link, writes_allowed, writes_off_caption


def _threads():
    import torch
    torch.set_num_threads(int(os.environ.get("AUDIOVIS_TORCH_THREADS", "1")))


def _wav(y: np.ndarray, sr: int) -> bytes:
    from ..clips import encode
    return encode(y, sr, "wav")


def _ws(ws_path: str):
    from ..workspace import Workspace
    return Workspace(ws_path)


# ------------------------------------------------------------------------------------------------ filters
@st.cache_data(show_spinner="Drawing the filters...", max_entries=8)
def _filters_data(ws_path: str, mtime: float):
    from ..visualise.filters import conv1_filters, frequency_response, plot_filters
    W = conv1_filters(get_model(ws_path))
    resp = frequency_response(W)
    return figure_png(plot_filters(W, [f"conv1:{i}" for i in range(len(W))])), W, resp


@st.cache_data(show_spinner="Drawing the filters...", max_entries=8)
def _timbral_data(ws_path: str, mtime: float) -> list[bytes]:
    from ..visualise.filters import plot_filters, timbral_filters
    return [figure_png(plot_filters(W, units, cols=24, title=f"musicnn timbral filters, {W.shape[1]} mel bins (up) x "
                                                             f"{W.shape[2]} frames (across)"))
            for W, units in timbral_filters(get_model(ws_path))]


def _filters_section(ws_path: str):
    from ..visualise.filters import plot_response
    ws = _ws(ws_path)
    if not hasattr(get_model(ws_path), "conv1"):          # a content model on musicnn's pretrained front end
        st.caption("The first layer is the pretrained musicnn tagger's: 408 timbral filters (7 frames x 38 or 67 "
                   "mel bins) that slide along frequency, so each has a shape rather than a frequency, and 153 "
                   "temporal filters (128, 64 or 32 frames x 1 bin). Red excites, blue inhibits; the units are "
                   "`timbral:0`... in the unit view.")
        for png in _timbral_data(ws_path, ws.model_path.stat().st_mtime):
            st.image(png, width="stretch")
        return
    png, W, resp = _filters_data(ws_path, ws.model_path.stat().st_mtime)
    st.caption(f"conv1 weights: {W.shape[0]} filters, each {W.shape[1]} mel bins (up) x {W.shape[2]} frames "
               "(across); red excites, blue inhibits.")
    st.image(png, width="stretch")
    st.markdown("**Each filter, with the frequency it likes most** (click to open its unit view):")
    links = [f"[conv1:{i}]({unit_link(f'conv1:{i}', ws_path)}) {resp['peak_hz'][i]:.0f}\u00a0Hz"   # no wrap
             for i in range(len(W))]
    cols = st.columns(8)
    for i, l in enumerate(links):
        cols[i % 8].markdown(l)
    i = st.number_input("Frequency response of filter", 0, len(W) - 1, 0, key="vis_filter_idx")
    st.image(figure_png(plot_response(resp, int(i))))


# ------------------------------------------------------------------------------------------------ dream
def _dream_section(ws_path: str):
    from ..visualise.dream import dream
    from ..visualise.render import RenderConfig
    ix = get_index(ws_path)
    c1, c2, c3 = st.columns([2, 2, 1])
    layer = c1.selectbox("Layer", list(ix.layers), key="vis_dream_layer")
    st.session_state.setdefault("vis_dream_idx", "0")     # the unit view's "Dream" button may have set it
    which = c2.text_input("Unit index (empty: the whole layer, deep-dream style)", key="vis_dream_idx")
    steps = c3.number_input("Steps", 16, 2048, RenderConfig().steps, step=64, key="vis_dream_steps")
    clip = st.text_input("Start from a real clip (SONG_ID:START_S, optional)", "", key="vis_dream_clip")
    spec = f"{layer}:{which.strip()}" if which.strip() else layer
    if st.button(f"Dream {spec}", key="vis_dream_go"):
        _threads()
        bar = st.progress(0.0)
        try:
            d = dream(ws_path, spec, from_clip=clip.strip() or None, cfg=RenderConfig(steps=int(steps)),
                      model=get_model(ws_path), progress=lambda s, n: bar.progress(s / n), save=writes_allowed())
        except Exception as e:
            st.error(str(e))
            return
        bar.empty()
        st.session_state["vis_dream"] = d
    d = st.session_state.get("vis_dream")
    if d is None:
        st.info("Pick a unit and press Dream: gradient ascent on a log-mel (jitter, smoothness, bounded dB "
                "range), rendered to audio by mel inversion and Griffin-Lim. "
                + ("Results are cached per unit." if writes_allowed() else "Results are not kept: this server only "
                   "reads (`audiovis dream -w WS UNIT` caches one from a shell)."))
        return
    st.image(figure_png(plot_logmel(d.logmel, d.sr, title=f"dream of {d.objective}")))
    clip_player(_wav(d.audio, d.sr), "audio/wav")
    st.markdown(f"Activation of the dream **{d.activation:.3f}** · of the best real clip **"
                + ("n/a" if d.best_real is None else f"{d.best_real:.3f}") + "** · ratio **"
                + ("n/a" if d.ratio is None else f"{d.ratio:.2f}×") + "** (the dream over the best real clip, in "
                "the unit's activation units)")
    if ":" in d.objective:
        st.markdown(f"[open the unit view of {d.objective}]({unit_link(d.objective, ws_path)})"
                    + (" · from the cache" if d.cached else f" · {d.seconds:.1f} s"))


# ------------------------------------------------------------------------------------------------ auralise
def _auralise_section(ws_path: str):
    from ..visualise.auralise import auralise
    ix = get_index(ws_path)
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", [l for l in ix.layers if l.startswith("conv")] + [l for l in ix.layers
                                                                                  if not l.startswith("conv")],
                         key="vis_aur_layer")
    ss = st.session_state                                  # the unit view's "Auralise" button may have set it
    ss["vis_aur_idx"] = min(max(int(ss.get("vis_aur_idx", 0)), 0), ix.layers[layer] - 1)
    idx = c2.number_input("Unit", 0, ix.layers[layer] - 1, key="vis_aur_idx")
    unit = f"{layer}:{int(idx)}"
    top = ix.top(unit, n=10)
    if not top:
        st.warning(f"{unit} has no clips in the index")
        return
    k = st.selectbox("One of its top clips", range(len(top)), key="vis_aur_clip",
                     format_func=lambda i: f"{top[i]['song_id']} at {top[i]['start_s']:.1f} s "
                                           f"(activation {top[i]['activation']:.2f})")
    c = top[k]
    _threads()
    try:
        a = auralise(ws_path, unit, c["song_id"], c["start_s"], model=get_model(ws_path))
    except Exception as e:
        st.error(str(e))
        return
    l, r = st.columns(2)
    with l:
        st.markdown("**original**")
        st.image(figure_png(plot_logmel(a.logmel, a.sr, title=f"{c['song_id']} at {c['start_s']:.1f} s")))
        clip_player(_wav(a.original, a.sr), "audio/wav")
    with r:
        st.markdown(f"**what {unit} hears**")
        st.image(figure_png(plot_logmel(a.relevance, a.sr, title="relevance (gradient x input)", vmin=0, vmax=1,
                                        cbar_label="relevance (0-1)")))
        y, gain_db = match_level(a.auralised, a.original)
        clip_player(_wav(y, a.sr), "audio/wav")
    kept = float((a.auralised ** 2).sum() / max((a.original ** 2).sum(), 1e-12))
    st.caption(f"The clip's STFT masked by the unit's relevance (mel -> linear frequency), inverted with the "
               f"original phase; {100 * kept:.0f}% of the energy kept, played {gain_db:+.1f} dB louder so both "
               f"players sound equally loud (RMS). [unit view]({unit_link(unit, ws_path)})")


# ------------------------------------------------------------------------------------------------ backward
def _backward_section(ws_path: str):
    from ..visualise.backward import backward_query
    from ..visualise.render import RenderConfig
    ws = _ws(ws_path)
    kind = st.radio("Target", ["listener", "factor", "song"], horizontal=True, key="vis_bw_kind")
    if kind == "listener":
        ids = ws.user_ids()
        val = st.selectbox("Listener", ids, index=min(41, len(ids) - 1), key="vis_bw_user")
        kw = {"user": val}
    elif kind == "factor":
        kw = {"factor": int(st.number_input("Factor", 0, get_model(ws_path).cfg.n_factors - 1, 0,
                                            key="vis_bw_factor"))}
    else:
        kw = {"song": st.selectbox("Song", ws.song_ids(), key="vis_bw_song")}
    if st.button("Find the input the network maps to it", key="vis_bw_go"):
        _threads()
        try:
            with st.spinner("Optimising..."):
                st.session_state["vis_bw"] = backward_query(ws, cfg=RenderConfig(), model=get_model(ws_path), **kw)
        except Exception as e:
            st.error(str(e))
            return
    r = st.session_state.get("vis_bw")
    if r is None:
        st.info("\"What would listener U00042's ideal song sound like?\": the input log-mel whose predicted "
                "factors point the listener's way, rendered to audio.")
        return
    st.image(figure_png(plot_logmel(r.logmel, r.sr, title=f"backward query: {r.target_name}")))
    clip_player(_wav(r.audio, r.sr), "audio/wav")
    m1, m2, m3 = st.columns(3)
    m1.metric("cosine to target", f"{r.cosine:.3f}", f"{r.cosine - r.start_cosine:+.3f} from the noise start",
              help=f"cosine of the predicted factors f(x) with the target's (optimised loss: {r.loss}); 1 is best")
    m2.metric("distance to target", f"{r.distance:.3f}", f"{r.distance - r.start_distance:+.3f} from the noise "
              "start", delta_color="inverse", help="Euclidean distance of f(x) to the target; lower is better")
    if r.best_real:
        m3.metric("score x_u · f(x)", f"{r.score:.3f}", f"best real song {r.best_real['song_id']}: "
                  f"{r.best_real['score']:.3f}", delta_color="off",
                  help="the listener's predicted preference for the found input, next to their best real song's")


# ------------------------------------------------------------------------------------------------ dissection
@st.cache_data(show_spinner=False, max_entries=8)
def _dissection(ws_path: str, mtime: float) -> dict:
    return json.loads((_ws(ws_path).index_dir / "dissection.json").read_text())


def _dissection_section(ws_path: str):
    import pandas as pd

    from ..visualise.dissect import DESCRIPTOR_S_PER_AUDIO_S, descriptor_minutes, dissect, search_units
    ws = _ws(ws_path)
    p = ws.index_dir / "dissection.json"
    full = p.exists() and any(v.get("source") == "descriptor"
                              for v in _dissection(ws_path, p.stat().st_mtime).get("concept_info", {}).values())
    if not full:
        n, mins = len(ws.song_ids()), descriptor_minutes(ws)
        st.info(("The labels below come from the ground truth only. " if p.exists() else "No dissection yet. ")
                + "The full dissection also scores every unit against librosa descriptors per window (tempo, "
                f"brightness, key...): about {1000 * DESCRIPTOR_S_PER_AUDIO_S:.0f} ms of one core per second of "
                f"audio, so about {mins} min for these {n} songs.")
        if not writes_allowed():
            writes_off_caption("The dissection", f"audiovis dissect -w {ws.path.name}")
        elif st.button("Run the full dissection", key="vis_dis_go"):
            with st.status(f"Scoring units against concepts (about {mins} min)...") as stt:
                dissect(ws, progress=False)
                stt.update(label="Dissection done", state="complete")
            st.cache_data.clear()
            st.rerun()
        if not p.exists():
            return
    res = _dissection(ws_path, p.stat().st_mtime)
    thr = res["threshold"]
    q = st.text_input("Search concepts", placeholder="units for distorted guitar", key="vis_dis_q")
    if q.strip():
        rows = search_units(q, res)
        if not rows:
            st.warning(f"no concept matches {q!r}; concepts are: {', '.join(res['concepts'])}")
        for r in rows:
            st.markdown(f"- **{r['concept']}**: [{r['unit']}]({unit_link(r['unit'], ws_path)}) "
                        f"AUROC {r['score']:.3f}{' · detector (AUROC ≥ 0.9)' if r['detector'] else ''}")
    info = res.get("concept_info", {})
    table = [{"concept": c, "source": info.get(c, {}).get("source", ""), "best unit": lst[0]["unit"],
              "AUROC": lst[0]["score"], "IoU": lst[0].get("iou"), "detector": lst[0]["score"] >= thr,
              "open": unit_link(lst[0]["unit"], ws_path)}
             for c, lst in res["concepts"].items() if lst]
    n_det = sum(r["detector"] for r in table)
    st.caption(f"{n_det} of {len(table)} concepts have a detector (AUROC >= {thr}); AUROC of the unit's "
               f"per-window activation for concept-vs-rest.")
    num = st.column_config.NumberColumn
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch",
                 column_config={"open": st.column_config.LinkColumn("unit view", display_text="open"),
                                "AUROC": num("AUROC", format="%.3f", help="how well the unit's per-window activation "
                                             "separates the concept's windows from the rest (0.5 chance, 1 perfect)"),
                                "IoU": num("IoU", format="%.3f", help="intersection over union of the unit's top "
                                           "0.5% windows and the concept's windows (Bau et al. 2017)")})


def visualise_ui(ws_path: str) -> None:
    """Draw the Visualise view for a finished workspace."""
    ws = _ws(ws_path)
    st.header("What the network has learned")
    if ws.get_meta("done:index") is None:
        st.warning(f"workspace '{ws.path}' has no unit index yet: run `audiovis run` or `audiovis index` first")
        return
    if not has_trained_cnn(str(ws.path)):
        st.caption("Filters, dreams, auralisation and backward queries run on the CNN audiovis trains from plays; "
                   "this workspace indexes a model of your own, so only its unit labels are shown.")
        _dissection_section(str(ws.path))
        return
    tabs = st.tabs(["Filters", "Dream", "Auralise", "Backward query", "Unit labels"])
    sections = (_filters_section, _dream_section, _auralise_section, _backward_section, _dissection_section)
    for tab, fn in zip(tabs, sections):
        with tab:
            fn(str(ws.path))
