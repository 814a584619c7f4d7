"""The local engine: this machine's cores. featurize runs :mod:`audiovis.features` in a process pool whose
spawned workers start without the parent's ``__main__``, are fed chunks once ready, and die with their parent;
index and embed are the single-process functions of :mod:`audiovis.index` and :mod:`audiovis.coldstart`.

A worker of a killed ``audiovis featurize`` (``kill -9``) used to wait for work forever on the pool's queue, and
kept multiprocessing's resource tracker (which waits for every holder of its pipe to exit) alive with it. Each
worker now asks Linux for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), or, where that is not available,
polls its parent process id once a second; the tracker then sees its pipe close and exits by itself.

This module imports no torch (its workers import it, to unpickle their tasks): index and embed import their
modules when called.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from contextlib import contextmanager

from .. import features

PR_SET_PDEATHSIG = 1          # <linux/prctl.h>
PARENT_POLL_S = 1.0
MAX_JOBS = 8                  # default processes: the number of cores, at most this


def featurize(workspace, cfg=None, n_jobs: int | None = None, force: bool = False, progress: bool = True) -> dict:
    """:func:`audiovis.features.featurize` with ``n_jobs`` songs decoded at once, by this process and
    ``n_jobs - 1`` spawned workers (default: the number of cores, at most 8), which end with this process however
    it ends, ``kill -9`` included. A pool that cannot start or breaks leaves the rest to this process."""
    n_jobs = n_jobs or min(os.cpu_count() or 1, MAX_JOBS)
    return features.featurize(workspace, cfg, force=force, progress=progress,
                              runner=lambda todo: run_pool(todo, n_jobs))


def build_index(workspace, cfg=None, **kwargs) -> dict:
    """The unit index (:func:`audiovis.index.build_index`)."""
    from ..index import build_index as build
    return build(workspace, cfg, **kwargs)


def embed(workspace, files, per_window: bool = False):
    """Embed files with the workspace's cached cold-start engine -> (embeddings, failed)."""
    from ..coldstart import get_engine
    return get_engine(workspace).embed(files, per_window=per_window)


# --------------------------------------------------------------------------- the pool
def run_pool(todo: list, n_jobs: int):
    """featurize's runner: ``todo`` in this process and ``n_jobs - 1`` workers (:func:`run_shared`), and in this
    process alone what they did not finish (a short list, ``n_jobs=1``, a pool that could not start or broke).
    Yields ``(idx, error or None)`` per song as it finishes."""
    finished: set[int] = set()
    if n_jobs > 1 and len(todo) > 4:
        for idx, err in run_shared(todo, n_jobs):
            finished.add(idx)
            yield idx, err
    for item in todo:
        if item[0] not in finished:
            yield features.featurize_one(item)


def run_shared(todo: list, n_jobs: int):
    """Featurize ``todo`` in this process and ``n_jobs - 1`` spawned worker processes, yielding ``(idx, err)``
    per song as it finishes: all of them, unless the pool broke (a worker killed or unable to start; a
    RuntimeWarning says so), and then the caller runs the rest in this process.

    This process starts on the first songs at once, while the workers start up (~0.35 s of imports each), and
    hands chunks to each worker only once it has answered a first call (at most two chunks in flight per
    worker): no core waits for a worker's start-up, a short list is done before the workers are ready, and
    one process fewer is spawned (and started up) than songs are decoded at once.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    chunks = _chunks(todo, n_jobs)
    inflight: dict = {}
    probes: set = set()
    ready = 0
    ex = None

    def collect(block: bool) -> list:
        """Results of the chunks the workers finished (waiting for one if ``block``); feeds ready workers."""
        nonlocal ready
        for fut in list(probes):
            if fut.done():
                probes.discard(fut)
                fut.result()                                # raises BrokenProcessPool if the worker died
                ready += 1
        if block and inflight:
            wait(inflight, return_when=FIRST_COMPLETED)
        out = []
        for fut in [f for f in inflight if f.done()]:
            del inflight[fut]
            out.extend(fut.result())
        while len(inflight) < 2 * ready:
            c = next(chunks, None)
            if c is None:
                break
            inflight[ex.submit(featurize_many, c)] = c
        return out

    try:
        with spawn_without_main():     # the processes start at the first submit
            ex = ProcessPoolExecutor(n_jobs - 1, mp_context=mp.get_context("spawn"),
                                     initializer=_pool_worker_init, initargs=(os.getpid(),))
            probes = {ex.submit(worker_ready) for _ in range(n_jobs - 1)}
        for c in chunks:                                    # this process's share
            for item in c:
                yield features.featurize_one(item)
                yield from collect(block=False)
        while inflight:                                     # what the workers still hold
            yield from collect(block=True)
    except (BrokenProcessPool, OSError) as e:
        import warnings
        warnings.warn(f"featurize: worker processes failed ({e}); continuing in this process", RuntimeWarning,
                      stacklevel=2)
    finally:
        if ex is not None:      # the workers exit in the background (or finish starting up, for a short list)
            ex.shutdown(wait=False, cancel_futures=True)


def _chunks(todo: list, n_jobs: int):
    """Guided self-scheduling: big chunks first (fewer round trips), single songs at the end (no one waits long
    for the last one). ``todo`` is sorted longest first."""
    i = 0
    while i < len(todo):
        size = max(1, min(8, (len(todo) - i) // (4 * n_jobs)))
        yield todo[i:i + size]
        i += size


@contextmanager
def spawn_without_main():
    """Start spawned workers without the parent's ``__main__``.

    multiprocessing's spawn makes each child re-run the parent's main script (or module) before it runs any
    task. The workers only run audiovis functions, so re-running it is at best ~1 s of imports and at worst
    fatal: a script without an ``if __name__ == "__main__"`` guard featurizes again in every worker, and a
    main file that only works inside its host (Streamlit's AppTest scripts, embedded interpreters) kills the
    workers at start. Hiding ``__main__.__spec__`` and ``__main__.__file__`` while the processes start makes
    spawn leave the child's ``__main__`` empty; both are restored afterwards.
    """
    main = sys.modules.get("__main__")
    missing = object()
    saved = {k: getattr(main, k, missing) for k in ("__spec__", "__file__")} if main is not None else {}
    try:
        if main is not None:
            main.__spec__ = None
            if saved["__file__"] is not missing:
                del main.__file__
        yield
    finally:
        for k, v in saved.items():
            if v is not missing:
                setattr(main, k, v)


# --------------------------------------------------------------------------- in the workers
def featurize_many(items: list) -> list:
    """A worker's task: a chunk of songs -> their ``(idx, error or None)``."""
    return [features.featurize_one(item) for item in items]


def worker_ready() -> int:
    return os.getpid()


def _pool_worker_init(parent: int) -> None:
    """Initializer of the pool's workers: die with ``parent`` (first, before the slower imports), then
    :func:`audiovis.features.worker_init`."""
    _die_with_parent(parent)
    features.worker_init()


def _die_with_parent(parent: int) -> bool:
    """Make this process end when process ``parent`` (the one that started it) ends, however it ends.

    On Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere (or if prctl fails) a daemon thread that polls
    :func:`os.getppid`. Either way a parent that died before this ran ends this process now. Returns whether the
    kernel signal is armed (False: the polling thread runs).
    """
    import signal
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover (no libc, no prctl)
            armed = False
    if os.getppid() != parent:          # the parent is already gone: the signal came too late to be armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="audiovis-parent-watch", daemon=True).start()
    return armed


def _watch_parent(parent: int) -> None:  # pragma: no cover (Linux arms PR_SET_PDEATHSIG instead)
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)
