"""audiovis.deps: a torch/torchaudio pair that does not load fails at once, with a message that says what to do."""
import importlib

import pytest

from audiovis import deps
from audiovis.errors import AudiovisError, DependencyError


def test_check_loads_the_installed_set():
    lines = deps.check()
    assert any(line.startswith("torch ") for line in lines) and any(line.startswith("torchaudio ") for line in lines)


def _broken_torchaudio(monkeypatch):
    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "torchaudio":
            raise OSError("/venv/torchaudio/lib/libtorchaudio.so: undefined symbol: "
                          "torch_exception_get_what_without_backtrace")
        return real(name, *a, **k)
    monkeypatch.setattr(importlib, "import_module", fake)


def test_broken_pair_names_both_versions_and_the_repair(monkeypatch):
    _broken_torchaudio(monkeypatch)
    with pytest.raises(DependencyError) as e:
        deps.torchaudio()
    msg = str(e.value)
    assert f"torchaudio {deps.version('torchaudio')} cannot be loaded with torch {deps.version('torch')}" in msg
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in msg
    assert "requirements/run.txt" in msg and "torchaudio==2.11.0" in msg
    assert isinstance(e.value, AudiovisError) and isinstance(e.value, ImportError)


def test_a_dream_fails_fast_with_the_same_message(monkeypatch):
    import numpy as np

    from audiovis.visualise import render
    _broken_torchaudio(monkeypatch)
    with pytest.raises(DependencyError, match="cannot be loaded with torch"):
        render.mel_to_audio(np.zeros((16, 8), np.float32))


def test_cli_check_exit_status(monkeypatch, capsys):
    from audiovis.cli import main
    assert main(["check"]) == 0
    assert "dependencies load: torch" in capsys.readouterr().out
    _broken_torchaudio(monkeypatch)
    assert main(["check"]) == 2
    assert "cannot be loaded with torch" in capsys.readouterr().err
