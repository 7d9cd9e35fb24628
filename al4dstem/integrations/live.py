"""Map a scan while it streams from the detector, through LiberTEM-live (extra ``live``).

``map_live(model, scan_shape, host=..., data_port=..., api_port=...)`` connects to a Quantum
Detectors Merlin (or anything that speaks its TCP protocol), arms and triggers one acquisition of
``scan_shape`` frames, and classifies the frames as they arrive with the same UDF and model as the
``libertem`` engine, on LiberTEM-live's pipelined executor (one worker process per core). It
returns the probability map once the last frame is in.

Merlin frames go over the wire as the detector stores them, bottom row first; al4dstem reads the
same detector's ``.mib`` files upright (as rosettasciio does), so each frame is turned upright here
too, and a model trained on files maps the live stream the same way.

``replay(path, scan_shape)`` starts LiberTEM-live's Merlin simulator on loopback, serving a
recorded ``.mib`` (its ``.hdr`` beside it) from memory: for tests, benchmarks and trying the live
path without a microscope.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from dataclasses import dataclass

import numpy as np

from al4dstem.errors import Al4dstemError

try:
    from libertem_live.api import LiveContext
except ImportError as e:
    raise ImportError(f"LiberTEM-live is not installed ({e}): pip install 'al4dstem[live]'") from None

from al4dstem.integrations.libertem import N_CLASSES, ClassifyUDF, checkpoint_bytes

DEFAULT_API_PORT = 6341  # Merlin's control port
DEFAULT_DATA_PORT = 6342  # Merlin's data port


class UprightClassifyUDF(ClassifyUDF):
    """``ClassifyUDF`` on Merlin frames as they arrive (bottom row first): turned upright first."""

    def process_partition(self, partition):
        super().process_partition(partition[..., ::-1, :])


@dataclass
class LiveResult:
    """A live map: ``probs`` ``(rows, cols, 3)``, ``valid`` ``(rows, cols)``, and how fast it came."""

    probs: np.ndarray
    valid: np.ndarray
    seconds: float  # from triggering the acquisition to the last frame classified

    @property
    def patterns_per_second(self) -> float:
        return self.valid.size / max(self.seconds, 1e-9)


def map_live(model, scan_shape: tuple[int, int], *, host: str = "127.0.0.1", data_port: int = DEFAULT_DATA_PORT,
             api_port: int = DEFAULT_API_PORT, batch_size: int = 256, frames_per_partition: int | None = None,
             progress=None, udf=None, context=None) -> LiveResult:
    """Arm, trigger and map one acquisition of ``scan_shape`` = (rows, cols) frames from a Merlin.

    ``model`` is a ``TrainedNetwork`` (or any model the ``libertem`` engine takes); its detector size
    must be the detector's. ``progress(done, total)`` is called as partitions come in. ``udf``
    replaces the classifier (a benchmark measures the stream alone with a trivial one); then the
    result's ``probs`` is whatever that UDF returned first. ``context``: a ``LiveContext`` to run on
    and leave open (its workers stay warm: they keep the model between acquisitions); by default one
    is started (a worker process per core) and closed.
    """
    rows, cols = (int(n) for n in scan_shape)
    if rows < 1 or cols < 1:
        raise Al4dstemError(f"scan shape must be positive, got {rows}x{cols}")
    if udf is None:
        udf = UprightClassifyUDF(checkpoint=checkpoint_bytes(model), batch_size=int(batch_size), device="cpu",
                                 n_threads=1)
    frame = _frame_shape(host, int(api_port), int(data_port))
    if model is not None and frame is not None:  # before any worker starts
        from al4dstem.models.trained import check_detector

        check_detector(model.detector_shape_, frame, f"the detector at {host}")
    ctx = LiveContext() if context is None else context
    try:
        try:
            conn = ctx.make_connection("merlin").open(data_host=host, data_port=int(data_port), api_host=host,
                                                      api_port=int(api_port))
        except (OSError, RuntimeError) as e:
            raise Al4dstemError(f"cannot connect to the detector at {host} (data port {data_port}, control port "
                                f"{api_port}): {_first_line(e)}") from None
        with conn:
            aq = ctx.make_acquisition(conn=conn, nav_shape=(rows, cols), controller=conn.get_active_controller(),
                                      frames_per_partition=frames_per_partition)
            detector = tuple(int(n) for n in aq.shape.sig)
            if model is not None:
                from al4dstem.models.trained import check_detector

                check_detector(model.detector_shape_, detector, f"the detector at {host}")
            start = time.perf_counter()
            result = None
            for part in ctx.run_udf_iter(dataset=aq, udf=udf):
                result = part
                if progress is not None:
                    progress(int(np.count_nonzero(part.damage.data)), rows * cols)
            seconds = time.perf_counter() - start
    finally:
        if context is None:
            ctx.close()
    if result is None:
        raise Al4dstemError("the detector sent no frames")
    buffers = result.buffers[0]
    if "probs" not in buffers:  # another UDF: its first buffer, and every frame counted as valid
        first = next(iter(buffers.values()))
        return LiveResult(np.asarray(first.data), np.ones((rows, cols), bool), seconds)
    probs = np.asarray(buffers["probs"].data, dtype=np.float32).reshape(rows, cols, N_CLASSES)
    valid = np.asarray(buffers["valid"].data, dtype=bool).reshape(rows, cols)
    return LiveResult(probs, valid, seconds)


@contextlib.contextmanager
def replay(path, scan_shape: tuple[int, int], host: str = "127.0.0.1", dwelltime: float | None = None):
    """LiberTEM-live's Merlin simulator serving ``path`` (a ``.mib`` or its ``.hdr``) on free loopback ports.

    Yields ``{"host", "data_port", "api_port"}`` for ``map_live``. The frames are read into memory
    first (``cached="MEM"``), so the stream is limited by the network stack, not the disk.
    ``dwelltime`` (seconds per frame) slows the replay to a detector's frame rate.
    """
    from libertem_live.detectors.merlin import sim as simulator
    from libertem_live.detectors.merlin.sim import CameraSim

    ports = [_free_port(host) for _ in range(3)]
    try:
        sim = CameraSim(path=str(path), nav_shape=tuple(int(n) for n in scan_shape), host=host, data_port=ports[0],
                        control_port=ports[1], trigger_port=ports[2], cached="MEM", dwelltime=dwelltime)
    except (OSError, ValueError, KeyError) as e:
        raise Al4dstemError(f"{path}: the Merlin simulator cannot serve it ({_first_line(e)})") from None
    # the simulator draws a progress bar per replay on stderr, over ours: silence its own tqdm
    drawn_by = simulator.tqdm
    simulator.tqdm = functools.partial(drawn_by, disable=True)
    sim.start()
    try:
        sim.wait_for_listen()
        yield {"host": host, "data_port": ports[0], "api_port": ports[1]}
    finally:
        sim.stop_event.set()  # the simulator's threads are daemons that end on it
        simulator.tqdm = drawn_by


def _frame_shape(host: str, api_port: int, data_port: int, timeout: float = 5.0) -> tuple[int, int] | None:
    """The frame shape the Merlin's control server reports (None if it does not say), so that a wrong
    address or port is one clear error rather than a data connection that waits for ever."""
    from libertem_live.detectors.merlin.control import MerlinControl

    try:
        with MerlinControl(host=host, port=api_port, timeout=timeout) as control:
            width, height = control.get("IMAGEX"), control.get("IMAGEY")
    except (OSError, AssertionError, ValueError) as e:
        raise Al4dstemError(f"cannot connect to the detector at {host} (control port {api_port}, data port "
                            f"{data_port}): {_first_line(e)}") from None
    try:
        return int(height), int(width)
    except ValueError:
        return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
