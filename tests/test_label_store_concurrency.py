"""Two labellers, one label file: real processes racing to open a store on the same NEW file.

Exactly one holds the file; the other gets the one-line "in use by PID ..." error at once, and
no row either process confirmed is ever lost. Processes are forked (``multiprocessing``), so
they start together from a barrier; every wait has a timeout, so a bug fails instead of hanging.
"""

import multiprocessing
import os

from al4dstem.errors import Al4dstemError
from al4dstem.labels import LabelStore, read_labels

STARTS = 50
ROWS_PER_RUN = 3
WAIT = 30  # seconds any one wait may take before the test fails
fork = multiprocessing.get_context("fork")


def _labeller(path, run, started, tried, results):
    """Open a store when both are ready; the winner records its rows and holds the file until
    the other has tried, so that "exactly one" is decided by the lock, not by timing."""
    started.wait(WAIT)
    try:
        store = LabelStore(path, (10, 10))
    except Al4dstemError as e:
        results.put((run, "refused", str(e)))
        tried.wait(WAIT)
        return
    for i in range(ROWS_PER_RUN):
        store.append(i, run, run % 3, source=f"run{run}")
        results.put((run, "confirmed", (i, run)))
    tried.wait(WAIT)
    store.close()
    results.put((run, "closed", os.getpid()))


def _race_once(path):
    started, tried, results = fork.Barrier(2), fork.Barrier(2), fork.Queue()
    procs = [fork.Process(target=_labeller, args=(path, run, started, tried, results)) for run in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(WAIT)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    # each process's last event is "closed" or "refused", and a process's events arrive in order
    events = []
    while sum(kind in ("closed", "refused") for _, kind, _ in events) < 2:
        events.append(results.get(timeout=WAIT))
    return events


def test_two_labellers_starting_on_one_new_file(tmp_path):
    refusals, lost = [], 0
    for start in range(STARTS):
        path = tmp_path / f"labels{start}.csv"
        events = _race_once(path)
        winners = {run for run, kind, _ in events if kind == "closed"}
        refused = [msg for _, kind, msg in events if kind == "refused"]
        assert len(winners) == 1 and len(refused) == 1, events
        refusals.append(refused[0])
        holder = next(pid for _, kind, pid in events if kind == "closed")
        assert " in use by PID " not in refused[0] or f" in use by PID {holder} since " in refused[0]
        confirmed = {pos for run, kind, pos in events if kind == "confirmed"}
        rows = read_labels(path, (10, 10))  # parses, and holds every confirmed row
        lost += len(confirmed - {r.position for r in rows})
        assert {r.position for r in rows} == confirmed
        assert {r.extra["source"] for r in rows} == {f"run{winners.pop()}"}
        assert sorted(os.listdir(tmp_path)) == sorted(f"labels{i}.csv" for i in range(start + 1))  # no lock note left
    assert lost == 0
    for msg in refusals:
        assert "\n" not in msg and " in use by " in msg and "(another al4dstem label?)" in msg
    # the holder's note is written right after it takes the lock: a loser reading it sooner says "another process"
    assert sum(" in use by PID " in msg for msg in refusals) + sum(
        " in use by another process" in msg for msg in refusals) == STARTS
    print(f"\n{STARTS} starts: {STARTS} with exactly one holder, {lost} confirmed rows lost, "
          f"{sum(' by PID ' in m for m in refusals)} refusals naming the PID")


def _unused_opener(folder, current, stop):
    """Opens and closes without answering: each time it created the file, it removes it again."""
    while not stop.is_set():
        try:
            LabelStore(folder / f"labels{current.value}.csv").close()
        except Al4dstemError:
            pass


def _writer(folder, files, current, confirmed):
    import fcntl
    import time

    real_flock = fcntl.flock

    def slow_flock(fd, op):  # widen the gap between opening the file and locking it
        time.sleep(0.002)
        return real_flock(fd, op)

    fcntl.flock = slow_flock  # in this forked child only
    for k in range(files):
        current.value = k
        while True:
            try:
                store = LabelStore(folder / f"labels{k}.csv")
            except Al4dstemError:
                continue  # the other process holds it: try again
            for i in range(ROWS_PER_RUN):
                store.append(i, k, i % 3)
            store.close()
            confirmed.put(k)
            break


def test_a_store_removing_its_unused_new_file_never_takes_rows_with_it(tmp_path):
    """A store that created the file and closes unused unlinks it; another store that opened the
    file just before must notice the path no longer names what it locked, and open again (else
    its rows would go into an unlinked inode and be lost)."""
    files = 40
    confirmed, stop, current = fork.Queue(), fork.Event(), fork.Value("i", 0)
    unused = fork.Process(target=_unused_opener, args=(tmp_path, current, stop))
    writer = fork.Process(target=_writer, args=(tmp_path, files, current, confirmed))
    unused.start()
    writer.start()
    writer.join(WAIT)
    stop.set()
    unused.join(WAIT)
    assert writer.exitcode == 0 and unused.exitcode == 0
    assert sorted(confirmed.get(timeout=WAIT) for _ in range(files)) == list(range(files))
    kept = [read_labels(p) if (p := tmp_path / f"labels{k}.csv").exists() else [] for k in range(files)]
    lost = {k: ROWS_PER_RUN - len(rows) for k, rows in enumerate(kept)}
    assert not any(lost.values()), lost
    assert sorted(os.listdir(tmp_path)) == sorted(f"labels{k}.csv" for k in range(files))
