"""Command line: thin subcommands over the library."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

from .config import FactorConfig, FeatureConfig, IndexConfig, TrainConfig
from .lock import READERS  # the subcommands that only read a workspace: no writer lock and no --wait

DEFAULT_DEMO_WS = "workspaces/demo"
# the stage configs, under the names run_pipeline takes them by; the stages' options are generated from their fields
CONFIGS = {"feature": FeatureConfig, "factors": FactorConfig, "training": TrainConfig, "index": IndexConfig}
# subcommand -> (help, the configs it reads): it offers their options and no other stage's
STAGES = {"factorize": ("WMF of the play counts", ("factors",)),
          "featurize": ("log-mel features of every song", ("feature",)),
          "train": ("train the content CNN", ("training",)),
          "evaluate": ("cold-start evaluation", ()),
          "index": ("top clips and statistics of every unit", ("index",))}


def _ws_arg(p, default=None):
    p.add_argument("-w", "--workspace", default=default or os.environ.get("AUDIOVIS_WORKSPACE", DEFAULT_DEMO_WS),
                   help="workspace folder (default: %(default)s)")


def _inputs(p, plays_required=True):
    p.add_argument("--audio", required=True, help="folder of audio files (WAV, FLAC, OGG, Opus, MP3)")
    p.add_argument("--plays", required=plays_required,
                   help="listening log: MSD triplets, or CSV/TSV with user, song, plays"
                        + ("" if plays_required else " (optional with --model: an index-only workspace)"))
    p.add_argument("--manifest", help="CSV with song_id and file columns (default: file stems are song ids)")
    p.add_argument("--labels", help="CSV of ground-truth concepts per song (optional)")
    p.add_argument("--segments", help="CSV song_id,start_s,end_s,concept,value (optional)")
    p.add_argument("--allow-outside", action="store_true",
                   help="let the manifest, or symlinks in the audio folder, point outside the audio folder")


def _flag(f) -> str:
    """A config field's option: ``--kebab-case`` of its name (or of its ``flag`` metadata); one letter: ``-k``."""
    name = _dest(f)
    return f"-{name}" if len(name) == 1 else "--" + name.replace("_", "-")


def _dest(f) -> str:
    return f.metadata.get("flag", f.name)


def _field_kwargs(cls, f) -> dict:
    """``add_argument`` keywords of a config field: the type of its annotation (``X | None``: X), a switch for a
    bool, its ``choices``; no default (``argparse.SUPPRESS``: an option not given leaves the dataclass default)."""
    typ = typing.get_type_hints(cls)[f.name]
    args = [t for t in typing.get_args(typ) if t is not type(None)]
    typ = args[0] if args else typ
    if typ is bool:
        return {"action": argparse.BooleanOptionalAction if f.default else "store_true"}
    kw = {"type": typ, "metavar": _dest(f).upper()}
    if "choices" in f.metadata:
        kw.update(choices=f.metadata["choices"], metavar="{" + ",".join(map(str, f.metadata["choices"])) + "}")
    return kw


def _config_opts(p, names) -> None:
    """One option per field of the configs ``names`` (keys of :data:`CONFIGS`), help and default from the field
    (:func:`audiovis.config.setting`); fields that share a flag (``--seed``) are one option that sets them all."""
    seen: dict[str, argparse.Action] = {}
    for name in names:
        cls = CONFIGS[name]
        g = p.add_argument_group(f"{name} settings ({cls.__name__} in audiovis/config.py)")
        for f in fields(cls):
            hlp = f.metadata.get("help", f.name.replace("_", " ")).replace("%", "%%")
            if f.default is not None and not isinstance(f.default, bool):
                hlp += f" (default: {f.default})"
            flag = _flag(f)
            if flag in seen:
                seen[flag].help += f"; {hlp}"
                continue
            seen[flag] = g.add_argument(flag, dest=_dest(f), default=argparse.SUPPRESS, help=hlp,
                                        **_field_kwargs(cls, f))


def _configs(a, names=None) -> dict:
    """The configs ``names`` (default: all, as :func:`audiovis.pipeline.run_pipeline` takes them) from parsed
    options: each dataclass's defaults, with the fields whose options were given."""
    names = CONFIGS if names is None else names
    return {n: CONFIGS[n](**{f.name: getattr(a, _dest(f)) for f in fields(CONFIGS[n]) if hasattr(a, _dest(f))})
            for n in names}


def _jobs_opt(p):
    p.add_argument("--jobs", type=int, default=None,
                   help="featurize: songs decoded at once, in as many processes (default: the cores, at most 8)")


def _force_opt(p):
    p.add_argument("--force", action="store_true", help="redo the stage even if it is up to date")


def _engine_opts(p):
    g = p.add_argument_group("engine (docs/scale.md)")
    g.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this machine (default); ray: a Ray cluster (pip install 'audiovis[ray]')")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to use, e.g. 'auto' or ray://host:10001 (default: RAY_ADDRESS, else start a "
                        "local Ray for the run)")


def _model_opts(p):
    g = p.add_argument_group("a model of your own (docs/model.md, Your own model)")
    g.add_argument("--model", default=None,
                   help="index this model instead of training one: crepe, crepe:tiny, crepe:full, a TorchScript "
                        "file, or an import path package.module:factory returning an audiovis.adapters adapter "
                        "(index: 'cnn' goes back to the trained CNN)")
    g.add_argument("--model-sr", type=int, default=None, help="a TorchScript model's sample rate (default 16000)")
    g.add_argument("--model-input", default=None, choices=["waveform", "logmel"],
                   help="what a TorchScript model eats (default: waveform)")


def _model(a):
    """The adapter of ``--model`` (None without it)."""
    if getattr(a, "model", None) in (None, "cnn"):
        return a.model if a.cmd == "index" else None       # index --model cnn: back to the trained CNN
    from .adapters import load_adapter
    return load_adapter(a.model, sr=a.model_sr, input=a.model_input)


def _serve_opts(p):
    g = p.add_argument_group("page server")
    g.add_argument("--port", type=int, default=8501)
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for every interface)")
    g.add_argument("--allow-writes", "--allow-add", dest="allow_add", action="store_true",
                   help="let the page write into the workspace: add uploaded songs, run the dissection, cache "
                        "dreams (off by default: the page only reads)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="audiovis", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ingest", help="catalogue audio and a listening log into a workspace")
    _ws_arg(p), _inputs(p)
    p.add_argument("--max-duration", type=float, default=FeatureConfig.max_duration,
                   help="skip longer songs (seconds; default: %(default)s, FeatureConfig's max_duration)")
    _force_opt(p)
    for name, (hlp, configs) in STAGES.items():
        p = sub.add_parser(name, help=hlp)
        _ws_arg(p), _config_opts(p, configs), _force_opt(p)
        if name == "featurize":
            _jobs_opt(p)
        if name in ("featurize", "index"):
            _engine_opts(p)
        if name == "index":
            _model_opts(p)
    p = sub.add_parser("run", help="every stage, from audio and plays to the unit index")
    _ws_arg(p), _inputs(p, plays_required=False), _config_opts(p, CONFIGS), _jobs_opt(p), _model_opts(p)
    p.add_argument("--serve", action="store_true", help="then serve the listening page for the workspace")
    _serve_opts(p)
    p = sub.add_parser("demo", help="build the demo workspace from samples/ if missing, then serve the page")
    _ws_arg(p), _config_opts(p, CONFIGS), _jobs_opt(p)
    p.add_argument("--no-serve", action="store_true", help="build only")
    _serve_opts(p)
    p = sub.add_parser("serve", help="serve the listening page for one or more workspaces (only those)")
    p.add_argument("-w", "--workspace", action="append", default=None,
                   help="a workspace to serve; repeat for several (default: AUDIOVIS_WORKSPACE or "
                        f"{DEFAULT_DEMO_WS}). Visitors pick among these and can open nothing else")
    _serve_opts(p)
    sub.add_parser("check", help="check that torch, torchaudio and the other libraries load together")
    p = sub.add_parser("report", help="problems found in the inputs, per stage")
    _ws_arg(p)
    p = sub.add_parser("embed", help="predicted latent factors of new songs (cold start)")
    _ws_arg(p)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", help="write .json, .csv or .npy (default: JSON on stdout)")
    p.add_argument("--per-window", action="store_true", help="also every window's factors")
    _engine_opts(p)
    p = sub.add_parser("recommend", help="similar songs, likely listeners and active units of a new song")
    _ws_arg(p)
    p.add_argument("file", metavar="FILE")
    p.add_argument("-k", type=int, default=10, help="similar songs")
    p.add_argument("--users", type=int, default=10, help="likely listeners")
    p.add_argument("--units", type=int, default=10, help="most active units")
    p.add_argument("--json", action="store_true", help="JSON for programs instead of tables")
    p.add_argument("--ablate", action="append", default=[], metavar="UNIT",
                   help="counterfactual: silence UNIT (e.g. conv3:17) where it fires; repeatable (docs/coldstart.md)")
    p.add_argument("--clamp", action="append", default=[], metavar="UNIT=VALUE",
                   help="counterfactual: hold UNIT at VALUE (its activation units) everywhere, e.g. conv3:17=2.5; "
                        "repeatable")
    p.add_argument("--drivers", action="store_true", help="the units that drove the song towards each listener")
    p = sub.add_parser("add", help="add new songs to a workspace without retraining")
    _ws_arg(p)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--id", dest="ids", action="append", help="song id per file, in order (default: file stem)")
    p = sub.add_parser("export", help="write the unit index as versioned JSON Lines or Parquet files "
                                      "(docs/model.md, Export)")
    _ws_arg(p)
    p.add_argument("--out", required=True, help="folder to write (an earlier export there is replaced)")
    p.add_argument("--format", dest="fmt", default="jsonl", choices=["jsonl", "parquet"],
                   help="table format (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace --out even if it holds something else")
    p = sub.add_parser("dictionary", help="learn a sparse dictionary of a layer: features browsable like units "
                                          "(docs/visualise.md)")
    _ws_arg(p)
    p.add_argument("--layer", required=True, help="the layer, e.g. dense1 (its features: dense1.dict:17)")
    p.add_argument("--features", type=int, default=48, help="dictionary size (default: %(default)s)")
    p.add_argument("-k", type=int, default=6, help="active features per window (TopK; default: %(default)s)")
    p.add_argument("--epochs", type=int, default=150, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="retrain even if up to date")
    p = sub.add_parser("explain", help="a one-line explanation and a simulation score for every unit and "
                                       "dictionary feature (docs/visualise.md)")
    _ws_arg(p)
    p.add_argument("--no-descriptors", action="store_true", help="ground-truth concepts only (no librosa pass)")
    p.add_argument("--max-terms", type=int, default=3, help="terms per explanation (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="the split of the songs into fitting and scoring halves")
    p.add_argument("--force", action="store_true", help="recompute the cached descriptors")
    p = sub.add_parser("listeners", help="which listeners each unit recruits (ablation effects on x_u . y; "
                                         "docs/visualise.md)")
    _ws_arg(p)
    p.add_argument("--unit", help="then show this unit's top listeners, e.g. conv3:17")
    p.add_argument("-n", type=int, default=10, help="listeners to show with --unit (default: %(default)s)")
    p.add_argument("--top", type=int, default=20, help="top listeners stored per unit (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="recompute even if up to date")
    from .visualise.cli import add_parsers as _add_visualise_parsers  # filters, dream, auralise, backward, dissect
    _add_visualise_parsers(sub, _ws_arg)
    from .interpret.cli import add_parsers as _add_interpret_parsers  # attribute
    _add_interpret_parsers(sub, _ws_arg)
    ap.subcommands = sub.choices
    _boundary_opts(ap)
    return ap


def _boundary_opts(ap) -> None:
    """``--debug`` on every subcommand (and before it); ``--wait`` on those that write to a workspace."""
    for p in [ap, *ap.subcommands.values()]:
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the full traceback of a failure (it always goes to the log file)")
    for name, p in ap.subcommands.items():
        if name not in READERS:
            p.add_argument("--wait", action="store_true",
                           help="when another process is writing to the workspace, wait for it instead of "
                                "exiting")


def main(argv=None) -> int:
    """The command line; the one error boundary: a failure is one line on stderr (what broke, the file, the
    command that repairs it; exit 2 for the known ones, 1 otherwise) and its traceback goes to a log file
    (:func:`audiovis.failures.log_path`); ``--debug`` prints it too."""
    ap = build_parser()
    a, extra = ap.parse_known_args(argv)
    if extra:               # from the subcommand's parser: its usage lists the options it takes
        ap.subcommands[a.cmd].error(f"unrecognized arguments: {' '.join(extra)}")
    from . import failures
    try:
        with _writing(a):
            return _dispatch(a)
    except KeyboardInterrupt:
        print("audiovis: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:            # noqa: BLE001 (the boundary: every failure becomes one line and a log)
        ws = a.workspace[0] if isinstance(getattr(a, "workspace", None), list) else getattr(a, "workspace", None)
        return failures.report(e, ws, argv if argv is not None else sys.argv[1:], debug=getattr(a, "debug", False))




def _writing(a):
    """The workspace's writer lock for a subcommand that writes (:func:`audiovis.lock.writer_lock`)."""
    import contextlib
    if a.cmd in READERS or not isinstance(getattr(a, "workspace", None), str):
        return contextlib.nullcontext()
    if a.cmd not in ("ingest", "run", "demo") and not Path(a.workspace).expanduser().is_dir():
        return contextlib.nullcontext()              # no workspace: the command says so, creating nothing
    from .lock import writer_lock
    return writer_lock(a.workspace, wait=a.wait, command="audiovis " + " ".join(sys.argv[1:] or [a.cmd]))


def _print(obj):
    print(json.dumps(obj, indent=2, default=str))


def _dispatch(a) -> int:
    if a.cmd == "check":
        from .deps import check
        print("audiovis: dependencies load: " + ", ".join(check()))
        return 0
    if a.cmd == "serve":
        paths = a.workspace or [os.environ.get("AUDIOVIS_WORKSPACE", DEFAULT_DEMO_WS)]
        return serve(paths, a.port, host=a.host, allow_add=a.allow_add)
    from .workspace import Workspace
    ws = Workspace(a.workspace)
    if a.cmd == "ingest":
        from .catalog import ingest
        s = ingest(ws, a.audio, a.plays, manifest=a.manifest, labels=a.labels, segments=a.segments,
                   max_duration=a.max_duration, allow_outside=a.allow_outside, force=a.force)
        _print(s)
        _print_report(ws, "ingest")
    elif a.cmd in STAGES:
        c = _configs(a, STAGES[a.cmd][1])
        if a.cmd == "factorize":
            from .factors import factorize
            _print(factorize(ws, c["factors"], force=a.force))
        elif a.cmd == "featurize":
            from .engines import featurize
            _print(featurize(ws, c["feature"], engine=a.engine, ray_address=a.ray_address, n_jobs=a.jobs,
                             force=a.force))
            _print_report(ws, "featurize")
        elif a.cmd == "train":
            from .train import train
            _print(train(ws, c["training"], force=a.force))
        elif a.cmd == "evaluate":
            from .evaluate import evaluate
            evaluate(ws, force=a.force)
            print((ws.path / "evaluation.md").read_text())
        else:
            from .engines import build_index
            _print(build_index(ws, c["index"], engine=a.engine, ray_address=a.ray_address, force=a.force,
                               model=_model(a)))
            _print_report(ws, "index")
    elif a.cmd == "run":
        from .pipeline import run_pipeline
        out = run_pipeline(ws, a.audio, a.plays, a.manifest, a.labels, a.segments, n_jobs=a.jobs,
                           allow_outside=a.allow_outside, model=_model(a), **_configs(a))
        _finish(ws, out)
        if a.serve:
            return serve([ws.path], a.port, host=a.host, allow_add=a.allow_add)
    elif a.cmd == "demo":
        from .pipeline import demo_inputs, run_pipeline, samples_dir
        if not (samples_dir() / "plays.tsv").exists():
            print(f"audiovis: error: the demo world is missing at '{samples_dir()}'", file=sys.stderr)
            return 2
        out = run_pipeline(ws, n_jobs=a.jobs, **demo_inputs(), **_configs(a))
        _finish(ws, out)
        if not a.no_serve:
            return serve([ws.path], a.port, host=a.host, allow_add=a.allow_add)
    elif a.cmd == "report":
        ws.require("ingest")
        _print_report(ws, None, limit=None)
    elif a.cmd in ("filters", "dream", "auralise", "backward", "dissect"):
        from .visualise.cli import run as _run_visualise
        return _run_visualise(ws, a)
    elif a.cmd == "attribute":
        from .interpret.cli import run as _run_interpret
        return _run_interpret(ws, a)
    elif a.cmd == "export":
        from .export import export_index
        _print(export_index(ws, a.out, fmt=a.fmt, force=a.force))
    elif a.cmd == "dictionary":
        import torch

        from .dictionary import DictionaryConfig, dictionary_summary, train_dictionary
        # small matrices: one thread (two were many times slower on a busy 2-core machine)
        torch.set_num_threads(int(os.environ.get("AUDIOVIS_TORCH_THREADS", "1")))
        rep = train_dictionary(ws, a.layer, DictionaryConfig(features=a.features, k=a.k, epochs=a.epochs,
                                                             seed=a.seed), force=a.force)
        print(dictionary_summary(rep))
        print(f"features are browsable as layer {rep['name']}; `audiovis dissect -w {ws.path}` labels them, "
              f"`audiovis explain -w {ws.path}` explains them")
    elif a.cmd == "explain":
        from .explain import explain, explanation_summary
        print(explanation_summary(explain(ws, descriptors=not a.no_descriptors, max_terms=a.max_terms,
                                          seed=a.seed, force_descriptors=a.force)))
        print(f"wrote {ws.index_dir / 'explanations.json'}")
    elif a.cmd == "listeners":
        from .listeners import build_listeners, format_unit_listeners, unit_listeners
        _print(build_listeners(ws, n_top=a.top, force=a.force))
        if a.unit:
            print(format_unit_listeners(unit_listeners(ws, a.unit, a.n)))
    elif a.cmd in ("embed", "recommend", "add"):
        return _coldstart(ws, a)
    return 0


def _coldstart(ws, a) -> int:
    from . import coldstart as cs
    from . import results
    from .append import add_songs
    if a.cmd == "embed" and a.engine != "local":
        from .engines import embed
        embs, failed = embed(ws, a.files, engine=a.engine, ray_address=a.ray_address)
    else:
        eng = cs.get_engine(ws)
    if a.cmd == "embed":
        if a.engine == "local":
            embs, failed = eng.embed(a.files)
        text = results.write_embeddings(embs, a.out, per_window=a.per_window)
        if text is not None:
            print(text)
        elif embs:
            print(f"wrote {len(embs)} embedding(s) to {a.out}", file=sys.stderr)
    elif a.cmd == "recommend":
        rec = results.recommendation_json(eng.recommend(a.file, k=a.k, n_users=a.users, n_units=a.units,
                                                        ablate=a.ablate, clamp=a.clamp, drivers=a.drivers))
        for note in rec["song"].get("warnings", []):
            print(f"audiovis: warning: {note}", file=sys.stderr)
        print(json.dumps(rec, indent=2) if a.json else results.format_recommendation(rec))
        failed = []
    else:
        out = add_songs(ws, a.files, song_ids=a.ids)
        _print(out["added"])
        failed = out["failed"]
    for f in failed:
        print(f"audiovis: error: {f['reason']}", file=sys.stderr)
    return 1 if failed else 0


def _finish(ws, out):
    print("stage times (s): " + ", ".join(f"{k} {v}" for k, v in out["seconds"].items()))
    if (ws.path / "evaluation.md").exists():
        print((ws.path / "evaluation.md").read_text())
    _print_report(ws, None)


def _print_report(ws, stage, limit=20):
    rows = ws.report(stage)
    if not rows:
        return
    print(f"{len(rows)} problem(s) found (skipped, fixed or kept in part; nothing else was lost):")
    for st, item, reason in rows[:limit]:
        print(f"  [{st}] {item}: {reason}")
    if limit and len(rows) > limit:
        print(f"  ... and {len(rows) - limit} more: `audiovis report -w {ws.path}`")


def page_path() -> Path:
    """The listening page's script, in the installed package (a wheel has no ``streamlit_app.py``)."""
    import importlib.util
    return Path(importlib.util.find_spec("audiovis.ui.app").origin).resolve()     # found, not imported


def serve(workspaces, port: int = 8501, host: str = "127.0.0.1", allow_add: bool = False,
          exec_: bool = True) -> int:
    """Serve the page for ``workspaces`` (paths; the page opens nothing else) on ``host:port``.

    By default this process *becomes* Streamlit (``os.execve``): no child is left behind when the server is
    stopped with SIGTERM or SIGHUP (a ``subprocess`` child outlived its parent); ``exec_=False`` runs it as a child
    and returns its exit status. Tracebacks go to this process's log only (``client.showErrorDetails none``); no
    file watcher (a served page does not reload its code, and the polling watcher cost CPU every 0.2 s).
    """
    from .ui.common import ALLOW_ADD_ENV, WORKSPACES_ENV, upload_mb
    from .workspace import READ_ONLY_ENV
    if isinstance(workspaces, (str, os.PathLike)):
        workspaces = [workspaces]
    paths = [str(Path(w).expanduser().resolve()) for w in workspaces]
    for p in paths:
        if os.pathsep in p:
            print(f"audiovis: error: workspace path '{p}' contains '{os.pathsep}'; rename or link it",
                  file=sys.stderr)
            return 2
    app = page_path()
    env = dict(os.environ, AUDIOVIS_WORKSPACE=paths[0], **{WORKSPACES_ENV: os.pathsep.join(paths),
                                                            ALLOW_ADD_ENV: "1" if allow_add else "0",
                                                            READ_ONLY_ENV: "0" if allow_add else "1"})
    shown = "localhost" if host in ("127.0.0.1", "localhost", "::1") else host
    print(f"serving the listening page for {', '.join(paths)} on http://{shown}:{port} (listening on {host}"
          f"{'; the page may write into the workspaces' if allow_add else ''})")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.showErrorDetails", "none", "--server.fileWatcherType", "none", "--server.runOnSave", "false",
           "--client.toolbarMode", "minimal", "--server.maxUploadSize", str(upload_mb())]
    if exec_ and hasattr(os, "execve"):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
