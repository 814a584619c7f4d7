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


# ----------------------------------------------------------------------------- search ranking
def test_match_quality_ranks_whole_matches_first():
    from audiovis.labels import match_quality
    q = "distorted guitar"
    assert match_quality(q, "lead=distortion_guitar") > match_quality(q, "guitar") > 0
    assert match_quality(q, "lead=flute") == 0.0
    assert match_quality("flute", "lead=flute") == 1.0 > match_quality("flute", "flute and violin")  # name free
    assert match_quality("rock", "rock") > match_quality("rock", "classic rock") > 0.9
    assert match_quality("tags:rock", "tags:rock") == 1.01                                  # the text itself
    assert match_quality("", "anything") == 0.0


def test_unit_match_orders_by_quality_then_evidence():
    from audiovis.labels import unit_match
    det = unit_match("flute", ["dense1:3"], [{"concept": "lead=flute", "score": 0.95}])
    weak = unit_match("flute", ["dense1:4"], [{"concept": "lead=flute", "score": 0.7}])
    expl = unit_match("flute", ["dense1:5"], [], "lead=flute, bright", 0.99)
    negated = unit_match("flute", ["dense1:6"], [], "not lead=flute", 0.99)
    assert det > weak > expl > negated == (0.0, 0.0)          # an explanation ranks under a label of equal match
    assert unit_match("rock", ["tags:0", "rock", "tags:rock"], []) == (1.01, 1.0)


def test_load_dissection_merges_the_best_units_of_each_concept(tmp_path):
    import json

    from audiovis.labels import load_dissection
    from audiovis.workspace import Workspace
    ws = Workspace(tmp_path / "ws")
    ws.index_dir.mkdir(parents=True)
    (ws.index_dir / "dissection.json").write_text(json.dumps({"threshold": 0.9, "units": {
        "a:0": [{"concept": "groove=ska", "score": 0.97, "detector": True}]},
        "concepts": {"lead=flute": [{"unit": "a:0", "score": 0.92}, {"unit": "a:1", "score": 0.6}]}}))
    d = load_dissection(ws)
    assert [x["concept"] for x in d["a:0"]] == ["groove=ska", "lead=flute"]
    assert d["a:0"][1]["detector"] is True and d["a:1"][0] == {"concept": "lead=flute", "score": 0.6,
                                                               "detector": False, "iou": None}


def test_build_labels_is_the_pipelines_label_stage(built_ws, tmp_path):
    """The default build labels units from the ground truth (no librosa pass) and keeps newer files."""
    import shutil

    from audiovis.labels import build_labels, load_dissection
    from audiovis.workspace import Workspace
    assert built_ws[1]["label"] == {"dissection": True, "explanations": True, "reason": ""}
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    assert load_dissection(Workspace(ws))                                  # written by run_pipeline
    before = (ws / "index" / "dissection.json").stat().st_mtime_ns
    assert build_labels(ws, progress=False) == {"dissection": False, "explanations": False, "reason": ""}
    assert (ws / "index" / "dissection.json").stat().st_mtime_ns == before
    (ws / "index" / "dissection.json").unlink()
    assert build_labels(ws, progress=False)["dissection"] is True
    assert (ws / "index" / "dissection.json").exists()
