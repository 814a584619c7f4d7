"""Uploaded bytes (the page's upload box): size-checked before anything is written, then decoded in a
temporary directory, never the workspace; errors quote the upload's own file name. An upload is kept in the
workspace (``WS/uploads/NAME``) only when it is added and has passed validation."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .append import add_songs, find_identical
from .coldstart import MAX_UPLOAD_BYTES, ColdStartConfig, get_engine, validate_audio
from .errors import AudioError
from .features import song_frames
from .results import recommendation_json
from .workspace import atomic_path


def safe_name(name: str) -> str:
    """An uploaded file's name made safe to write: its last part, letters, digits and ``._- `` kept, at most 120
    characters ('upload' when nothing is left)."""
    keep = "".join(c if c.isalnum() or c in "._- " else "_" for c in Path(name).name).strip(" .")
    return keep[:120] or "upload"


def check_upload_size(name: str, size: int, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """Refuse an upload by its size alone, before its bytes are written anywhere."""
    if size > max_bytes:
        raise AudioError(f"'{name}': {size / 1048576:.1f} MB is larger than the upload limit of "
                         f"{max_bytes / 1048576:.0f} MB")
    if size == 0:
        raise AudioError(f"'{name}': file is empty (0 bytes)")


def recommend_upload(workspace, name: str, data: bytes, cfg: ColdStartConfig | None = None, **kwargs) -> dict:
    """:meth:`audiovis.coldstart.ColdStart.recommend` for uploaded bytes: size-checked first, then written to a
    temporary directory (never the workspace), validated (duration cap) and embedded; errors quote ``name``.

    Returns the JSON-serialisable recommendation (with ``timeline`` unless ``timeline=False``)."""
    eng = get_engine(workspace, cfg)
    check_upload_size(name, len(data), eng.cfg.max_bytes)
    kwargs.setdefault("timeline", True)
    with tempfile.TemporaryDirectory(prefix="audiovis-upload-") as d:
        p = Path(d) / safe_name(name)
        p.write_bytes(data)
        rec = eng.recommend(p, name=name, max_bytes=eng.cfg.max_bytes, exclude_self=False, **kwargs)
        same = find_identical(eng.ws, p)                   # an upload of a catalogue song: say which one
    for r in rec["similar"]:
        r["clip_start_s"], r["clip_end_s"], r["clip_cosine"] = eng.best_window(r["song_idx"],
                                                                              rec["embedding"].factors)
    out = recommendation_json(rec)
    out["catalogue_song"] = same
    return out


def add_upload(workspace, name: str, data: bytes, cfg: ColdStartConfig | None = None,
               song_id: str | None = None) -> dict:
    """Validate uploaded bytes in a temporary directory, then keep them as ``WS/uploads/<name>`` and add the
    song (:func:`audiovis.append.add_songs`) as ``song_id`` (default: the file's stem). Nothing is written into
    the workspace unless the file passes validation; failure reasons name the upload, not the server's path."""
    eng = get_engine(workspace, cfg)
    check_upload_size(name, len(data), eng.cfg.max_bytes)
    with tempfile.TemporaryDirectory(prefix="audiovis-upload-") as d:
        p = Path(d) / safe_name(name)
        p.write_bytes(data)
        validate_audio(p, name, max_bytes=eng.cfg.max_bytes, max_duration=eng.cfg.max_duration)
        song_frames(p, eng.fcfg, name, max_duration=eng.cfg.max_duration)   # decodes cleanly
        dest_dir = eng.ws.path / "uploads"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / safe_name(name)
        n = 1
        while dest.exists():
            dest = dest_dir / f"{Path(safe_name(name)).stem}-{n}{Path(name).suffix}"
            n += 1
        with atomic_path(dest) as tmp:
            shutil.copyfile(p, tmp)
    out = add_songs(eng.ws, [dest], song_ids=[song_id] if song_id else None, cfg=eng.cfg)
    if not out["added"]:
        dest.unlink(missing_ok=True)
    for f in out["failed"]:
        f["reason"] = str(f["reason"]).replace(str(dest), name)
        f["file"] = name
    return out

