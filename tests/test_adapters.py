"""Model adapters: a model audiovis did not train, indexed end to end without plays; TorchScript; CREPE."""
from __future__ import annotations

import shutil
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

from audiovis.adapters import CrepeAdapter, TorchAdapter, crepe_bin_frequency, load_adapter
from audiovis.errors import ParameterError, WorkspaceError

# A toy model with a known answer: unit 0 of each layer hears the 80-200 Hz band, unit 1 the 1.7-2.7 kHz band
# (conftest's "low" and "high" songs). Written to a file and loaded by import path, as a user would.
TOY = textwrap.dedent('''
    import numpy as np
    import scipy.signal
    import torch
    import torch.nn as nn

    from audiovis.adapters import TorchAdapter

    SR = 8000


    class Bands(nn.Module):
        def __init__(self):
            super().__init__()
            taps = [scipy.signal.firwin(255, band, pass_zero=False, fs=SR) for band in ((80, 200), (1700, 2700))]
            self.filt = nn.Conv1d(1, 2, 255, padding=127, bias=False)
            self.filt.weight.data[:] = torch.tensor(np.array(taps), dtype=torch.float32)[:, None, :]
            self.energy = nn.AvgPool1d(400, 400)          # one step per 50 ms
            self.summary = nn.Linear(2, 2)
            self.summary.weight.data[:] = torch.eye(2)
            self.summary.bias.data[:] = 0

        def forward(self, x):                             # (b, n) at 8 kHz
            e = self.energy(self.filt(x[:, None, :]) ** 2)   # (b, 2, T)
            return {"energy": e, "summary": self.summary(e.mean(-1))}


    class Scriptable(nn.Module):
        def __init__(self):
            super().__init__()
            self.bands = Bands()

        def forward(self, x):
            e = self.bands.energy(self.bands.filt(x[:, None, :]) ** 2)
            return {"energy": e, "summary": self.bands.summary(e.mean(-1))}


    class Wrapped(nn.Module):                             # records submodules by name, hooks and all
        def __init__(self):
            super().__init__()
            self.bands = Bands()

        def forward(self, x):
            e = self.bands.energy(self.bands.filt(x[:, None, :]) ** 2)
            return self.bands.summary(e.mean(-1))


    def make():
        return TorchAdapter(Wrapped(), layers=["bands.energy", "bands.summary"], sr=SR, name="bands")


    def bare_module():
        return Wrapped()
''')


@pytest.fixture(scope="module")
def toy_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("toymodel")
    (d / "toy_bands.py").write_text(TOY)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


@pytest.fixture(scope="module")
def toy_ws(corpus, tiny_configs, toy_module, tmp_path_factory):
    """An index-only workspace: the conftest corpus, no listening log, the toy model by import path."""
    from audiovis.pipeline import run_pipeline
    ws = tmp_path_factory.mktemp("toyws") / "ws"
    out = run_pipeline(ws, corpus["audio_dir"], None, corpus["manifest"], corpus["labels"], n_jobs=1,
                       progress=False, feature=tiny_configs["feature"], index=tiny_configs["index"],
                       model="toy_bands:make")
    return ws, out


def test_toy_model_is_indexed_end_to_end_without_plays(toy_ws, corpus):
    from audiovis.explore import Explorer
    from audiovis.index import UnitIndex
    from audiovis.workspace import Workspace
    ws_dir, out = toy_ws
    assert list(out["seconds"]) == ["ingest", "featurize", "index"]
    ws = Workspace(ws_dir)
    assert ws.n_users == 0 and ws.get_meta("done:train") is None and ws.get_meta("done:factorize") is None
    ix = UnitIndex(ws)
    assert ix.layers == {"bands.energy": 2, "bands.summary": 2}
    kind = dict(zip([f"song{i:03d}" for i in range(len(corpus["kinds"]))], corpus["kinds"]))
    for layer in ix.layers:
        assert {kind[t["song_id"]] for t in ix.top(f"{layer}:0", n=5)} == {"low"}
        assert {kind[t["song_id"]] for t in ix.top(f"{layer}:1", n=5)} == {"high"}
    # the page's explorer reopens the model from the workspace, and the curve peaks where the index says
    ex = Explorer(ws)
    assert ex.model is None and ex.model_name == "bands"
    c = ex.clip_rows("bands.energy:1", n=1)[0]
    t, v = ex.activation_curve("bands.energy:1", c.song_idx, c.start_s, c.end_s)
    assert len(t) > 10 and v.max() == pytest.approx(c.activation, rel=0.25)
    assert abs(t[np.argmax(v)] - c.peak_s) < 0.5
    view = ex.song_view(c.song_idx, "bands.energy", n_units=2)
    assert [u for u, _ in view["units"]] == ["bands.energy:1", "bands.energy:0"]
    assert len(view["curves"][0][1]) > 50


def test_index_reuses_and_switches_models(toy_ws, tiny_configs, tmp_path):
    from audiovis.index import build_index
    from audiovis.workspace import Workspace
    ws_dir = tmp_path / "ws"
    shutil.copytree(toy_ws[0], ws_dir)
    ws = Workspace(ws_dir)
    first = ws.get_meta("done:index")
    build_index(ws, tiny_configs["index"], progress=False)    # the stored model, up to date: nothing rebuilt
    assert ws.get_meta("done:index") == first
    with pytest.raises(WorkspaceError, match="no 'train' stage yet"):
        build_index(ws, progress=False, model="cnn")  # back to audiovis's CNN: needs one trained
    from audiovis.cli import main
    assert main(["index", "-w", str(ws_dir), "--model", "toy_bands:make", "-k", "4", "--batch-windows", "8"]) == 0
    assert ws.get_meta("done:index")["summary"]["k"] == 4 and ws.get_meta("adapter")["name"] == "bands"


def test_export_round_trips_an_adapter_index(toy_ws, tmp_path):
    from audiovis.export import export_index, read_export
    export_index(toy_ws[0], tmp_path / "out")
    ex = read_export(tmp_path / "out")
    assert ex.layers == {"bands.energy": 2, "bands.summary": 2}


def test_torchscript_file_is_recorded_like_the_module(toy_module, tmp_path):
    import toy_bands
    m = toy_bands.Scriptable().eval()
    path = tmp_path / "bands.pt"
    torch.jit.save(torch.jit.script(m), str(path))
    ad = load_adapter(str(path), sr=8000)
    x = torch.randn(3, 24000)
    got = ad.outputs(x)
    assert set(got) == {"energy", "summary"} and ad.sr == 8000
    with torch.no_grad():
        ref = m(x)
    assert torch.allclose(got["energy"], ref["energy"], atol=1e-5)
    assert ad.layer_sizes(24000) == {"energy": 2, "summary": 2}
    assert load_adapter(ad.spec()).path == ad.path
    # the same as an exported program (.pt2), TorchScript's successor
    steps = torch.export.Dim("steps", min=10, max=25000)           # whole 50 ms steps of the pooling
    prog = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1), 1: 400 * steps},))
    torch.export.save(prog, str(tmp_path / "bands.pt2"))
    ad2 = load_adapter(str(tmp_path / "bands.pt2"), sr=8000)
    y = torch.randn(2, 30000)
    assert torch.allclose(ad2.outputs(y)["summary"], m(y)["summary"], atol=1e-5)


def test_bad_models_say_what_to_do(toy_module, tmp_path):
    with pytest.raises(ParameterError, match="cannot import 'no_such_module_xyz'"):
        load_adapter("no_such_module_xyz:make")
    with pytest.raises(ParameterError, match="has no 'nope'"):
        load_adapter("toy_bands:nope")
    with pytest.raises(ParameterError, match="returned a torch module, not an adapter: return .*TorchAdapter"):
        load_adapter("toy_bands:bare_module")
    bad = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(ParameterError, match="is not a TorchScript file"):
        load_adapter(str(bad))
    (tmp_path / "bad.pt2").write_bytes(b"not a program")
    with pytest.raises(ParameterError, match=r"is not an exported program \(torch.export.save\)"):
        load_adapter(str(tmp_path / "bad.pt2"))
    with pytest.raises(ParameterError, match="does not exist"):
        load_adapter(str(tmp_path / "missing.pt"))
    with pytest.raises(ParameterError, match="CREPE capacity 'huge'"):
        load_adapter("crepe:huge")
    with pytest.raises(ParameterError, match="is not 'crepe'.*import path"):
        load_adapter("resnet")
    with pytest.raises(ParameterError, match="no layer named 'bands.nope'"):
        TorchAdapter(toy_bands_module(), layers=["bands.nope"])


def toy_bands_module():
    import toy_bands
    return toy_bands.Wrapped()


def test_run_without_plays_or_model_is_refused(corpus, tmp_path, capsys):
    from audiovis.cli import main
    assert main(["run", "-w", str(tmp_path / "ws"), "--audio", str(corpus["audio_dir"])]) == 2
    assert "--plays) is needed to train the content CNN; without one, give --model" in capsys.readouterr().err


def test_page_of_an_index_only_workspace_hides_what_needs_plays(toy_ws, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from test_app import APP
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(toy_ws[0]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(view="unit", unit="bands.energy:1", n="3")
    at.run()
    assert not at.exception and not at.error
    assert "Unit bands.energy:1" in [t.value for t in at.title]
    assert len(at.get("audio")) == 3 + 1                           # 3 clips and the play-all track
    views = at.sidebar.radio(key="view").options
    assert "Cold start" not in views and "Visualise" in views
    at.sidebar.radio(key="view").set_value("visualise").run()
    assert not at.exception and not at.error
    assert any("model of your own" in c.value for c in at.caption)


# ----------------------------------------------------------------------------- CREPE
def tone(midi: float, seconds: float, sr: int) -> np.ndarray:
    """A harmonic tone (a few partials, like an instrument) at a MIDI pitch."""
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(0.3 / k * np.sin(2 * np.pi * k * f * t) for k in (1, 2, 3)).astype(np.float32)


def test_crepe_matches_torchcrepe_forward():
    ad = CrepeAdapter("tiny")
    x = torch.randn(2, 16000)
    got = ad.outputs(x)
    assert set(got) == {"conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "pitch"}
    assert got["pitch"].shape == (2, 360, 21) and got["conv1"].shape == (2, 128, 21)   # a frame every 50 ms
    with torch.no_grad():                              # torchcrepe's own (k, 1) 2-d forward pass
        ref = ad.model(ad.frames(x).reshape(-1, 1024)).reshape(2, -1, 360).transpose(1, 2)
    assert torch.allclose(got["pitch"], ref, atol=1e-5)
    assert crepe_bin_frequency(0) == pytest.approx(31.7, abs=0.05)
    a4 = int(round((1200 * np.log2(440 / 10) - 1997.3794) / 20))
    assert ad.unit_note("pitch", a4).endswith("(A4)")


@pytest.mark.slow
def test_crepe_pitch_units_hear_their_pitch(tmp_path):
    """The truth check of issue 21: CREPE's pitch-bin units' top clips hold that pitch (known here: each song is
    two harmonic tones of known MIDI pitch)."""
    from audiovis.config import FeatureConfig, IndexConfig
    from audiovis.index import UnitIndex
    from audiovis.pipeline import run_pipeline
    sr = 22050
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    pitch_of = {}
    for i in range(8):
        a, b = rng.choice(np.arange(45, 82), 2, replace=False)
        sf.write(audio / f"t{i}.wav", np.concatenate([tone(a, 3.0, sr), tone(b, 3.0, sr)]), sr)
        pitch_of[f"t{i}"] = (a, b)                                  # 0-3 s, 3-6 s
    run_pipeline(tmp_path / "ws", audio, None, model="crepe:tiny", n_jobs=1, progress=False,
                 feature=FeatureConfig(), index=IndexConfig(k=3, batch_windows=8))
    ix = UnitIndex(tmp_path / "ws")
    assert ix.layers["pitch"] == 360 and ix.layers["conv1"] == 128
    hits = total = 0
    for b in range(360):
        top = [t for t in ix.top(f"pitch:{b}", n=3) if t["activation"] >= 0.5]
        if not top:
            continue
        f_bin = crepe_bin_frequency(b)
        errs = []
        for t in top:
            a, c = pitch_of[t["song_id"]]
            midi = a if t["peak_s"] < 3.0 else c
            errs.append(abs(12 * np.log2(440.0 * 2 ** ((midi - 69) / 12) / f_bin)))
        total += 1
        hits += np.median(errs) <= 1.0
    assert total >= 10                    # 16 tones: bins around each fire
    assert hits / total >= 0.8, (hits, total)


def test_cold_start_on_an_index_only_workspace_says_why_not(toy_ws, corpus, capsys):
    from audiovis.cli import main
    song = next(iter(sorted(corpus["audio_dir"].iterdir())))
    assert main(["recommend", "-w", str(toy_ws[0]), str(song)]) == 2
    err = capsys.readouterr().err
    assert "indexes a model of your own (bands): cold-start queries (embed, recommend, add) need the CNN" in err


def test_a_killed_adapter_index_resumes_and_equals_uninterrupted(toy_ws, tiny_configs, tmp_path):
    from audiovis.index import build_index
    ws_dir = tmp_path / "ws"
    shutil.copytree(toy_ws[0], ws_dir)
    ad = load_adapter("toy_bands:make")
    calls = {"n": 0}
    record = ad.record

    def dies_on_the_third_batch(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return record(x)
    ad.record = dies_on_the_third_batch
    with pytest.raises(KeyboardInterrupt):
        build_index(ws_dir, tiny_configs["index"], force=True, progress=False, model=ad)
    assert (ws_dir / "index" / "state.partial.npz").exists()
    build_index(ws_dir, tiny_configs["index"], progress=False, model=ad)
    assert calls["n"] < 3 + 60 // 16 + 1                        # resumed, not redone from the first song
    a = np.load(ws_dir / "index" / "units.npz")
    b = np.load(toy_ws[0] / "index" / "units.npz")
    for key in ("top_w", "bot_w", "hist"):
        assert np.array_equal(a[key], b[key]), key
    assert np.allclose(a["top_v"], b["top_v"], atol=1e-5)


def test_the_pipeline_without_a_model_indexes_its_cnn_again(built_ws, corpus, tiny_configs, toy_module, tmp_path):
    from audiovis.index import UnitIndex, build_index
    from audiovis.pipeline import run_pipeline
    ws_dir = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws_dir)
    build_index(ws_dir, tiny_configs["index"], progress=False, model="toy_bands:make")
    assert list(UnitIndex(ws_dir).layers) == ["bands.energy", "bands.summary"]
    run_pipeline(ws_dir, corpus["audio_dir"], corpus["plays"], corpus["manifest"], corpus["labels"], n_jobs=1,
                 progress=False, stages=("index",), index=tiny_configs["index"])
    assert list(UnitIndex(ws_dir).layers) == list(UnitIndex(built_ws[0]).layers)      # conv1 ... output


def test_curves_of_a_model_that_takes_one_window_length_only():
    """A model that refuses other lengths: the unit's curve falls back to windows, each reduced as the index does."""
    from audiovis.adapters import adapter_curves

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = torch.nn.AvgPool1d(400, 400)

        def forward(self, x):
            if x.shape[1] != 24000:
                raise ValueError("3 s at 8 kHz only")
            return self.pool((x ** 2)[:, None, :])

    class Source:                                     # what adapter_curves reads of a WindowSource
        class store:
            class cfg:
                window_s = 3.0

        def span(self, song_idx, start_s, end_s):
            t = np.arange(int((end_s - start_s) * 8000)) / 8000 + start_s
            return (np.sin(2 * np.pi * 440 * t) * (t > 3.2)).astype(np.float32)      # sound from 3.2 s on

    (t, v), = adapter_curves(TorchAdapter(Fixed(), ["pool"], sr=8000), Source(), "pool", [0], [(0, 1.0, 4.0)])
    assert v.shape == (1, len(t)) and t[0] == 1.0 and t[-1] == 4.0
    assert v[0, 0] == 0 and v[0, -1] > 0.4                  # windows centred at 4 s hold the tone's full power
