"""featurize's process pool: spawned workers that start without the parent's ``__main__``, are fed chunks
once ready, and die with their parent.

A worker of a killed ``audiovis featurize`` (``kill -9``) used to wait for work forever on the pool's queue, and
kept multiprocessing's resource tracker (which waits for every holder of its pipe to exit) alive with it. Each
worker now asks Linux for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), or, where that is not available,
polls its parent process id once a second; the tracker then sees its pipe close and exits by itself.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1          # <linux/prctl.h>
PARENT_POLL_S = 1.0


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


def _pool_worker_init(parent: int) -> None:
    """Initializer of featurize's pool workers: die with ``parent`` (first, before the slower imports), then
    :func:`worker_init`."""
    _die_with_parent(parent)
    worker_init()


def worker_init():
    """Start-up of a worker process: one BLAS thread (the pool already uses every core), and the imports of
    decoding and log-mel done now (~0.3 s), so that a worker that answers :func:`worker_ready` is ready."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    import scipy.fft  # noqa: F401
    import soxr  # noqa: F401


def worker_ready() -> int:
    return os.getpid()


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


def _chunks(todo: list, n_jobs: int):
    """Guided self-scheduling: big chunks first (fewer round trips), single songs at the end (no one waits long
    for the last one). ``todo`` is sorted longest first."""
    i = 0
    while i < len(todo):
        size = max(1, min(8, (len(todo) - i) // (4 * n_jobs)))
        yield todo[i:i + size]
        i += size


def run_shared(todo: list, n_jobs: int, on_result) -> set[int]:
    """Featurize ``todo`` in this process and ``n_jobs - 1`` spawned worker processes; ``on_result(idx, err)``
    per song. Returns the indices done: all of them, unless the pool broke (a worker killed or unable to start),
    and then the caller runs the rest in this process.

    This process starts on the first songs at once, while the workers start up (~0.35 s of imports each), and
    hands chunks to each worker only once it has answered a first call (at most two chunks in flight per
    worker): no core waits for a worker's start-up, a short list is done before the workers are ready, and
    one process fewer is spawned (and started up) than songs are decoded at once.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from .features import featurize_many, featurize_one
    done: set[int] = set()
    chunks = _chunks(todo, n_jobs)
    inflight: dict = {}
    probes: set = set()
    ready = 0
    ex = None

    def collect(block: bool) -> None:
        nonlocal ready
        for fut in list(probes):
            if fut.done():
                probes.discard(fut)
                fut.result()                                # raises BrokenProcessPool if the worker died
                ready += 1
        if block and inflight:
            wait(inflight, return_when=FIRST_COMPLETED)
        for fut in [f for f in inflight if f.done()]:
            del inflight[fut]
            for idx, err in fut.result():
                done.add(idx)
                on_result(idx, err)
        while len(inflight) < 2 * ready:
            c = next(chunks, None)
            if c is None:
                break
            inflight[ex.submit(featurize_many, c)] = c

    try:
        with spawn_without_main():     # the processes start at the first submit
            ex = ProcessPoolExecutor(n_jobs - 1, mp_context=mp.get_context("spawn"),
                                     initializer=_pool_worker_init, initargs=(os.getpid(),))
            probes = {ex.submit(worker_ready) for _ in range(n_jobs - 1)}
        for c in chunks:                                    # this process's share
            for item in c:
                idx, err = featurize_one(item)
                done.add(idx)
                on_result(idx, err)
                collect(block=False)
        while inflight:                                     # what the workers still hold
            collect(block=True)
    except (BrokenProcessPool, OSError) as e:
        import warnings
        warnings.warn(f"featurize: worker processes failed ({e}); continuing in this process", RuntimeWarning,
                      stacklevel=3)
    finally:
        if ex is not None:      # the workers exit in the background (or finish starting up, for a short list)
            ex.shutdown(wait=False, cancel_futures=True)
    return done
