"""Dictionary features (audiovis.dictionary): a TopK sparse autoencoder on a layer's per-window activations,
browsable as the layer ``<layer>.dict``."""
import json
import shutil

import numpy as np
import pytest

from audiovis.dictionary import (
    DictionaryConfig,
    SparseAutoencoder,
    detector_share,
    train_dictionary,
    train_sae,
    update_dictionaries,
)
from audiovis.errors import ParameterError
from audiovis.index import UnitIndex
from audiovis.units import Unit, dictionary_base, parse_unit
from audiovis.visualise.dissect import auroc_matrix
from audiovis.workspace import Workspace


def planted(n=1000, d=16, n_concepts=3, seed=0):
    """Windows with planted concepts (each on 15% of windows, at random), each a direction spread evenly over
    all ``d`` units (+-1/sqrt(d)), under unit-variance noise in every unit: every unit mixes every concept."""
    rng = np.random.default_rng(seed)
    Y = rng.random((n, n_concepts)) < 0.15
    D = rng.choice([-1.0, 1.0], (n_concepts, d)) / np.sqrt(d)
    X = Y @ (6 * D) + rng.standard_normal((n, d))
    return X.astype(np.float32), Y


def test_parse_unit_accepts_dictionary_features():
    assert parse_unit("dense1.dict:17") == Unit("dense1.dict", 17)
    assert str(parse_unit(" dense1.dict : 3 ", {"dense1.dict": 64})) == "dense1.dict:3"
    assert dictionary_base("dense1.dict") == "dense1" and dictionary_base("dense1") is None
    with pytest.raises(ParameterError, match="index 64 out of range"):
        parse_unit("dense1.dict:64", {"dense1.dict": 64})


def test_a_feature_isolates_a_planted_concept_that_every_unit_mixes():
    X, Y = planted()
    sae = train_sae(X, DictionaryConfig(features=8, k=3, epochs=80, batch_size=128, lr=3e-3), progress=False)
    Z = sae.encode(X)
    assert Z.shape == (len(X), 8) and (Z >= 0).all() and ((Z > 0).sum(1) <= 3).all()
    best_feature = np.nanmax(auroc_matrix(Z, Y), 0)           # per concept
    best_unit = np.nanmax(auroc_matrix(X, Y), 0)
    assert (best_feature >= 0.95).all(), best_feature          # every concept has its feature (seed 0: 1.0)
    assert (best_unit < 0.9).all(), best_unit                  # and no unit is one (0.83-0.85)
    assert detector_share(Z, Y) > detector_share(X, Y) == 0.0


def test_training_resumes_after_a_kill_and_equals_an_uninterrupted_run(tmp_path):
    X, _ = planted(n=400, d=12)
    cfg = DictionaryConfig(features=6, k=2, epochs=6, batch_size=64, checkpoint_every=2)
    full = train_sae(X, cfg, progress=False)
    ck = tmp_path / "train.partial.pt"

    def kill(epoch):
        if epoch == 3:
            raise KeyboardInterrupt("killed")
    with pytest.raises(KeyboardInterrupt):
        train_sae(X, cfg, checkpoint=ck, progress=False, on_epoch=kill)
    assert ck.exists()                                          # saved after epochs 2 and 4
    resumed = train_sae(X, cfg, checkpoint=ck, progress=False)
    np.testing.assert_allclose(resumed.W_dec, full.W_dec, atol=1e-6)
    np.testing.assert_allclose(resumed.encode(X), full.encode(X), atol=1e-5)


def test_bad_settings_and_inputs_say_what_is_wrong():
    with pytest.raises(ParameterError, match="1 <= k <= features, got features=4, k=5"):
        train_sae(np.zeros((10, 3)), DictionaryConfig(features=4, k=5), progress=False)
    sae = SparseAutoencoder(np.zeros((3, 4)), np.zeros(4), np.zeros((4, 3)), np.zeros(3), np.zeros(3), np.ones(3), 2)
    with pytest.raises(ParameterError, match="encodes 3 units per window"):
        sae.encode(np.zeros((5, 7)))


@pytest.fixture(scope="module")
def dict_ws(built_ws, tmp_path_factory):
    """A copy of the built workspace with a dictionary of dense1."""
    ws = Workspace(tmp_path_factory.mktemp("dict") / "ws")
    shutil.copytree(built_ws[0], ws.path)
    rep = train_dictionary(ws, "dense1", DictionaryConfig(features=16, k=4, epochs=20), progress=False)
    return ws, rep


def test_dictionary_features_are_units_of_the_index(dict_ws):
    ws, rep = dict_ws
    assert rep["name"] == "dense1.dict" and rep["features"] == 16 and 0 <= rep["fvu"] < 1
    assert rep["dead"] + rep["dense"] <= 16 and set(rep) >= {"detector_share", "unit_detector_share"}
    assert json.loads((ws.index_dir / "dict" / "dense1" / "report.json").read_text())["fvu"] == rep["fvu"]
    ix = UnitIndex(ws)
    names = list(ix.layers)
    assert names[-1] == "output" and names[-2] == "dense1.dict" and ix.layers["dense1.dict"] == 16
    assert ix.acts.shape == (len(ix.store.windows), sum(ix.layers.values()))
    base = UnitIndex(ws, dictionaries=False)
    A, B = np.asarray(ix.acts, np.float32), np.asarray(base.acts, np.float32)
    np.testing.assert_array_equal(A[:, -8:], B[:, -8:])       # the model's columns keep their positions
    np.testing.assert_array_equal(A[:, :ix.offset["dense1.dict"]], B[:, :base.offset["output"]])
    Z = np.asarray(ix.acts[:, ix.offset["dense1.dict"]:ix.offset["output"]], np.float32)
    expect = SparseAutoencoder.load(ws.index_dir / "dict" / "dense1" / "sae.npz").encode(
        B[:, base.offset["dense1"]:base.offset["output"]])
    np.testing.assert_allclose(Z, expect, atol=2e-2, rtol=1e-2)   # float16 on disk
    c = ix.column("dense1.dict:3")
    top = ix.top("dense1.dict:3", n=3)
    assert top[0]["activation"] == pytest.approx(Z[:, 3].max(), rel=1e-2)
    assert len({t["song_id"] for t in top}) == len(top)        # one clip per song, as units
    st = ix.stats("dense1.dict:3")
    assert sum(st["hist"]) == len(Z) and st["mean"] == pytest.approx(Z[:, 3].mean(), abs=1e-2)
    assert ix.units("dense1.dict")[0] == "dense1.dict:0" and c == ix.offset["dense1.dict"] + 3


def test_unknown_layer_is_refused_with_the_layers(dict_ws, capsys):
    from audiovis.cli import main
    with pytest.raises(ParameterError, match="no layer 'conv9' to learn a dictionary of; layers are conv1"):
        train_dictionary(dict_ws[0], "conv9", progress=False)
    with pytest.raises(ParameterError, match="no layer 'dense1.dict'"):
        train_dictionary(dict_ws[0], "dense1.dict", progress=False)
    assert main(["dictionary", "-w", str(dict_ws[0].path), "--layer", "conv9"]) == 2
    assert "no layer 'conv9'" in capsys.readouterr().err


def test_the_page_dissection_and_export_show_features(dict_ws, tmp_path):
    from audiovis.explore import Explorer
    from audiovis.export import export_index
    from audiovis.visualise.dissect import dissect
    ws, _ = dict_ws
    ex = Explorer(ws)
    rows = ex.unit_view("dense1.dict:2", n=2, audio=False)
    assert rows and rows[0].image[:2] == b"\xff\xd8"            # JPEG with the feature's curve
    t, v = ex.activation_curve("dense1.dict:2", rows[0].song_idx, rows[0].start_s, rows[0].end_s)
    assert len(t) and v.max() == pytest.approx(rows[0].activation, rel=0.2, abs=0.2)
    assert [r["unit"] for r in ex.unit_table("dense1.dict", sort="unit", flagged=True)][:2] == ["dense1.dict:0",
                                                                                             "dense1.dict:1"]
    assert ex.heatmap("dense1.dict").z.shape[0] == 16
    assert ex.song_view(0, "dense1.dict", n_units=2)["units"][0][0].startswith("dense1.dict:")
    # a workspace indexed with a model adapter (no CNN to run): the index's own windows, one value each
    from types import SimpleNamespace

    from audiovis.dictionary import feature_curves
    no_model = SimpleNamespace(model=None, index=ex.index, store=ex.store, cfg=ex.cfg, hop_s=ex.hop_s, ws=ws)
    song = rows[0].song_idx
    (t, v), = feature_curves(no_model, parse_unit("dense1.dict:2"), [(song, 0.0, ex.song_duration(song))])
    c = ex.index.column("dense1.dict:2")
    np.testing.assert_array_equal(v, np.asarray(ex.index.acts[ex.store.song_windows(song), c], np.float32))
    res = dissect(ws, descriptors=False, progress=False)
    assert "dense1.dict:0" in res["units"]
    out = export_index(ws, tmp_path / "export")
    assert out["units"] == UnitIndex(ws).n_units


def test_added_songs_update_the_dictionary(dict_ws, tmp_path):
    from conftest import synth_song

    from audiovis.append import add_songs
    from audiovis.clips import encode
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(dict_ws[0].path, ws.path)
    song = tmp_path / "newsong.wav"
    encode(synth_song("noise", 7.0, np.random.default_rng(3)), 22050, "wav", out=song)
    n0 = len(UnitIndex(ws).store.windows)
    assert add_songs(ws, [song])["added"]
    ix = UnitIndex(ws)
    assert "dense1.dict" in ix.layers and not ix.stale_dictionaries
    assert len(ix.acts) == len(ix.store.windows) > n0
    new = np.asarray(ix.acts[n0:, ix.offset["dense1.dict"]:ix.offset["output"]], np.float32)
    sae = SparseAutoencoder.load(ws.index_dir / "dict" / "dense1" / "sae.npz")
    base = UnitIndex(ws, dictionaries=False)
    expect = sae.encode(np.asarray(base.acts[n0:len(ix.store.windows), base.offset["dense1"]:base.offset["output"]]))
    np.testing.assert_allclose(new, expect, atol=2e-2, rtol=1e-2)
    assert sum(ix.stats("dense1.dict:0")["hist"]) >= n0         # histograms counted the new windows
    assert update_dictionaries(ws) == []                        # up to date


def test_a_dictionary_of_an_earlier_index_is_left_out_as_stale(dict_ws, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(dict_ws[0].path, ws.path)
    p = ws.index_dir / "dict" / "dense1" / "layers.json"
    meta = json.loads(p.read_text())
    p.write_text(json.dumps({**meta, "index_key": "another index"}))
    ix = UnitIndex(ws)
    assert "dense1.dict" not in ix.layers and list(ix.layers)[-1] == "output"
    assert "audiovis dictionary -w" in ix.stale_dictionaries["dense1.dict"]
    assert "--layer dense1 --force" in ix.stale_dictionaries["dense1.dict"]


def test_the_cli_defaults_are_the_config_defaults():
    from audiovis.cli import build_parser
    a = build_parser().parse_args(["dictionary", "--layer", "dense1"])
    cfg = DictionaryConfig()
    assert (a.features, a.k, a.epochs, a.seed) == (cfg.features, cfg.k, cfg.epochs, cfg.seed)


def test_stacked_columns_index_like_the_concatenated_array():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((7, w)).astype(np.float16) for w in (3, 4, 2)]
    S, A = UnitIndex.StackedColumns(parts), np.concatenate(parts, 1)
    assert S.shape == A.shape and len(S) == 7 and S.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(S, np.float32), A.astype(np.float32))
    for key in (2, slice(1, 5), np.array([0, 5]), (slice(None), slice(3, 7)), (slice(None), slice(2, 8)),
                (np.array([1, 6]), slice(-2, None)), (3, 4), (slice(None), np.array([8, 0, 4])),
                (slice(None), slice(0, 9, 2)), (slice(None), slice(5, 5))):
        np.testing.assert_array_equal(S[key], A[key])
