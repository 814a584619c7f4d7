"""Listeners behind a unit (ablation effects); interventions (tests/test_counterfactual.py: the cold-start queries)."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, synth_song

from audiovis import coldstart as cs
from audiovis import listeners as L
from audiovis.errors import ParameterError, WorkspaceError
from audiovis.features import FeatureStore
from audiovis.model import save_checkpoint
from audiovis.train import load_model
from audiovis.units import layer_sizes
from audiovis.workspace import Workspace, save_npz

J, J2, DEAD = 5, 6, 7           # dense1 units of the toy model: constant 2, input-dependent, never fires


def _toy_weights(model):
    """Factor 0 = 2 * out_std[0] + out_mean[0] from dense1:J (a constant 2); factor 1 from dense1:J2 (depends on
    the input); dense1:DEAD never fires; nothing else reaches the output."""
    with torch.no_grad():
        lin, out = model.dense1.linear, model.output
        lin.weight[J] = 0.0
        lin.bias[J] = 2.0
        lin.bias[J2] += 1.0                # fires in most windows, by how much depends on the input
        lin.weight[DEAD] = 0.0
        lin.bias[DEAD] = -5.0
        out.weight.zero_()
        out.bias.zero_()
        out.weight[0, J] = 1.0
        out.weight[1, J2] = 1.0
    return model


@pytest.fixture(scope="module")
def toy_ws(built_ws, tmp_path_factory):
    """A copy of the built workspace with the toy weights and designed user factors; listeners built with an
    interruption after the second batch of songs, then resumed."""
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path_factory.mktemp("toy") / "ws"))
    model, extra = load_model(ws)
    save_checkpoint(ws.model_path, _toy_weights(model), extra)
    with np.load(ws.factors_path) as z:
        fac = {k: z[k] for k in z.files}
    X = np.zeros_like(fac["user_factors"])
    X[0, 0], X[1, 1], X[2, 0], X[3, 0] = 1.0, 1.0, 3.0, -1.0        # users 4.. have x_u = 0
    fac["user_factors"] = X
    save_npz(ws.factors_path, **fac)
    real, calls = L.ablation_deltas, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*a, **kw)
    L.ablation_deltas = flaky
    try:
        with pytest.raises(RuntimeError, match="killed"):
            L.build_listeners(ws, n_top=4, progress=False, batch_windows=16, checkpoint_every=1)
    finally:
        L.ablation_deltas = real
    assert (ws.index_dir / L.PARTIAL_FILE).exists()
    summary = L.build_listeners(ws, n_top=4, progress=False, batch_windows=16, checkpoint_every=1)
    return ws, model, X, summary


def test_toy_ablation_changes_exactly_the_expected_users(toy_ws):
    ws, model, X, summary = toy_ws
    assert not (ws.index_dir / L.PARTIAL_FILE).exists() and summary["songs"] == 30
    li = L.ListenerIndex(ws)
    d = li.delta[li.col(f"dense1:{J}")]
    np.testing.assert_allclose(d, [2 * float(model.out_std[0]), 0] + [0] * (len(d) - 2), atol=1e-5)
    e = li.effects(f"dense1:{J}")
    np.testing.assert_allclose(e[:4], np.array([1, 0, 3, -1]) * 2 * float(model.out_std[0]), rtol=1e-5)
    assert not e[4:].any() and not e[1]                         # exactly the users with x_u0 != 0 change
    top = li.of(f"dense1:{J}", n=2)
    assert [r["user_idx"] for r in top["listeners"]] == [2, 0] and top["turned_away"][0]["user_idx"] == 3
    assert top["songs_fired"] == 30 and top["mean_effect"] == pytest.approx(e.mean(), rel=1e-6)
    c = li.col(f"dense1:{J}")                                   # what the step stored agrees
    assert list(li.data["top_users"][c][:2]) == [2, 0] and li.data["bottom_users"][c][0] == 3
    np.testing.assert_allclose(li.data["top_effect"][c], np.sort(e)[::-1][:4], rtol=1e-6)
    assert li.data["mean_effect"][c] == pytest.approx(e.mean(), rel=1e-5)
    # a unit that never fires, and every dense unit whose output goes nowhere, change nothing; no unit but J
    # changes factor 0 (conv units reach factor 1 through J2)
    assert li.data["songs_fired"][li.col(f"dense1:{DEAD}")] == 0
    others = [c for u, c in li.column.items() if u.startswith("dense1:") and u not in (f"dense1:{J}", f"dense1:{J2}")]
    assert not li.delta[others].any() and not np.delete(li.delta[:, 0], li.col(f"dense1:{J}")).any()
    assert not li.effects(f"dense1:{DEAD}").any()


def test_toy_input_dependent_unit_matches_brute_force(toy_ws):
    """d_j = mean over the songs where j fires of (y_s - y_s^-j), each y_s the mean over the song's windows."""
    ws, model, X, _ = toy_ws
    store = FeatureStore(ws)
    iv = L.parse_interventions(layer_sizes(model), ablate=[f"dense1:{J2}"])
    x = store.batch(np.arange(len(store.windows)))
    with torch.no_grad():
        y_w = model(torch.from_numpy(x)).numpy()
    y_ab_w = L.intervened_factors(model, x, iv)
    diffs = []
    for s in range(store.n_songs):
        w = store.song_windows(s)
        y, y_ab = y_w[w].mean(0), y_ab_w[w].mean(0)
        if np.any(y != y_ab):
            diffs.append(y - y_ab)
    li = L.ListenerIndex(ws)
    np.testing.assert_allclose(li.delta[li.col(f"dense1:{J2}")], np.mean(diffs, 0), rtol=1e-4, atol=1e-6)
    assert li.data["songs_fired"][li.col(f"dense1:{J2}")] >= len(diffs)


def test_ablation_deltas_match_the_hooked_model(built_ws):
    """The repeated-rows shortcut gives exactly what the model with the unit zeroed by a hook gives."""
    ws = Workspace(built_ws[0])
    model, _ = load_model(ws)
    x = FeatureStore(ws).batch(np.arange(12))
    fires, delta = L.ablation_deltas(model, x, layer_sizes(model), chunk_bytes=1 << 20)
    names = L.unit_names(layer_sizes(model))
    with torch.no_grad():
        base = model(torch.from_numpy(x)).numpy()
    for layer in ("conv1", "conv2", "conv3", "dense1"):
        j = max((i for i, u in enumerate(names) if u.startswith(layer + ":")), key=lambda i: fires[:, i].sum())
        y = L.intervened_factors(model, x, L.parse_interventions(layer_sizes(model), ablate=[names[j]]))
        np.testing.assert_allclose(base - y, delta[:, j], atol=1e-6)
        assert fires[:, j].any() and not delta[~fires[:, j], j].any()


def test_hooks_are_removed_and_keep_to_their_thread(built_ws):
    model, _ = load_model(Workspace(built_ws[0]))
    x = torch.from_numpy(FeatureStore(Workspace(built_ws[0])).batch(np.arange(4)))
    with torch.no_grad():
        base = model(x)
    j = int(model.output.weight.abs().sum(0).argmax())     # a unit the output reads (a dead one may weigh 0)
    iv = L.parse_interventions(layer_sizes(model), clamp=[f"dense1:{j}=50"])
    other = {}
    with torch.no_grad(), L.intervene(model, iv):
        t = threading.Thread(target=lambda: other.setdefault("y", model(x)))
        t.start()
        t.join()
        mine = model(x)
    assert torch.equal(other["y"], base) and not torch.equal(mine, base)
    with pytest.raises(RuntimeError), L.intervene(model, iv):
        raise RuntimeError("boom")
    with torch.no_grad():
        assert torch.equal(model(x), base)


@pytest.mark.parametrize("ablate, clamp, msg", [
    (["conv9:1"], [], "no layer 'conv9'"),
    (["conv3:999"], [], "index 999 out of range; layer 'conv3' has units 0..127"),
    (["output:1"], [], "output units are the predicted factors"),
    (["conv3"], [], "not of the form 'layer:index'"),
    ([], ["conv3:17"], "not of the form UNIT=VALUE"),
    ([], ["conv3:17=abc"], "value 'abc' is not a number"),
    ([], ["conv3:17=nan"], "is not finite"),
    (["conv3:17"], ["conv3:17=1"], "ablated or clamped twice"),
])
def test_bad_interventions(built_ws, ablate, clamp, msg):
    layers = layer_sizes(load_model(Workspace(built_ws[0]))[0])
    with pytest.raises(ParameterError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        L.parse_interventions(layers, ablate, clamp)


@pytest.fixture(scope="module")
def new_song(tmp_path_factory):
    p = tmp_path_factory.mktemp("cf") / "new_high.wav"
    sf.write(p, synth_song("high", 9.5, np.random.default_rng(5)), SR)
    return p


def test_cli_recommend_ablate_and_listeners(built_ws, new_song, tmp_path, capsys):
    from audiovis.cli import main
    ws = str(built_ws[0])
    assert main(["recommend", "-w", ws, str(new_song), "--ablate", "dense1:1", "--clamp", "conv3:2=3.5",
                 "--json", "-k", "4"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["counterfactual"]["interventions"] == ["dense1:1", "conv3:2=3.5"]
    assert len(rec["counterfactual"]["counterfactual"]["similar"]) == 4
    assert main(["recommend", "-w", ws, str(new_song), "--ablate", "conv3:2", "--drivers"]) == 0
    text = capsys.readouterr().out
    assert "Counterfactual: conv3:2" in text and "counterfactual" in text and "drove it towards" in text
    assert main(["recommend", "-w", ws, str(new_song), "--ablate", "conv3:999"]) == 2
    assert "index 999 out of range" in capsys.readouterr().err
    # no plays factorised: said plainly
    nou = Workspace(shutil.copytree(built_ws[0], tmp_path / "nou"))
    with nou.db:
        nou.db.execute("DELETE FROM meta WHERE key='done:factorize'")
    assert L.listeners_state(nou)[0] == "no-users"
    assert main(["listeners", "-w", str(nou.path)]) == 2
    assert "has no listeners: no plays were factorised" in capsys.readouterr().err


def test_listeners_state_and_cli_unit_table(toy_ws, capsys, monkeypatch):
    from audiovis.cli import main
    ws = toy_ws[0]
    assert L.listeners_state(ws)[0] == "ready"
    assert main(["listeners", "-w", str(ws.path), "--top", "4", "--unit", f"dense1:{J}", "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert f"dense1:{J}: fires in 30 of 30 songs" in out and "Top listeners" in out
    assert main(["listeners", "-w", str(ws.path), "--top", "4", "--unit", "conv7:1"]) == 2
    assert "no layer 'conv7'" in capsys.readouterr().err
    monkeypatch.setattr(L, "signature", lambda ws, n_top: "changed")
    state, msg = L.listeners_state(ws)
    assert state == "stale" and "audiovis listeners -w" in msg
    with pytest.raises(WorkspaceError, match="again"):
        L.ListenerIndex(ws)


def test_unit_view_lists_listeners(toy_ws, built_ws, monkeypatch):
    from test_app import _app
    at = _app(monkeypatch, toy_ws[0].path, view="unit", unit=f"dense1:{J}", n="2")
    assert not at.exception
    assert any("mean effect over all users" in c.value for c in at.caption)
    df = at.dataframe[0].value
    users = toy_ws[0].user_ids()
    assert list(df["user"][:2]) == [users[2], users[0]]
    at = _app(monkeypatch, built_ws[0], view="unit", unit="conv2:3", n="2")
    assert not at.exception and any("audiovis listeners -w" in c.value for c in at.caption)


def _toy_sae(d: int):
    """Feature 0 reads and writes dense1:J alone; feature 1 never fires (k = 1 and a negative bias)."""
    from audiovis.dictionary import SparseAutoencoder
    W_enc, W_dec = np.zeros((d, 2), np.float32), np.zeros((2, d), np.float32)
    W_enc[J, 0], W_dec[0, J], W_dec[1, 0] = 1.0, 1.0, 1.0
    return SparseAutoencoder(W_enc, [0.0, -1.0], W_dec, np.zeros(d), np.zeros(d), np.ones(d), k=1)


def test_toy_dictionary_feature_ablation_and_clamp(toy_ws):
    ws, model, X, _ = toy_ws
    layers = layer_sizes(model)
    dicts = {"dense1.dict": ("dense1", _toy_sae(layers["dense1"]))}
    x = FeatureStore(ws).batch(np.arange(10))
    fires, delta = L.ablation_deltas(model, x, layers, dicts=dicts)
    names = L.unit_names(layers, dicts)
    f0, f1, j = names.index("dense1.dict:0"), names.index("dense1.dict:1"), names.index(f"dense1:{J}")
    assert names[-2:] == ["dense1.dict:0", "dense1.dict:1"] and delta.shape[1] == len(names)
    np.testing.assert_allclose(delta[:, f0], delta[:, j], atol=1e-6)          # the feature is unit J here
    assert fires[:, f0].all() and not fires[:, f1].any() and not delta[:, f1].any()
    with torch.no_grad():
        base = model(torch.from_numpy(x)).numpy()
    ab = L.intervened_factors(model, x, L.parse_interventions(layers, ["dense1.dict:0"], dicts=dicts), dicts=dicts)
    np.testing.assert_allclose(base - ab, delta[:, f0], atol=1e-6)
    cl = L.intervened_factors(model, x, L.parse_interventions(layers, clamp=["dense1.dict:0=5"], dicts=dicts),
                              dicts=dicts)
    np.testing.assert_allclose(cl[:, 0], 5 * model.out_std[0].item() + model.out_mean[0].item(), rtol=1e-5)
    with pytest.raises(ParameterError, match="index 2 out of range"):
        L.parse_interventions(layers, ["dense1.dict:2"], dicts=dicts)
    with pytest.raises(ParameterError, match="no layer 'dense1.dict'"):
        L.parse_interventions(layers, ["dense1.dict:0"])


def test_listeners_of_trained_dictionary_features(built_ws, tmp_path, capsys):
    """With a dictionary of dense1 (audiovis.dictionary), its features get listeners and can be ablated in a
    query; the shortcut matches the hooked model for a feature too."""
    from audiovis.cli import main
    from audiovis.dictionary import DictionaryConfig, train_dictionary
    from audiovis.index import UnitIndex
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    train_dictionary(ws, "dense1", DictionaryConfig(features=8, k=2, epochs=20), progress=False)
    model, _ = load_model(ws)
    dicts = L.feature_dictionaries(UnitIndex(ws), model)
    assert list(dicts) == ["dense1.dict"]
    x = FeatureStore(ws).batch(np.arange(12))
    fires, delta = L.ablation_deltas(model, x, layer_sizes(model), dicts=dicts)
    names = L.unit_names(layer_sizes(model), dicts)
    f = max((i for i, u in enumerate(names) if u.startswith("dense1.dict:")), key=lambda i: fires[:, i].sum())
    with torch.no_grad():
        base = model(torch.from_numpy(x)).numpy()
    y = L.intervened_factors(model, x, L.parse_interventions(layer_sizes(model), [names[f]], dicts=dicts),
                             dicts=dicts)
    np.testing.assert_allclose(base - y, delta[:, f], atol=1e-5)
    L.build_listeners(ws, n_top=5, progress=False)
    li = L.ListenerIndex(ws)
    assert "dense1.dict" in li.layers and li.delta.shape[0] == len(names)
    d = li.of(names[f], 3)
    assert d["songs_fired"] > 0 and len(d["listeners"]) == 3
    cs.forget_engine(ws)
    song = ws.songs()[2]["path"]
    assert main(["recommend", "-w", str(ws.path), str(ws.resolve_audio(song)), "--ablate", names[f], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counterfactual"]["interventions"] == [names[f]]


def test_a_listeners_drivers_and_history(toy_ws, monkeypatch):
    """The listener page: a listener's drivers are the units with the largest x_u . d_j, and their history is
    their most-played songs."""
    ws = toy_ws[0]
    li = L.ListenerIndex(ws)
    users = ws.user_ids()
    d = li.drivers(users[2], 3)
    E = li.delta @ li.user_factors[2]
    assert [x["unit"] for x in d] == [li.units[j] for j in np.argsort(-E, kind="stable")[:3]]
    assert d[0]["effect"] == pytest.approx(float(E.max())) and li.drivers(2, 3) == d
    h = L.listening_history(ws, users[0], 5)
    P = ws.play_matrix().toarray()[0]
    assert [x["plays"] for x in h] == sorted(P[P > 0], reverse=True)[:5]
    assert all(P[x["song_idx"]] == x["plays"] and ws.song_ids()[x["song_idx"]] == x["song_id"] for x in h)
    with pytest.raises(ParameterError, match="listener 'nobody' is not in workspace"):
        L.listening_history(ws, "nobody")
    from test_app import _app
    at = _app(monkeypatch, ws.path, view="listeners", user=users[2])
    assert not at.exception and "Listener" in [t.value for t in at.title]
    md = " ".join(m.value for m in at.markdown)
    assert f"view=unit&unit={d[0]['unit'].replace(':', '%3A')}" in md and "plays" in md
    assert len(at.get("audio")) == len(L.listening_history(ws, users[2], 8))
    assert at.query_params["user"] == users[2]
