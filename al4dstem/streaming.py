"""Bounded streaming helpers shared by the engines, the simulator's writer and scan-wide passes.

Threads and the standard library only, so any module (``data``, ``lattice``) may use them.

- ``prefetch(items, depth)``: run an iterator on a background thread, at most ``depth`` items
  ahead of the consumer (read + preprocess batch k+1 while the network runs on batch k).
- ``ordered_map(function, items, threads, ahead)``: ``function`` over ``items`` on a few threads,
  results in input order, at most ``ahead`` in flight (the simulator makes chunks so).

Both keep memory bounded whatever the scan's size, hand a producer's exception to the consumer,
and stop their threads when the consumer stops early (an error, Ctrl-C, a ``break``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def prefetch(items: Iterable, depth: int = 2, waited: Callable[[float], None] | None = None) -> Iterator:
    """Yield ``items``, produced on a background thread at most ``depth`` ahead.

    ``waited(seconds)``, if given, is told how long the consumer waited for each item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer, re-raised there
            put(("error", e))

    worker = threading.Thread(target=produce, name="al4dstem-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            t = time.perf_counter()
            kind, item = q.get()
            if waited is not None:
                waited(time.perf_counter() - t)
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def ordered_map(function: Callable, items: Iterable, threads: int = 1, ahead: int | None = None) -> Iterator:
    """``function(item)`` for every item, in order, computed on ``threads`` threads.

    At most ``ahead`` (default ``2 * threads``) results are in flight or waiting, so memory does
    not grow with the number of items. One thread computes in the caller's thread.
    """
    threads = max(1, int(threads))
    if threads == 1:
        for item in items:
            yield function(item)
        return
    ahead = max(1, int(ahead or 2 * threads))
    with ThreadPoolExecutor(threads, thread_name_prefix="al4dstem-map") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # the consumer stopped early: drop what has not started
                future.cancel()
