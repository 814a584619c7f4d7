"""All stages in order; each is idempotent, so a second run reuses what was built."""
from __future__ import annotations

import os
import time
from pathlib import Path

from .catalog import ingest
from .config import FactorConfig, FeatureConfig
from .engines import featurize
from .errors import ParameterError
from .evaluate import evaluate
from .factors import factorize
from .index import IndexConfig, build_index
from .labels import build_labels
from .lock import writer_lock
from .train import TrainConfig, train
from .workspace import Workspace

STAGES = ("ingest", "factorize", "featurize", "train", "evaluate", "index", "label")
ADAPTER_STAGES = ("ingest", "featurize", "index")          # a model of your own: nothing to train


def samples_dir() -> Path:
    """The embedded demo world (``samples/`` next to the package in a source checkout)."""
    env = os.environ.get("AUDIOVIS_SAMPLES")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "samples"


def demo_inputs(samples: Path | None = None) -> dict:
    s = samples or samples_dir()
    return {"audio_dir": s, "plays": s / "plays.tsv", "manifest": s / "songs.csv", "labels": s / "songs.csv",
            "segments": s / "segments.csv"}


def run_pipeline(workspace, audio_dir, plays, manifest=None, labels=None, segments=None,
                 feature: FeatureConfig | None = None, factors: FactorConfig | None = None,
                 training: TrainConfig | None = None, index: IndexConfig | None = None,
                 n_jobs: int | None = None, allow_outside: bool = False, progress: bool = True,
                 stages=None, model=None) -> dict:
    """Every stage in order, reusing the finished ones.

    ``model`` (:func:`audiovis.adapters.load_adapter`: ``"crepe:tiny"``, ``"package.module:factory"``, a
    TorchScript file) indexes a model of your own instead of training one: the stages are then ingest, featurize
    and index (:data:`ADAPTER_STAGES`), and ``plays`` may be None (an index-only workspace).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if plays is None and model is None:
        raise ParameterError("a listening log (--plays) is needed to train the content CNN; without one, give "
                             "--model to index a model of your own (e.g. --model crepe)")
    stages = stages or (ADAPTER_STAGES if model is not None else STAGES)
    with writer_lock(ws.path, command=f"run_pipeline({', '.join(stages)})"):    # one writer at a time
        return _run_stages(ws, stages, audio_dir, plays, manifest, labels, segments, feature, factors, training,
                           index, n_jobs, allow_outside, progress, model)


def _run_stages(ws, stages, audio_dir, plays, manifest, labels, segments, feature, factors, training, index,
                n_jobs, allow_outside, progress, model) -> dict:
    out, times = {}, {}
    for stage in stages:
        t0 = time.time()
        if stage == "ingest":
            out[stage] = ingest(ws, audio_dir, plays, manifest=manifest, labels=labels, segments=segments,
                                allow_outside=allow_outside, progress=progress)
        elif stage == "factorize":
            out[stage] = factorize(ws, factors, progress=progress)
        elif stage == "featurize":
            out[stage] = featurize(ws, feature, n_jobs=n_jobs, progress=progress)
        elif stage == "train":
            out[stage] = train(ws, training, progress=progress)
        elif stage == "evaluate":
            out[stage] = evaluate(ws, progress=progress)
        elif stage == "index":
            # no --model: the CNN this pipeline trained, even where an earlier run indexed a model of your own
            out[stage] = build_index(ws, index, progress=progress, model=model if model is not None else "cnn")
        elif stage == "label":                          # seconds: dissection + explanations on the ground truth
            out[stage] = build_labels(ws, progress=progress)
        times[stage] = round(time.time() - t0, 2)
        if progress:
            print(f"[{stage}] done in {times[stage]:.1f} s")
    out["seconds"] = times
    return out
