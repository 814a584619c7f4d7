"""The page's listener elements: the listeners a unit recruits (unit view) and counterfactual listening (cold-start
view: the upload with units ablated or clamped, original and counterfactual side by side). All computation is in
:mod:`audiovis.listeners`; this module only draws."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from .. import listeners as lst
from ..errors import AudiovisError
from ..uploads import check_upload_size
from ..workspace import Workspace
from .common import clip_player, encoded_clip, format_labels, listener_link, notice, song_link, unit_link


def _stamp(ws_path: str) -> tuple:
    p = Path(ws_path) / "index" / lst.LISTENERS_FILE
    return (p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else (0, 0)


@st.cache_resource(show_spinner=False, max_entries=4)
def _listener_index(ws_path: str, stamp: tuple) -> lst.ListenerIndex:
    return lst.ListenerIndex(ws_path)


def unit_listeners_ui(ws_path: str, unit: str, n: int = 10) -> None:
    """The unit's top listeners with their effect, and the mean effect over users (after ``audiovis listeners``);
    says plainly when the workspace has no listeners or the step has not run."""
    if unit.startswith("output:"):
        st.caption("Output units are the predicted factors themselves: they are not ablated.")
        return
    state, msg = lst.listeners_state(Workspace(ws_path))
    if state != "ready":
        st.caption(msg)
        return
    li = _listener_index(str(Workspace(ws_path).path), _stamp(ws_path))
    if unit.split(":")[0] not in li.layers:
        st.caption(f"Listener effects are measured for the model's conv and dense units ({', '.join(li.layers)}); "
                   f"{unit} is not one of them.")
        return
    d = li.of(unit, n)
    st.caption(f"Effect on a listener: how much {unit} raises their score x_u · y of a song it fires in, on "
               f"average (the score's drop when it is silenced in the windows where it fires; a dictionary "
               f"feature: its part of the layer's output taken out). It fires in "
               f"{d['songs_fired']} of {d['songs']} songs; **mean effect over all users {d['mean_effect']:+.4f}** "
               f"(mean |effect| {d['mean_abs_effect']:.4f}).")
    st.dataframe([{"rank": r["rank"], "user": r["user_id"], "effect": round(r["effect"], 4),
                   "page": listener_link(r["user_id"], ws_path)} for r in d["listeners"]],
                 hide_index=True, width="content",
                 column_config={"page": st.column_config.LinkColumn("listener", display_text="their page ↗"),
                                "effect": st.column_config.NumberColumn("effect", format="%+.4f",
                                                                        help="mean rise of x_u · y")})


@st.cache_data(show_spinner=False, max_entries=64)
def _history(ws_path: str, user_id: str, n: int, stamp: tuple) -> list[dict]:
    return lst.listening_history(ws_path, user_id, n)


def listeners_ui(ws_path: str) -> dict:
    """A listener's page: their most-played songs (playable) and the units that drive their recommendations
    (after ``audiovis listeners``; otherwise the command and its cost)."""
    from .common import get_explorer
    ws = Workspace(ws_path)
    ids = ws.user_ids()
    st.title("Listener")
    if not ids:
        st.info("This workspace has no listeners (it was built without a listening log).")
        return {"view": "listeners"}
    ss = st.session_state
    asked = ss.pop("_user_from_url", None)
    if asked is not None and asked not in ids:
        notice(f"listener {asked!r} is not in this workspace; showing {ids[0]}.")
    if ss.get("listener") not in ids:
        ss["listener"] = asked if asked in ids else ids[0]
    user = st.sidebar.selectbox(f"Listener ({len(ids)})", ids, key="listener")
    ex = get_explorer(ws_path)
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"#### {user}'s most-played songs")
        for r in _history(ws_path, user, 8, _stamp(ws_path)):
            dur = ex.song_duration(r["song_idx"])
            t0 = max(0.0, dur / 2 - 5.0)
            st.markdown(f"**{r['rank']}. [{r['song_id']}]({song_link(r['song_id'], ws_path)})** · "
                        f"{r['plays']:g} plays · 10 s from the middle")
            try:                                    # one song's missing audio costs its player, not the view
                data, mime = encoded_clip(ws_path, r["song_idx"], t0, min(dur, t0 + 10.0))
                clip_player(data, mime)
            except AudiovisError as e:
                st.warning(f"cannot play {r['song_id']}: {e}")
    with right:
        st.markdown("#### Units that drive their recommendations")
        state, msg = lst.listeners_state(ws)
        if state != "ready":
            st.caption(msg)
            return {"view": "listeners", "user": user}
        li = _listener_index(str(ws.path), _stamp(ws_path))
        st.caption("Each unit's effect on this listener: how much it raises their score x_u · y of the songs it "
                   "fires in, on average (the drop when it is silenced there). Larger: it pulls those songs "
                   "towards them.")
        st.markdown("\n".join(f"{d['rank']}. [{ex.unit_label(d['unit'])}]({unit_link(d['unit'], ws_path)}) "
                               f"effect {d['effect']:+.4f}" for d in li.drivers(user, 10)))
    return {"view": "listeners", "user": user}


def drivers_text(row: dict, n: int | None = None) -> str:
    """'dense1:177 +0.062, ...' for a listener row with ``drivers`` (the first ``n``)."""
    return ", ".join(f"{d['unit']} +{d['effect']:.3f}" for d in row.get("drivers", [])[:n])


def drivers_ui(ws_path: str, listeners: list[dict]) -> None:
    """Each likely listener's driving units, linked to their unit views."""
    if not any(r.get("drivers") for r in listeners):
        return
    with st.expander("Units that drove it towards each listener"):
        st.caption("The units whose ablation (silenced where they fire) lowers that listener's score x_u · y' "
                   "most, with the drop.")
        st.markdown("\n".join(f"- **{r['user_id']}**: " + ", ".join(
            f"[{d['unit']}]({unit_link(d['unit'], ws_path)}) +{d['effect']:.3f}" for d in r.get("drivers", []))
            for r in listeners))


def _embedding(ws_path: str, eng, name: str, data: bytes):
    """The upload's embedding with its frames (for counterfactuals), one per session, keyed by its content."""
    key = (ws_path, hashlib.sha1(data).hexdigest())
    cache = st.session_state.setdefault("_cf_embedding", {})
    if key not in cache:
        check_upload_size(name, len(data), eng.cfg.max_bytes)
        with tempfile.TemporaryDirectory(prefix="audiovis-cf-") as d:
            p = Path(d) / ("upload" + Path(name).suffix.lower())
            p.write_bytes(data)
            emb = eng.embed_file(p, name=name, units=True, keep_frames=True, max_bytes=eng.cfg.max_bytes)
        cache.clear()
        cache[key] = emb
    return cache[key]


def _similar_list(ws_path: str, rows: list[dict], before: bool) -> None:
    for r in rows:
        was = ""
        if before:
            was = f" · was {r['rank_before']}" if r.get("rank_before") else " · **new**"
        labels = format_labels(r.get("labels", {}))
        st.markdown(f"**{r['rank']}. [{r['song_id']}]({song_link(r['song_id'], ws_path)})** · {r['score']:.3f}{was}"
                    + (f"  \n{labels}" if labels else ""))
        try:
            audio_bytes, mime = encoded_clip(ws_path, r["song_idx"], r["clip_start_s"], r["clip_end_s"])
            clip_player(audio_bytes, mime)
        except AudiovisError as e:
            st.warning(f"cannot play {r['song_id']}: {e}")


def counterfactual_ui(ws_path: str, eng, name: str, data: bytes, rec: dict, k: int) -> None:
    """Ablate or clamp units of the uploaded song and hear how its similar songs and listeners change."""
    st.markdown("#### Counterfactual listening")
    st.caption("Silence units where they fire (ablate) or hold them at a value in every window (clamp, in the "
               "unit's activation units, as in its unit view), and see where the model would put the song then.")
    active = [u["unit"] for u in rec.get("units", [])]
    options = active + [u for u in lst.unit_names(eng.layers, lst.feature_dictionaries(eng.index, eng.model))
                        if u not in active]
    c1, c2 = st.columns(2)
    ablate = c1.multiselect("Ablate units", options, key="cf_ablate", placeholder="the most active units first",
                            select_all=False, max_selections=32)   # no one-click "Select all" of every unit
    clamp_text = c2.text_input("Clamp units (UNIT=VALUE, comma-separated)", key="cf_clamp",
                               placeholder="e.g. conv3:17=2.5")
    clamp = [c.strip() for c in clamp_text.split(",") if c.strip()]
    if not ablate and not clamp:
        st.caption("Pick a unit to ablate or type a clamp to compare.")
        return
    try:
        cf = eng.counterfactual(_embedding(ws_path, eng, name, data), ablate, clamp, k=k, n_users=10)
    except AudiovisError as e:
        st.error(f"Cannot run this counterfactual: {e}")
        return
    ch = cf["changes"]
    st.write(f"{', '.join(cf['interventions'])}: {cf['windows_changed']} of {cf['windows']} windows changed; "
             f"cosine of the factors to the original {cf['cosine_to_original']:.3f}; similar songs kept "
             f"{ch['similar']['kept']} of {len(cf['original']['similar'])}"
             + (f", listeners kept {ch['listeners']['kept']} of {len(cf['original']['listeners'])}"
                if cf["original"]["listeners"] else "") + f" ({cf['seconds'] * 1000:.0f} ms)")
    cols = st.columns(2)
    for col, key, title in ((cols[0], "original", "Original"), (cols[1], "counterfactual", "Counterfactual")):
        with col:
            st.markdown(f"##### {title}: similar songs")
            _similar_list(ws_path, cf[key]["similar"], before=key == "counterfactual")
            if cf[key]["listeners"]:
                st.markdown(f"##### {title}: likely listeners")
                st.dataframe([{"user": r["user_id"], "x_u · y'": round(r["score"], 3),
                               **({"was": r["rank_before"]} if "rank_before" in r else {})}
                              for r in cf[key]["listeners"]], hide_index=True, width="stretch")
    links = " · ".join(f"[{u}]({unit_link(u, ws_path)})" for u in dict.fromkeys(
        str(iv).split("=")[0] for iv in cf["interventions"]))
    st.caption(f"Units changed: {links}")
