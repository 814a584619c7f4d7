"""Checks that the installed dependencies work together, with a message that says how to repair them.

torch and torchaudio ship compiled libraries that load only in matching pairs (torchaudio 2.11.1 does not load with
torch 2.11.0: ``undefined symbol: torch_exception_get_what_without_backtrace``). audiovis imports torchaudio through
:func:`torchaudio`, so a broken pair fails at once with :class:`~audiovis.errors.DependencyError` instead of a
traceback deep inside a dream; ``audiovis check`` (run by ``scripts/install.sh``) tries it at install time.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md

from .errors import DependencyError

REPAIR = ("reinstall the pair CI tested: `bash scripts/install.sh run.txt` in a source checkout, or "
          "`pip install -r requirements/run.txt`; by hand, `pip install 'torch==2.11.0' 'torchaudio==2.11.0'`")


def version(dist: str) -> str:
    """Installed version of distribution ``dist``, or ``"not installed"``."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def torchaudio():
    """Import and return :mod:`torchaudio`.

    Raises
    ------
    DependencyError
        torchaudio is missing or its compiled library does not load with the installed torch; the message names
        both versions, quotes the loader's error and says how to reinstall a working pair.
    """
    try:
        return importlib.import_module("torchaudio")
    except Exception as e:  # OSError (undefined symbol), ImportError, RuntimeError: all mean a broken install
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DependencyError(
            f"torchaudio {version('torchaudio')} cannot be loaded with torch {version('torch')} ({first}); "
            f"dreams, auralisation and the backward query need it: {REPAIR}") from e


def check() -> list[str]:
    """Load every compiled dependency audiovis uses, run torchaudio's Griffin-Lim once and read the musicnn
    wheel's checkpoints (checked against the wheel's sha256 record).

    Returns
    -------
    lines : list of str
        One ``"name version"`` line per dependency, for the installer's log.

    Raises
    ------
    DependencyError
        On the first dependency that does not load (a missing or damaged musicnn wheel: what to install).
    """
    import torch  # first: torchaudio's library links against it
    ta = torchaudio()
    try:
        ta.transforms.GriffinLim(n_fft=64, n_iter=1)(torch.ones(33, 4))    # what audiovis uses torchaudio for
    except Exception as e:
        raise DependencyError(f"torchaudio {version('torchaudio')} loads but its Griffin-Lim fails with torch "
                              f"{version('torch')} ({e}): {REPAIR}") from e
    for mod, dist in (("soundfile", "soundfile"), ("librosa", "librosa"), ("implicit", "implicit"),
                      ("streamlit", "streamlit")):
        try:
            importlib.import_module(mod)
        except Exception as e:
            raise DependencyError(f"{dist} {version(dist)} cannot be imported ({e}): {REPAIR}") from e
    from .models.musicnn import CHECKPOINTS, pretrained_state
    for dataset in CHECKPOINTS:                  # the pretrained taggers' weights: present, intact, readable
        pretrained_state(dataset)
    return [f"{d} {version(d)}" for d in ("torch", "torchaudio", "librosa", "soundfile", "implicit", "streamlit",
                                          "musicnn")]
