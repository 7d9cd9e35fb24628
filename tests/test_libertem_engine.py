"""The libertem engine agrees with the local one: inline, on a Dask cluster the test starts, through the CLI."""

import h5py
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

pytest.importorskip("libertem", reason="LiberTEM is not installed (pip install -e '.[scale]')")

from al4dstem.data import Preprocessing, open_dataset  # noqa: E402
from al4dstem.engines import get_engine  # noqa: E402
from al4dstem.engines.local import predict_dataset as local_engine  # noqa: E402
from al4dstem.models import CNNClassifier  # noqa: E402
from al4dstem.models.neighbourhood import pooled  # noqa: E402
from al4dstem.models.trained import TrainedNetwork  # noqa: E402

ROWS, COLS, DET = 9, 7, 32
TOLERANCE = 1e-4  # the bar: max abs difference of the probabilities


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("libertem")
    rng = np.random.default_rng(0)
    data = rng.poisson(3.0, size=(ROWS, COLS, DET, DET)).astype(np.uint16)
    data[2, 3, 4:9] += 40  # something for the network to see
    np.save(d / "scan.npy", data)
    with h5py.File(d / "scan.h5", "w") as f:
        f.create_dataset("group/data", data=data, chunks=(1, 1, DET, DET))
    bad = data.astype(np.float32)
    bad[1, 2, 5, 5] = np.nan
    bad[4, 6, 0, 0] = np.inf
    np.save(d / "bad.npy", bad)
    CNNClassifier(network="default", preprocessing=Preprocessing(size=16), random_state=0).initialize(
        (DET, DET)).save(d / "model.pt")
    return d, data


@pytest.fixture(scope="module")
def model(files):
    return TrainedNetwork.load(files[0] / "model.pt")


def agree(a, b):
    (pa, va), (pb, vb) = a, b
    assert pa.shape == pb.shape == (ROWS, COLS, 3) and pa.dtype == pb.dtype == np.float32
    assert np.array_equal(va, vb)
    assert np.array_equal(np.isnan(pa), np.isnan(pb))
    assert np.nanmax(np.abs(pa - pb)) <= TOLERANCE


def libertem(model, dataset, **options):
    info = {}
    result = get_engine("libertem")(model, dataset, info=info, **options)
    return result, info["reader"]


@pytest.mark.parametrize("name, reader", [("scan.npy", "LiberTEM npy reader"), ("scan.h5", "LiberTEM hdf5 reader")])
def test_inline_agrees_with_local_engine_through_libertem_readers(files, model, name, reader):
    ds = open_dataset(files[0] / name)
    seen = []
    got, used = libertem(model, ds, batch_size=5, progress=lambda done, total: seen.append((done, total)))
    assert used == reader
    agree(got, local_engine(model, ds))
    assert seen and seen[-1] == (ROWS * COLS, ROWS * COLS)


def test_nan_patterns_are_not_valid_as_in_the_local_engine(files, model):
    ds = open_dataset(files[0] / "bad.npy")
    (probs, valid), _ = libertem(model, ds)
    assert not valid[1, 2] and not valid[4, 6] and valid.sum() == ROWS * COLS - 2
    assert np.isnan(probs[1, 2]).all() and np.isfinite(probs[valid]).all()
    agree((probs, valid), local_engine(model, ds))


def test_pooled_scans_go_through_the_al4dstem_reader_and_arrays_stay_in_memory(files, model):
    d, data = files
    pooled_scan = pooled(open_dataset(d / "scan.npy"), 3)
    got, used = libertem(model, pooled_scan)
    assert used.startswith("al4dstem reader")
    agree(got, local_engine(model, pooled_scan))
    got, used = libertem(model, data)
    assert used == "LiberTEM memory dataset"
    agree(got, local_engine(model, data))


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on 127.0.0.1, started (and stopped) by the test."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c.scheduler_address


def test_dask_cluster_agrees_and_loads_the_model_once_per_worker(files, model, cluster):
    import distributed

    d, _ = files
    ds = open_dataset(d / "scan.npy")
    got, used = libertem(model, ds, scheduler=cluster)
    assert used == "LiberTEM npy reader"
    agree(got, local_engine(model, ds))
    # a pooled scan on the cluster: each worker reopens the file by its path, never receives the data
    pooled_scan = pooled(ds, 3)
    got, _ = libertem(model, pooled_scan, scheduler=cluster)
    agree(got, local_engine(model, pooled_scan))
    with distributed.Client(cluster) as client:
        loaded = client.run(lambda: len(__import__("al4dstem.integrations.libertem", fromlist=["_models"])._models))
    assert len(loaded) == 2 and all(n == 1 for n in loaded.values()), loaded  # one model per worker, kept


def test_workers_started_here_keep_glibc_s_allocator_defaults(files, model):
    """``--workers N``: Dask's nanny would set MALLOC_TRIM_THRESHOLD_ in each worker (which halves
    the network's speed); the workers al4dstem starts run without it, and map as the local engine."""
    import os

    from al4dstem.integrations.libertem import TRIM, make_context

    ctx = make_context(workers=1)
    try:
        seen = ctx.executor.client.run(os.environ.get, TRIM)
        assert seen and all(v is None for v in seen.values()), seen
        ds = open_dataset(files[0] / "scan.npy")
        got, used = libertem(model, ds, context=ctx)
        assert used == "LiberTEM npy reader"
        agree(got, local_engine(model, ds))
    finally:
        ctx.close()


def test_arrays_in_memory_go_to_the_cluster_as_memory_datasets(files, model, cluster):
    data = files[1]
    got, used = libertem(model, data, scheduler=cluster)
    assert used == "LiberTEM memory dataset"
    agree(got, local_engine(model, data))


def test_cli_engine_libertem_writes_the_same_map(files, tmp_path):
    d, _ = files
    p = run("predict", d / "scan.npy", "--model", d / "model.pt", "--out", tmp_path / "lt", "--engine", "libertem",
            "--no-figure", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    q = run("predict", d / "scan.npy", "--model", d / "model.pt", "--out", tmp_path / "local", "--no-figure")
    assert q.returncode == 0, q.stderr
    a, b = np.load(tmp_path / "lt.npy"), np.load(tmp_path / "local.npy")
    assert np.abs(a - b).max() <= TOLERANCE


@pytest.mark.parametrize("extra, words", [
    (("--engine", "libertem", "--workers", "2", "--scheduler", "tcp://127.0.0.1:9"), ["--workers", "--scheduler"]),
    (("--engine", "libertem", "--scheduler", "tcp://127.0.0.1:9"), ["tcp://127.0.0.1:9", "cannot connect"]),
    (("--workers", "2",), ["local engine", "--workers"]),
    (("--engine", "spark"), ["unknown engine", "libertem"]),
    (("--engine", "libertem", "--workers", "0"), ["--workers"]),
])
def test_bad_engine_options_are_one_line(files, tmp_path, extra, words, monkeypatch):
    d, _ = files
    # Dask waits 30 s by default before giving up on a scheduler that does not answer
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "3s")
    p = run("predict", d / "scan.npy", "--model", d / "model.pt", "--out", tmp_path / "m", *extra, timeout=120)
    assert_one_line_error(p, *words)


def test_a_series_maps_the_same_through_libertem(files, model):
    from al4dstem.series import map_series, open_series

    stack = np.stack([files[1], files[1][::-1]])  # two frames, one 5-D array
    series = open_series(stack)
    lt = map_series(model, series, "libertem")
    local = map_series(model, series, "local")
    for f in range(2):
        agree((lt[0][f], lt[1][f]), (local[0][f], local[1][f]))
