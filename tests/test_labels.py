"""audiovis.labels: loose search words and the ground truth of a clip."""
from audiovis.labels import clip_labels, text_matches


def test_text_matches_loosely():
    assert text_matches("distorted guitar", ["lead=distortion_guitar"])
    assert text_matches("Tenor Sax", ["lead=tenor_sax"])
    assert text_matches("", ["anything"])
    assert not text_matches("flute", ["lead=distortion_guitar"])
    assert not text_matches("distorted violin", ["lead=distortion_guitar"])


def test_clip_labels_use_segments():
    segs = [{"concept": "lead", "start_s": 0.0, "end_s": 5.0, "value": "none"},
            {"concept": "lead", "start_s": 5.0, "end_s": 20.0, "value": "flute"}]
    song = {"lead": "flute", "groove": "rock"}
    assert clip_labels(song, segs, 1.0, 4.0) == {"lead": "none", "groove": "rock"}
    assert clip_labels(song, segs, 8.0, 11.0)["lead"] == "flute"
    assert clip_labels(song, segs, 4.0, 7.0)["lead"] == "none→flute"
    assert clip_labels(song, [], 1.0, 4.0) == song
