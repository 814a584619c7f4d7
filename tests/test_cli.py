"""The command line's process handling: `audiovis serve` stopped with SIGTERM leaves nothing running."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (Linux /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (Linux /proc/net/tcp and tcp6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for r in rows:
            local, state = r.split()[1], r.split()[3]
            addr, p = local.rsplit(":", 1)
            if int(p, 16) == port and state == "0A":           # LISTEN
                if len(addr) == 8:
                    out.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    b = bytes.fromhex(addr)
                    out.add(socket.inet_ntop(socket.AF_INET6, b"".join(b[i:i + 4][::-1] for i in range(0, 16, 4))))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
@pytest.mark.slow
def test_serve_sigterm_leaves_no_server(tmp_path):
    port = _free_port()
    marker = f"AUDIOVIS_TEST_MARKER={tmp_path.name}"
    env = dict(os.environ, AUDIOVIS_TEST_MARKER=tmp_path.name, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "audiovis.cli", "serve", "-w", str(tmp_path / "ws"),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            assert proc.poll() is None, "serve exited before the page answered"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() - t0 < 90, "the page did not answer within 90 s"
            time.sleep(0.3)
        assert _pids_with_env(marker) == [proc.pid], "serve must be the server itself, not its parent"
        assert _listen_addresses(port) == {"127.0.0.1"}, "serve must bind localhost unless told --host"
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        time.sleep(0.5)
        assert _pids_with_env(marker) == [], "a process of the server outlived SIGTERM"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after SIGTERM"
    finally:
        for pid in _pids_with_env(marker):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- options generated from the configs
def _parse(*argv):
    from audiovis.cli import build_parser
    return build_parser().parse_args(list(argv))


def _help(capsys, *argv) -> str:
    from audiovis.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return capsys.readouterr().out


def test_a_stage_refuses_the_options_of_other_stages(capsys):
    from audiovis.cli import main
    with pytest.raises(SystemExit) as e:
        main(["featurize", "--alpha", "5"])                  # a factorize option: was silently ignored
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "audiovis featurize: error: unrecognized arguments: --alpha 5" in err
    for argv in (["train", "-k", "3"], ["index", "--epochs", "2"], ["evaluate", "--window-s", "2"],
                 ["factorize", "--jobs", "2"], ["run", "--audio", "a", "--plays", "p", "--force"]):
        with pytest.raises(SystemExit):
            _parse(*argv)


def test_train_help_lists_its_options_only(capsys):
    out = _help(capsys, "train")
    for opt in ("--epochs", "--preset", "--seed", "--device", "--lr", "--batch-size", "--force"):
        assert opt in out
    for opt in ("--alpha", "--factors", "--window-s", "-k ", "--jobs", "--engine"):
        assert opt not in out
    assert "training epochs (default: 60)" in " ".join(out.split())


def test_each_stage_offers_the_fields_of_its_configs():
    import argparse
    from dataclasses import fields

    from audiovis.cli import CONFIGS, STAGES, _flag, build_parser
    sub = build_parser().subcommands

    def config_flags(p) -> set:
        return {s for a in p._actions for s in a.option_strings} - {"-h", "--help", "-w", "--workspace", "--debug",
                                                                     "--wait"}

    def no_flags(names) -> set:                  # a switch that is on by default also has its --no- form
        return {"--no-" + _flag(f)[2:] for n in names for f in fields(CONFIGS[n]) if f.default is True}

    for stage, (_, names) in STAGES.items():
        want = {_flag(f) for n in names for f in fields(CONFIGS[n])} | {"--force"} | no_flags(names)
        want |= {"--jobs", "--engine", "--ray-address"} if stage == "featurize" else set()
        want |= {"--engine", "--ray-address", "--model", "--model-sr", "--model-input"} if stage == "index" else set()
        assert config_flags(sub[stage]) == want, stage
    every = {_flag(f) for c in CONFIGS.values() for f in fields(c)}
    assert every <= config_flags(sub["run"]) and every <= config_flags(sub["demo"])
    # the spellings that docs and scripts use
    assert {"--factors", "--alpha", "--regularization", "--normalize", "--test-fraction", "--window-s", "--preset",
            "--epochs", "--device", "--seed", "-k", "--jobs"} <= config_flags(sub["run"])
    assert all(a.default is argparse.SUPPRESS for a in sub["train"]._actions if a.dest in ("epochs", "seed"))


def test_every_subcommand_has_debug_and_every_writer_wait():
    from audiovis.cli import READERS, build_parser
    sub = build_parser().subcommands
    opts = {name: {s for a in p._actions for s in a.option_strings} for name, p in sub.items()}
    assert all("--debug" in o for o in opts.values())
    assert {n for n, o in opts.items() if "--wait" not in o} == set(READERS)
    a = build_parser().parse_args(["report", "-w", "x", "--debug"])
    assert a.debug is True and not hasattr(build_parser().parse_args(["report", "-w", "x"]), "debug")


def test_parser_defaults_are_the_dataclass_defaults():
    from audiovis.cli import CONFIGS, STAGES, _configs
    for stage, (_, names) in STAGES.items():
        assert _configs(_parse(stage), names) == {n: CONFIGS[n]() for n in names}
    assert _configs(_parse("run", "--audio", "a", "--plays", "p")) == {n: c() for n, c in CONFIGS.items()}
    assert _configs(_parse("demo")) == {n: c() for n, c in CONFIGS.items()}


def test_options_set_their_fields_and_seed_sets_both():
    from audiovis.cli import _configs
    from audiovis.config import FactorConfig, FeatureConfig, IndexConfig, TrainConfig
    a = _parse("run", "--audio", "a", "--plays", "p", "--seed", "3", "--epochs", "2", "-k", "7", "--window-s",
               "2.5", "--normalize", "--alpha", "5", "--fmax", "8000", "--preset", "paper", "--jobs", "2")
    assert _configs(a) == {"feature": FeatureConfig(window_s=2.5, fmax=8000.0),
                           "factors": FactorConfig(random_state=3, normalize=True, alpha=5.0),
                           "training": TrainConfig(seed=3, epochs=2, preset="paper"), "index": IndexConfig(k=7)}
    assert a.jobs == 2
    assert _configs(_parse("factorize", "--seed", "4"), ("factors",))["factors"].random_state == 4
    with pytest.raises(SystemExit):
        _parse("train", "--preset", "huge")


def test_the_parser_follows_a_changed_dataclass_default(monkeypatch, capsys):
    from dataclasses import dataclass

    from audiovis import cli
    from audiovis.config import TrainConfig, setting

    @dataclass
    class Longer(TrainConfig):
        epochs: int = setting(7, "training epochs")

    monkeypatch.setitem(cli.CONFIGS, "training", Longer)
    assert cli._configs(_parse("train"), ("training",))["training"].epochs == 7
    assert "training epochs (default: 7)" in " ".join(_help(capsys, "train").split())


def test_preset_choices_are_the_models_presets():
    from dataclasses import fields

    from audiovis.config import TrainConfig
    from audiovis.model import PRESETS
    (preset,) = [f for f in fields(TrainConfig) if f.name == "preset"]
    assert preset.metadata["choices"] == ("auto", *PRESETS) and preset.default == "musicnn"


def test_building_the_parser_imports_no_torch():
    code = "import sys, audiovis.cli as c; c.build_parser(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- serve from the package
def test_serve_runs_the_page_inside_the_installed_package(monkeypatch, tmp_path, capsys):
    from pathlib import Path

    import audiovis
    from audiovis import cli
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    assert cli.serve([tmp_path / "ws"], port=8999, exec_=False) == 0
    (cmd, env), = calls
    page = Path(cmd[cmd.index("run") + 1])
    package = Path(audiovis.__file__).resolve().parent
    assert page == cli.page_path() and page.is_file() and page.is_relative_to(package)
    assert page == package / "ui" / "app.py"
    assert env["AUDIOVIS_WORKSPACE"] == str((tmp_path / "ws").resolve())
    assert env["AUDIOVIS_READ_ONLY"] == "1" and env["AUDIOVIS_ALLOW_ADD"] == "0"   # the page writes nothing
    # the repository's streamlit_app.py only calls the package's page
    thin = Path(__file__).resolve().parents[1] / "streamlit_app.py"
    assert "from audiovis.ui.app import main" in thin.read_text() and len(thin.read_text().splitlines()) < 15


def test_the_packaged_page_runs_as_streamlit_runs_it(monkeypatch, tmp_path):
    """`audiovis serve` runs audiovis/ui/app.py itself as the script (``__main__``), not the thin entry point."""
    from streamlit.testing.v1 import AppTest

    from audiovis.cli import page_path
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(tmp_path / "no_ws"))
    at = AppTest.from_file(str(page_path()), default_timeout=120).run()
    assert not at.exception
    assert "No workspace at" in at.info[0].value and "audiovis demo" in [c.value for c in at.code]
