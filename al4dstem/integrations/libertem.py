"""The ``libertem`` engine: a LiberTEM UDF classifies the scan, inline or on a Dask cluster.

``predict_dataset(model, dataset, workers=N | scheduler="tcp://HOST:PORT")``:

- no ``workers`` and no ``scheduler``: LiberTEM's inline executor, in this process;
- ``workers=N``: a local Dask cluster of N single-threaded worker processes, started and stopped here;
- ``scheduler``: an existing Dask scheduler whose workers have al4dstem, torch and LiberTEM installed
  and see the data file under the same path (``libertem-worker tcp://HOST:PORT`` on each node).

The model travels once, as its checkpoint bytes (a few hundred kB), inside the UDF's parameters;
each worker process builds the network from them on its first partition and keeps it (a cache
keyed by the bytes' hash), so a worker loads the model once whatever the number of partitions.
Each partition is classified in batches of ``batch_size`` through ``PatternModel.classify``: the
same preprocessing and NaN/valid rule as the local engine.

LiberTEM's own readers open what LiberTEM reads natively and al4dstem reads the same way
(``.npy``, plain HDF5 4-D datasets); arrays in memory become LiberTEM memory datasets. Anything
else (other formats, neighbourhood-pooled scans of files) is read through al4dstem's reader as a
lazy Dask array, one block of scan rows at a time; on a cluster, each worker reopens the file by
its path (LiberTEM's .mib/.blo readers orient and shape frames differently from rosettasciio, so
al4dstem's reader keeps the two engines' maps identical).

Only imported when the engine is chosen (``al4dstem.engines.get_engine("libertem")``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading

import numpy as np

from al4dstem.errors import Al4dstemError

N_CLASSES = 3
DEFAULT_BATCH_SIZE = 256
BLOCK_BYTES = 256 << 20  # rows of the scan per block of the lazy fallback array, at most this size
TRIM = "MALLOC_TRIM_THRESHOLD_"  # what Dask's nanny sets in its workers (see make_context)
PARTITION_BYTES = 128 << 20  # LiberTEM partition size asked of its readers (its default: 512 MB of float32)

try:
    from libertem.udf import UDF
except ImportError as e:  # the engine registry turns this into one line naming the extra
    raise ImportError(f"LiberTEM is not installed ({e})") from None


# ---------------------------------------------------------------- the model on a worker

_models: dict[tuple[str, str], object] = {}
_models_lock = threading.Lock()


def checkpoint_bytes(model) -> bytes:
    """The model as checkpoint bytes: a ``TrainedNetwork``'s payload, or what a fitted model's ``save`` writes."""
    import torch

    payload = getattr(model, "payload", None)
    if isinstance(payload, dict) and "state_dict" in payload:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()
    if not hasattr(model, "save"):
        raise Al4dstemError(f"the libertem engine needs a model it can send to workers (a TrainedNetwork or a "
                            f"model with save()), not a {type(model).__name__}")
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        model.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def worker_model(data: bytes, device: str = "cpu"):
    """The ``TrainedNetwork`` of checkpoint ``data`` on ``device``, built once per process."""
    key = (hashlib.sha256(data).hexdigest(), str(device))
    with _models_lock:
        model = _models.get(key)
        if model is None:
            import dataclasses

            import torch

            from al4dstem.models import checkpoint
            from al4dstem.models.trained import TrainedNetwork

            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            checkpoint.check_fields(payload)
            model = TrainedNetwork.from_payload(payload).to(device)
            # one worker per core: preprocessing on one thread, as the network
            model.preprocessing_ = dataclasses.replace(model.preprocessing_, n_threads=1)
            _models[key] = model
    return model


class ClassifyUDF(UDF):
    """Class probabilities and validity of every frame (LiberTEM UDF, one pass).

    Parameters: ``checkpoint`` (bytes of the model file), ``batch_size`` (frames per network
    batch), ``device`` (``cpu`` or ``cuda``), ``n_threads`` (torch threads per worker).
    Results: ``probs`` float32 ``(*nav, 3)`` with NaN rows where not ``valid``, ``valid`` bool ``nav``.
    """

    def __init__(self, checkpoint: bytes, batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu",
                 n_threads: int = 1):
        super().__init__(checkpoint=checkpoint, batch_size=batch_size, device=device, n_threads=n_threads)

    def get_result_buffers(self):
        return {"probs": self.buffer(kind="nav", extra_shape=(N_CLASSES,), dtype=np.float32),
                "valid": self.buffer(kind="nav", dtype=bool)}

    def get_backends(self):
        return (self.BACKEND_NUMPY,)

    def get_preferred_input_dtype(self):
        # the file's own dtype: LiberTEM's default (float32) would send uint16 counts through the
        # slower float binning path and give other values than the local engine
        return self.USE_NATIVE_DTYPE

    def get_task_data(self):
        return {"model": worker_model(self.params.checkpoint, self.params.device)}

    def process_partition(self, partition):
        import torch

        frames = partition.reshape(len(partition), *partition.shape[-2:])
        model = self.task_data.model
        step = max(1, int(self.params.batch_size))
        old = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.params.n_threads)))
        try:
            for i in range(0, len(frames), step):
                probs, ok = model.classify(np.asarray(frames[i:i + step]))
                self.results.probs[i:i + step] = probs
                self.results.valid[i:i + step] = ok
        finally:
            torch.set_num_threads(old)


# ---------------------------------------------------------------- the data, as LiberTEM sees it


class _Rows:
    """An al4dstem ``Dataset`` as an array Dask can slice (whole scan rows per block).

    Pickled for a cluster as what reopens it (path, scan shape, neighbourhood), never as data.
    """

    def __init__(self, dataset, reopen: dict | None):
        self.dataset = dataset
        self.reopen = reopen
        self.shape = tuple(dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.ndim = 4

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        block = np.asarray(self.dataset._read(key[0], "scan rows"))
        return block[(slice(None), *key[1:])] if isinstance(key[0], slice) else block[key[1:]]

    def __getstate__(self):
        if self.reopen is None:
            raise Al4dstemError(f"{self.dataset.source}: the libertem engine on a cluster can only send data it can "
                                "reopen from a file: save the scan as .npy or .h5")
        return {"reopen": self.reopen, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state):
        from al4dstem.data import open_dataset
        from al4dstem.models.neighbourhood import pooled

        r = state["reopen"]
        ds = open_dataset(r["path"], r.get("dataset"), scan_shape=r.get("scan_shape"))
        self.dataset = pooled(ds, r.get("neighbourhood", 1))
        self.reopen, self.shape, self.dtype, self.ndim = r, state["shape"], state["dtype"], 4


def _reopen_spec(dataset) -> dict | None:
    """How a worker reopens ``dataset`` from its file, or None (an array in memory)."""
    from al4dstem.models.neighbourhood import PooledArray

    size = 1
    array = dataset.array
    if isinstance(array, PooledArray):
        size = array.size
    path = getattr(dataset, "path", None)
    if not path or not os.path.exists(path):
        return None
    return {"path": str(path), "scan_shape": "x".join(map(str, dataset.scan_shape)), "neighbourhood": size}


def libertem_dataset(ctx, dataset):
    """``(LiberTEM dataset, how it is read)`` for an al4dstem ``Dataset``."""
    import h5py

    rows, cols = dataset.scan_shape
    array = dataset.array
    path = getattr(dataset, "path", None)
    # partitions of about PARTITION_BYTES: every worker gets several, so none idles at the end
    try:
        workers = len(ctx.executor.get_available_workers())
    except Exception:  # an executor that cannot say: LiberTEM's own default applies below
        workers = 1
    partitions = int(max(1, min(dataset.n_positions, max(workers, -(-dataset.nbytes // PARTITION_BYTES)))))
    if isinstance(array, np.memmap) and dataset.format == "npy" and path and _npy_shape(path) == dataset.shape:
        return ctx.load("npy", path=str(path), num_partitions=partitions), "LiberTEM npy reader"
    if isinstance(array, h5py.Dataset) and dataset.format in ("HDF5", "py4DSTEM") and array.ndim == 4:
        # LiberTEM's hdf5 reader partitions by the file's own chunks (it takes no partition count)
        return ctx.load("hdf5", path=str(array.file.filename), ds_path=array.name), "LiberTEM hdf5 reader"
    if _in_memory(array):  # LiberTEM's memory dataset (sent along to a cluster's workers)
        from libertem.io.dataset.memory import MemoryDataSet

        data = np.ascontiguousarray(dataset.load())
        return MemoryDataSet(data=data, sig_dims=2, num_partitions=max(1, min(rows, 4))).initialize(ctx.executor), \
            "LiberTEM memory dataset"
    import dask.array as da
    from libertem.io.dataset.dask import DaskDataSet

    row_bytes = cols * int(np.prod(dataset.detector_shape)) * dataset.dtype.itemsize
    # a few blocks at least, so that several workers share even a small scan
    block_rows = int(max(1, min(-(-rows // 4), BLOCK_BYTES // max(1, row_bytes))))
    lazy = da.from_array(_Rows(dataset, _reopen_spec(dataset)), chunks=(block_rows, cols, *dataset.detector_shape),
                         asarray=True, fancy=False, meta=np.empty((0, 0, 0, 0), dataset.dtype))
    smallest = min(block_rows, rows - (-(-rows // block_rows) - 1) * block_rows) * row_bytes
    # min_size = the smallest block: LiberTEM keeps our blocks as its partitions instead of merging them
    return DaskDataSet(lazy, sig_dims=2, min_size=smallest).initialize(ctx.executor), \
        "al4dstem reader (lazy Dask array)"


def _in_memory(array) -> bool:
    """A numpy array in memory (not a map of a file), or a neighbourhood pooling of one."""
    from al4dstem.models.neighbourhood import PooledArray

    if isinstance(array, PooledArray):
        array = array.base
    return isinstance(array, np.ndarray) and not isinstance(array, np.memmap)


def _npy_shape(path) -> tuple | None:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, _ = np.lib.format._read_array_header(f, version)
        return None if fortran else tuple(shape)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- the engine


def make_context(workers: int | None = None, scheduler: str | None = None):
    """A LiberTEM ``Context``: inline, ``workers`` local Dask workers, or connected to ``scheduler``."""
    from libertem.api import Context

    if workers is not None and scheduler is not None:
        raise Al4dstemError("--workers starts a local cluster, --scheduler uses an existing one: give one of them")
    if scheduler is not None:
        from libertem.executor.dask import DaskJobExecutor

        try:
            return Context(executor=DaskJobExecutor.connect(scheduler))
        except OSError as e:
            raise Al4dstemError(f"--scheduler {scheduler}: cannot connect ({_first_line(e)})") from None
    if workers is not None:
        if int(workers) < 1:
            raise Al4dstemError(f"--workers must be at least 1, got {workers}")
        import dask

        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in the workers it spawns, and setting it also
        # fixes glibc's mmap threshold: every batch's buffers are then mapped and unmapped afresh,
        # which nearly halves the network's speed (one core: 178 against 95 us per pattern).
        # The workers started here keep glibc's defaults. A nanny started earlier in this process
        # (a notebook's own cluster) leaves the variable in os.environ, whence workers would inherit
        # it (they spawn after this returns, so it stays removed; this process's allocator read it
        # at start-up and is not affected).
        os.environ.pop(TRIM, None)
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{TRIM}": None}):
            return Context.make_with("dask", cpus=int(workers), gpus=0)
    return Context.make_with("inline")


def predict_dataset(model, dataset, batch_size: int = DEFAULT_BATCH_SIZE, progress=None, n_threads: int | None = None,
                    workers: int | None = None, scheduler: str | None = None, device: str | None = None,
                    context=None, info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities for every scan position through LiberTEM (``al4dstem.base.Engine``).

    ``context``: a LiberTEM ``Context`` to run on (then ``workers``/``scheduler`` are not used and it
    is left open). ``device``: where workers run the network (default: where ``model`` is).
    ``n_threads``: torch threads per worker task (default 1 on a cluster, the local engine's
    choice inline). ``info``, if a dict, gets ``reader`` (how the data were read).
    """
    from al4dstem.data import open_dataset
    from al4dstem.engines.local import default_threads

    dataset = open_dataset(dataset)
    model.check_compatible(dataset)
    if int(batch_size) < 1:
        raise Al4dstemError(f"batch size must be at least 1, got {batch_size}")
    if device is None:
        on = getattr(model, "device_", None)
        device = str(on) if on is not None else "cpu"
    if n_threads is None:
        n_threads = default_threads()[0] if workers is None and scheduler is None and context is None else 1
    udf = ClassifyUDF(checkpoint=checkpoint_bytes(model), batch_size=int(batch_size), device=str(device),
                      n_threads=int(n_threads))
    own = context is None
    ctx = make_context(workers, scheduler) if own else context
    try:
        lt_dataset, reader = libertem_dataset(ctx, dataset)
        if info is not None:
            info["reader"] = reader
        total = dataset.n_positions
        result = None
        for part in ctx.run_udf_iter(dataset=lt_dataset, udf=udf):
            result = part
            if progress is not None:
                progress(int(np.count_nonzero(part.damage.data)), total)
        if result is None:
            raise Al4dstemError(f"{dataset.source}: LiberTEM returned no result")
        buffers = result.buffers[0]
        rows, cols = dataset.scan_shape
        probs = np.asarray(buffers["probs"].data, dtype=np.float32).reshape(rows, cols, N_CLASSES)
        valid = np.asarray(buffers["valid"].data, dtype=bool).reshape(rows, cols)
    finally:
        if own:
            ctx.close()
    return probs, valid


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
