"""Helpers shared by the reliability tests and ``benchmarks/reliability.py``: forcing races to show, killing a
process in the middle of a save."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Callable

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
    import select
    import signal
    import sys
    import time

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: save until killed
        os.close(read_end)
        try:
            if "torch" in sys.modules:  # OpenMP's thread pool does not survive a fork: a parallel op would hang
                sys.modules["torch"].set_num_threads(1)
            own_progress_bar_lock()
            save_forever(lambda: os.write(write_end, b"1"))
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        # A deadline, so a child that hangs fails the test instead of stalling the suite.
        assert select.select([read_end], [], [], 120)[0], "the saving process made no save within 120 s"
        assert os.read(read_end, 1) == b"1", "the saving process died before its first save"
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)


def own_progress_bar_lock() -> None:
    """Give this (forked) process a progress-bar lock of its own. tqdm's default lock holds a multiprocessing
    semaphore shared with the parent: a child killed while drawing a bar (save_pretrained draws "Writing model
    shards") left it taken, and every later bar of the parent ("Loading weights") waited forever (CI hung)."""
    import threading

    import tqdm

    lock = threading.RLock()
    classes = [tqdm.std.tqdm]
    while classes:
        cls = classes.pop()
        cls.set_lock(lock)
        classes.extend(cls.__subclasses__())


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


#: The model identity the index versions record (they hold random vectors, made by no model).
INDEX_MODEL = "m@0123456789abcdef"


def index_versions(size: int) -> list:
    """Two DocumentIndex versions to save over each other: ids ``a0..`` / ``b0..``, random 16-dim vectors, texts
    ``"text {i} of version {v} " * 4``."""
    from gear_core.retrieval import DocumentIndex

    versions = []
    for seed, version in enumerate("ab"):
        index = DocumentIndex(16, model=INDEX_MODEL)
        texts = [f"text {i} of version {version} " * 4 for i in range(size)]
        index.add(random_unit_vectors(size, 16, seed), [f"{version}{i}" for i in range(size)], texts)
        versions.append(index)
    return versions


def retriever_versions(model, size: int) -> list:
    """Two GeARRetriever versions for ``model`` to persist over each other: nodes ``a0..`` / ``b0..`` with texts
    ``"node {i} of version {v}."`` and random vectors (recorded as ``model``'s)."""
    from llama_index.core.schema import TextNode
    from llama_index.core.storage.docstore import SimpleDocumentStore

    from gear_core.retrieval import DocumentIndex, GeARSearcher
    from gear_core.retrieval.index import model_identity
    from llama_index_gear import GeARRetriever

    versions = []
    for seed, version in enumerate("ab"):
        nodes = [TextNode(text=f"node {i} of version {version}.", id_=f"{version}{i}") for i in range(size)]
        index = DocumentIndex(model.config.hidden_size, model=model_identity(model))
        index.add(
            random_unit_vectors(size, model.config.hidden_size, seed),
            [n.node_id for n in nodes],
            [n.text for n in nodes],
        )
        store = SimpleDocumentStore()
        store.add_documents(nodes)
        versions.append(GeARRetriever(GeARSearcher(model, index), store))
    return versions


def save_in_turn(versions: list, save) -> Callable[[Callable[[], object]], None]:
    """A ``save_forever`` for :func:`kill_while_saving`: ``save(version)`` for the versions in turn, without end,
    signalling after the first save."""

    def save_forever(signal: Callable[[], object]) -> None:
        for saves in itertools.count():
            save(versions[saves % 2])
            if saves == 0:
                signal()

    return save_forever
