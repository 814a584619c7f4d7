"""Page data without Streamlit (audiovis.explore) on the built fixture workspace."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiovis.errors import ParameterError
from audiovis.explore import Explorer, workspace_state


@pytest.fixture(scope="module")
def ex(built_ws):
    return Explorer(built_ws[0])


def test_unit_table_sort_and_search(ex):
    rows = ex.unit_table("conv1", sort="selectivity")
    assert len(rows) == ex.layers["conv1"]
    sel = [r["selectivity"] for r in rows]
    assert sel == sorted(sel, reverse=True)
    sp = [r["sparsity"] for r in ex.unit_table("conv2", sort="sparsity")]
    assert sp == sorted(sp, reverse=True)
    assert [r["unit"] for r in ex.unit_table(None, query="output:3")] == ["output:3"]
    with pytest.raises(ParameterError, match="sort key 'loudness' is not one of"):
        ex.unit_table("conv1", sort="loudness")
    with pytest.raises(ParameterError, match="no layer 'conv9'"):
        ex.unit_table("conv9")


def test_unit_view_clips(ex):
    rows = ex.unit_view("conv1:0", n=3)
    top = ex.index.top("conv1:0", n=3)
    assert [r.song_id for r in rows] == [t["song_id"] for t in top]
    for r in rows:
        assert r.end_s - r.start_s == pytest.approx(3.0, abs=1e-6)
        assert r.start_s <= r.peak_s <= r.end_s
        y, sr = sf.read(io.BytesIO(r.audio))
        assert r.mime == "audio/ogg" and sr == 22050
        assert len(y) == pytest.approx(3.0 * sr, abs=2)
        assert r.image[:2] == b"\xff\xd8"                               # JPEG
        # conv1 has no pooling before it: the curve reproduces the index's activation at the peak
        assert r.curve_max == pytest.approx(r.activation, rel=0.05, abs=0.02)
    assert len(ex.unit_view("output:1", n=2, bottom=True, audio=False)) == 2
    with pytest.raises(ParameterError, match="n must be between 1 and"):
        ex.unit_view("conv1:0", n=0)
    with pytest.raises(ParameterError, match="no layer 'conv7'"):
        ex.unit_view("conv7:0")


def test_activation_curve_conv_and_dense(ex):
    t, v = ex.activation_curve("conv2:1", 0, 1.0, 4.0)
    assert len(t) == len(v) > 50 and t[0] >= 1.0 - 0.05 and t[-1] <= 4.0 + 0.05
    t, v = ex.activation_curve("dense1:0", 0, 1.0, 4.0)
    assert 5 < len(v) < 30 and np.all(v >= 0)                            # ReLU unit


def test_heatmap_and_song_view(ex):
    hm = ex.heatmap("conv1")
    assert hm.z.shape == (ex.layers["conv1"], len(hm.columns)) and len(hm.columns) >= 2
    assert all("=" in c for c in hm.columns)
    sv = ex.song_view(0, "conv2", n_units=3)
    assert len(sv["curves"]) == 3 and sv["S"].shape[0] == ex.store.cfg.n_mels
    assert ex.song_picture(sv)[:4] == b"\x89PNG"
    with pytest.raises(ParameterError, match="song index 9999 out of range"):
        ex.song_view(9999, "conv2")


def test_dissection_labels(built_ws, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    (ws / "index" / "dissection.json").write_text(json.dumps({"metric": "auroc", "threshold": 0.9, "units": {
        "conv1:2": [{"concept": "lead=distortion_guitar", "score": 0.95, "detector": True}],
        "conv1:5": [{"concept": "kind=low", "score": 0.91, "detector": True}]}}))
    e = Explorer(ws)
    assert e.unit_labels("conv1:2")[0]["concept"] == "lead=distortion_guitar"
    assert [r["unit"] for r in e.unit_table("conv1", query="distorted guitar")] == ["conv1:2"]
    assert [r["unit"] for r in e.unit_table("conv1", sort="label")][:2] == ["conv1:2", "conv1:5"]
    (ws / "index" / "dissection.json").write_text("{not json")
    assert Explorer(ws).dissection == {}


def test_workspace_state(built_ws, tmp_path):
    assert workspace_state(built_ws[0])[0] == "ready"
    state, msg = workspace_state(tmp_path / "nope")
    assert state == "missing" and "audiovis demo" in msg and "audiovis run --workspace" in msg


def test_explorer_takes_a_path_or_a_workspace(built_ws, ex):
    from audiovis.workspace import Workspace
    e = Explorer(Workspace(built_ws[0]))
    assert e.ws.path == ex.ws.path and e.layers == ex.layers
    assert [r["unit"] for r in e.unit_table("conv1")] == [r["unit"] for r in ex.unit_table("conv1")]


# ----------------------------------------------------------------------------- one picture maker, no pyplot
PYPLOT = re.compile(r"^\s*(import\s+matplotlib\.pyplot|from\s+matplotlib\s+import\s+pyplot"
                    r"|from\s+matplotlib\.pyplot\s+import)", re.M)
# modules still on pyplot, each waiting for its owner to switch to audiovis.pictures (empty this set then)
PENDING = set()


def test_no_module_of_audiovis_imports_pyplot():
    """pyplot's process-wide figure registry is not safe in the page's multi-session server: audiovis draws
    with audiovis.pictures (numpy + Pillow, or a Figure with its own Agg canvas)."""
    import audiovis
    root = Path(audiovis.__file__).parent
    found = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if PYPLOT.search(p.read_text("utf-8"))}
    assert found <= PENDING, f"pyplot imported by {sorted(found - PENDING)}: use audiovis.pictures.new_figure"


def test_every_picture_is_drawn_without_pyplot(tmp_path):
    """Import the page's modules, draw one picture of every kind, and pyplot is still not loaded."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import audiovis.ui.common, audiovis.ui.visualise, audiovis.visualise.cli           # the page and the CLI
        from audiovis import pictures as p
        from audiovis.explore import HeatMap
        from audiovis.visualise.filters import frequency_response, plot_filters, plot_response
        rng = np.random.default_rng(0)
        S = (rng.random((128, 130)) * 80 - 80).astype(np.float32)
        t = np.arange(130) * 512 / 22050
        out = [p.render_clip(S, 0.0, 512 / 22050, t, rng.random(130), 1.0, 1.0),
               p.render_histogram(np.array([5, 0, 2]), np.array([0.0, 1.0, 2.0, 3.0])),
               p.render_heatmap(HeatMap("conv1", ["conv1:0", "conv1:1"], ["a=x", "a=y"], rng.random((2, 2)),
                                        rng.standard_normal((2, 2)), np.array([3, 4]))),
               p.render_song(S, 512 / 22050, [("conv1:0", t, rng.random(130), 1.0)],
                             [{{"concept": "lead", "value": "flute", "start_s": 1.0}}]),
               p.render_timelines([("conv1:0", t, rng.random(130)), ("conv1:1", t, rng.random(130))], 3.0),
               p.figure_png(p.plot_logmel(S, title="x"))]
        W = rng.standard_normal((4, 128, 3)).astype(np.float32)
        out += [p.figure_png(plot_filters(W)), p.figure_png(plot_response(frequency_response(W), 0))]
        p.save_figure(p.plot_logmel(S), {str(tmp_path / "s.png")!r})
        assert out[0][:2] == b"\\xff\\xd8" and all(o[:4] == b"\\x89PNG" for o in out[1:]), [o[:4] for o in out]
        print("pyplot" if "matplotlib.pyplot" in sys.modules else "no pyplot")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "no pyplot"
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- flags, search, landing unit
def test_flagged_units_are_hidden_from_rankings_and_the_landing_unit(built_ws, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    z = dict(np.load(ws / "index" / "units.npz"))
    e0 = Explorer(ws)
    c = e0.index.column("conv2:4")
    z["std"][c] = 0.0                                                   # conv2:4 is constant: dead
    z["selectivity"][c] = 1e9                                           # ... and would top any ranking
    np.savez(ws / "index" / "units.npz", **z)
    e = Explorer(ws)
    assert e.unit_flag("conv2:4") == "dead"
    shown = [r["unit"] for r in e.unit_table("conv2", sort="selectivity")]
    every = e.unit_table("conv2", sort="selectivity", flagged=True)
    assert "conv2:4" not in shown and every[0]["unit"] == "conv2:4" and every[0]["flag"] == "dead"
    assert len(every) == e.layers["conv2"] == len(shown) + sum(bool(r["flag"]) for r in every)
    assert not e.unit_flag(e.default_unit())


def test_search_ranks_by_match_quality_then_label_score(built_ws, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    (ws / "index" / "dissection.json").write_text(json.dumps({"threshold": 0.9, "units": {
        "conv1:2": [{"concept": "lead=distortion_guitar", "score": 0.80, "detector": False}],
        "conv3:1": [{"concept": "lead=distortion_guitar", "score": 0.96, "detector": True}],
        "conv2:7": [{"concept": "harmony=jazz_guitar", "score": 0.99, "detector": True}]}}))
    (ws / "index" / "explanations.json").unlink(missing_ok=True)
    e = Explorer(ws)
    rows = e.unit_table(None, sort="strength", query="distorted guitar")
    assert [r["unit"] for r in rows] == ["conv3:1", "conv1:2"]          # whole matches only, best label first
    some = [r["unit"] for r in e.unit_table(None, query="distorted violin guitar")]   # no whole match: partial
    assert some[:2] == ["conv3:1", "conv1:2"] and "conv2:7" in some
    assert e.default_unit() == "conv2:7"                                 # the best ground-truth detector
