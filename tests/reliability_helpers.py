"""Helpers shared by the reliability tests and ``benchmarks/reliability.py``: forcing races to show, killing a
process in the middle of a save."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np


@contextlib.contextmanager
def frequent_thread_switches():
    """Switch threads every microsecond (Python's default is 5 ms), so that a race shows in a short test."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def kill_while_saving(save_forever, seconds: float) -> None:
    """Fork a process that calls ``save_forever(signal)``, where ``signal()`` says the first save is done, let it
    go on for ``seconds`` after that, then SIGKILL it (forked: the imports are already made, so a kill is cheap)."""
    import signal
    import time

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: save until killed
        os.close(read_end)
        try:
            save_forever(lambda: os.write(write_end, b"1"))
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1", "the saving process died before its first save"
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
