"""The page's "why" panels (audiovis.ui.why) with AppTest on the built fixture workspace."""
from __future__ import annotations

import pytest
from test_app import _app, _titles


@pytest.mark.slow
def test_why_on_a_top_clip_shows_the_heat_the_two_sounds_and_the_areas(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="unit", unit="conv3:0", n="2", bottom="0")
    assert not at.exception and "Unit conv3:0" in _titles(at)
    n_img, n_audio = len(at.get("image")), len(at.get("audio"))
    at.toggle(key="why_conv3:0_1_on").set_value(True).run()
    assert not at.exception
    assert len(at.get("image")) == n_img + 2                          # the heat overlay and the deletion curves
    assert len(at.get("audio")) == n_audio + 3                        # the clip, the kept and the removed part
    text = " ".join(m.value for m in at.markdown)
    assert "Deletion areas" in text and "random cells" in text
    cap = " ".join(c.value for c in at.caption)
    assert "only the most attributed cells" in cap and "the clip without them" in cap
    at.radio(key="why_conv3:0_1_method").set_value("occlusion").run()
    assert not at.exception and len(at.get("audio")) == n_audio + 3


@pytest.mark.slow
def test_layer_walk_shows_every_layer_with_linked_top_units(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="song")
    assert not at.exception and _titles(at)[0].startswith("Song ")
    n_img = len(at.get("image"))
    at.toggle(key="walk_on").set_value(True).run()
    assert not at.exception
    assert len(at.get("image")) == n_img + 5                          # conv1, conv2, conv3, dense1, output
    tops = [m.value for m in at.markdown if m.value.startswith("Top ")]
    assert [t.split()[1] for t in tops] == ["conv1", "conv2", "conv3", "dense1", "output"]
    assert "view=unit" in tops[0]


def _upload_panels(ws_path: str, path: str, song: str, users: list):
    from audiovis.ui.why import why_listeners_ui, why_ui
    why_ui(ws_path, path, similar=song, key="why_similar")
    why_listeners_ui(ws_path, path, users)


@pytest.mark.slow
def test_why_for_an_upload_similar_song_and_likely_listener(built_ws, corpus):
    from streamlit.testing.v1 import AppTest

    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    path = str(sorted(corpus["audio_dir"].glob("*.wav"))[0])
    at = AppTest.from_function(_upload_panels, args=(str(built_ws[0]), path, ws.song_ids()[3], ws.user_ids()[:3]),
                               default_timeout=120).run()
    assert not at.exception and len(at.get("image")) == 0            # nothing computed until asked
    at.toggle(key="why_similar_on").set_value(True).run()
    assert not at.exception and len(at.get("image")) == 2 and len(at.get("audio")) == 3
    at.selectbox(key="why_listener_user").set_value(ws.user_ids()[1]).run()
    at.toggle(key=f"why_listener_{ws.user_ids()[1]}_on").set_value(True).run()
    assert not at.exception and len(at.get("image")) == 4 and len(at.get("audio")) == 6
    caps = [i.proto.imgs[0].caption for i in at.get("image")]
    assert caps[0].startswith(f"similarity to {ws.song_ids()[3]} = ") and "on song000.wav at" in caps[0]
    assert caps[2].startswith(f"listener {ws.user_ids()[1]}'s score = ")


def test_an_upload_is_written_once_under_its_own_name(tmp_path, monkeypatch):
    import tempfile

    from audiovis.ui.why import upload_path
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    p = upload_path("../my song.mp3", b"abc")
    assert p.endswith("my song.mp3") and open(p, "rb").read() == b"abc"
    assert upload_path("my song.mp3", b"abc") == p and upload_path("my song.mp3", b"abd") != p
