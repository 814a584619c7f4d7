"""End to end: every stage on a tiny corpus, through the CLI, then a second run that reuses everything."""
import json
import time

import pytest

from audiovis.cli import main
from audiovis.index import UnitIndex
from audiovis.workspace import Workspace


@pytest.mark.slow
def test_cli_runs_every_stage_then_reuses(corpus, tmp_path, capsys):
    ws = tmp_path / "ws"
    args = ["run", "-w", str(ws), "--audio", str(corpus["audio_dir"]), "--plays", str(corpus["plays"]),
            "--manifest", str(corpus["manifest"]), "--labels", str(corpus["labels"]), "--factors", "8",
            "--epochs", "3", "--jobs", "2", "-k", "5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| content model (audiovis) |" in out
    w = Workspace(ws)
    for stage in ("ingest", "factorize", "featurize", "train", "evaluate", "index"):
        assert w.get_meta(f"done:{stage}") is not None, stage
    ix = UnitIndex(w)
    assert ix.n_units == sum(ix.layers.values()) and len(ix.top("timbral:0", n=5)) == 5   # the default: musicnn
    assert ix.top("tags:female vocalists", n=5) == ix.top("tags:5", n=5)
    assert w.get_meta("done:train")["summary"]["preset"] == "musicnn"
    mtimes = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file() and p.suffix in (".npy", ".npz", ".pt")}
    t0 = time.time()
    assert main(args) == 0
    assert time.time() - t0 < 30
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())
    res = json.loads((ws / "evaluation.json").read_text())
    assert res["models"]["cnn"]["users"] > 0


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "-w", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no workspace at" in err and "audiovis ingest" in err
    assert main(["run", "-w", str(tmp_path / "ws"), "--audio", str(tmp_path / "missing"), "--plays", "x"]) == 2
    assert "audio folder" in capsys.readouterr().err
