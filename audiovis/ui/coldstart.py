"""Cold-start view: upload a song nobody has played; see similar catalogue songs, likely listeners, and the units
that fire most in it over time. All computation is in :mod:`audiovis.coldstart` and :mod:`audiovis.uploads`; this
module only draws."""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from .. import coldstart as cs
from .. import uploads
from ..audio import AUDIO_EXTENSIONS
from ..errors import AudiovisError
from ..pictures import render_timelines
from ..workspace import Workspace
from .common import clip_player, encoded_clip, format_labels, song_link, unit_link, writes_allowed, writes_off_caption
from .listeners import counterfactual_ui, drivers_text, drivers_ui
from .why import upload_path, why_listeners_ui, why_ui


@st.cache_resource(show_spinner="Loading the model for cold-start queries...", max_entries=4)
def _engine(ws_path: str, stamp: tuple) -> cs.ColdStart:
    return cs.get_engine(ws_path)


def get_engine(ws_path: str) -> cs.ColdStart:
    ws = Workspace(ws_path)
    return _engine(str(ws.path), cs.engine_signature(ws))


def _timeline_png(rec: dict, units: list[str]) -> bytes:
    """The most active units' activation over the uploaded song, one strip each (drawn without pyplot)."""
    tracks = [(u, rec["timeline"][u]["t"], rec["timeline"][u]["activation"]) for u in units]
    return render_timelines(tracks, rec["song"]["duration_s"], xlabel="time in the uploaded song (s)")


def _result(ws_path: str, name: str, data: bytes, k: int) -> dict:
    """Recommendation for an upload, kept in the session per (workspace, content, k)."""
    key = ("coldstart", ws_path, hashlib.sha1(data).hexdigest(), k, cs.engine_signature(get_engine(ws_path).ws))
    cache = st.session_state.setdefault("_coldstart_results", {})
    if key not in cache:
        get_engine(ws_path)                       # warm, cached model
        cache.clear()                             # one upload's result at a time (bounded memory)
        cache[key] = uploads.recommend_upload(ws_path, name, data, k=k, n_users=10, n_units=8, drivers=True)
    return cache[key]


def coldstart_ui(ws_path: str) -> dict:
    """Draw the cold-start view for the workspace at ``ws_path``."""
    st.header("Cold start: a song nobody has played yet")
    st.caption("The content CNN predicts the song's latent factors from its audio alone (the mean over its 3 s "
               "windows). Similar songs: cosine similarity to the predicted factors of the catalogue. Likely "
               "listeners: users ranked by x_u · y'. Units: peak activation as a z-score against the "
               "catalogue's windows.")
    cfg = cs.ColdStartConfig()
    mb = min(cfg.max_bytes // 1048576, int(st.get_option("server.maxUploadSize")))   # the widget's limit too
    up = st.file_uploader(f"Upload a song ({', '.join(e.lstrip('.').upper() for e in AUDIO_EXTENSIONS[:6])}; "
                          f"at most {mb} MB and {cfg.max_duration / 60:g} min)",
                          type=[e.lstrip(".") for e in AUDIO_EXTENSIONS], key="coldstart_upload")
    k = st.slider("Similar songs", 3, 30, 10, key="coldstart_k")
    if up is None:
        st.info("Upload an audio file to see where the model puts it.")
        return {"view": "coldstart"}
    data = up.getvalue()
    try:
        with st.spinner(f"Listening to '{up.name}'..."):
            rec = _result(ws_path, up.name, data, k)
    except AudiovisError as e:
        st.error(f"Cannot use this upload: {e}")
        return {"view": "coldstart"}
    song = rec["song"]
    st.subheader(up.name)
    st.write(f"{song['duration_s']:.1f} s, {song['n_windows']} windows of 3 s; "
             f"{rec['search']['method']} {rec['search']['metric']} search over {rec['search']['catalogue']} songs")
    for note in song.get("warnings", []):
        st.warning(note)
    same = rec.get("catalogue_song")
    if same:
        st.success(f"This is [{same}]({song_link(same, ws_path)}) from the catalogue (the same file, byte for "
                   f"byte): it is its own nearest neighbour below.", icon="🔁")
    clip_player(data, up.type or "audio/ogg")

    path = upload_path(up.name, data)             # once a run: it hashes the whole upload
    left, right = st.columns([3, 2])
    with left:
        st.markdown("#### Similar songs")
        for r in rec["similar"]:
            labels = format_labels(r.get("labels", {}))
            st.markdown(f"**{r['rank']}. [{r['song_id']}]({song_link(r['song_id'], ws_path)})** "
                        f"· similarity {r['score']:.3f} · closest window {r['clip_start_s']:.1f}-"
                        f"{r['clip_end_s']:.1f} s" + (f"  \n{labels}" if labels else ""))
            try:
                audio_bytes, mime = encoded_clip(ws_path, r["song_idx"], r["clip_start_s"], r["clip_end_s"])
                clip_player(audio_bytes, mime)
            except AudiovisError as e:
                st.warning(f"cannot play {r['song_id']}: {e}")
            why_ui(ws_path, path, similar=r["song_id"], key=f"why_similar_{r['song_id']}")
    with right:
        st.markdown("#### Likely listeners")
        st.dataframe([{"user": r["user_id"], "x_u · y'": round(r["score"], 3), "driven by": drivers_text(r, 1)}
                      for r in rec["listeners"]], hide_index=True, width="stretch")
        drivers_ui(ws_path, rec["listeners"])
        why_listeners_ui(ws_path, path, [r["user_id"] for r in rec["listeners"]])
        st.markdown("#### Most active units")
        st.markdown("\n".join(
            f"{r['rank']}. [{r['unit']}]({unit_link(r['unit'], ws_path)}) · z {r['score']:.2f} · peak "
            f"{r['peak_activation']:.2f} at {r['peak_s']:.1f} s" for r in rec["units"]))
    if rec.get("timeline"):
        st.markdown("#### When the most active units fire")
        st.image(_timeline_png(rec, [u["unit"] for u in rec["units"]]), width="stretch")
    st.divider()
    counterfactual_ui(ws_path, get_engine(ws_path), up.name, data, rec, k)

    st.divider()
    go, sid = False, ""
    if not writes_allowed():
        writes_off_caption("Adding this song", f"audiovis add -w WS {up.name}")
    elif same:
        st.caption(f"Already in the workspace as {same}: nothing to add.")
    else:
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        sid = c1.text_input("Song id", value=Path(up.name).stem, key="coldstart_add_id",
                            help="the id it gets in the catalogue (must be new)")
        go = c2.button("Add this song to the workspace", key="coldstart_add",
                       help="Featurize, embed and index it without retraining; it then appears like any other song.")
    if go:
        try:
            out = uploads.add_upload(ws_path, up.name, data, song_id=sid.strip() or None)
        except AudiovisError as e:
            st.error(f"Cannot add '{up.name}': {e}")
        else:
            if out["failed"]:
                st.error(out["failed"][0]["reason"])
            else:
                a = out["added"][0]
                st.cache_resource.clear()          # the page's loaders reload the grown index
                st.cache_data.clear()
                st.success(f"Added '{a['song_id']}' as song {a['song_idx']} ({a['windows']} windows)."
                           + (" " + " ".join(a["warnings"]) if a.get("warnings") else ""))
    return {"view": "coldstart"}
