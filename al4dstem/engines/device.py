"""Where the network runs: ``--device cpu|cuda|auto`` and the GPU forward pass.

Nothing here needs a GPU: ``auto`` falls back to the CPU, and asking for ``cuda`` where torch
sees none is one ``Al4dstemError``. On a GPU, a batch is copied once into a pinned (page-locked)
host buffer, kept between batches, and uploaded chunk by chunk on a separate CUDA stream, so the
upload of chunk k+1 overlaps the network on chunk k; results come back into a pinned buffer too.
"""

from __future__ import annotations

import threading

import numpy as np

from al4dstem.errors import Al4dstemError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec="auto"):
    """A ``torch.device`` for ``spec``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (a GPU when torch sees one)."""
    import torch

    text = str(spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise Al4dstemError(f"--device {spec}: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                                "use --device cpu or auto")
        try:
            device = torch.device(text)
        except RuntimeError:
            raise Al4dstemError(f"--device {spec}: not a device name (cpu, cuda, cuda:N or auto)") from None
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise Al4dstemError(f"--device {spec}: there are {torch.cuda.device_count()} GPU(s), numbered from 0")
        return device
    raise Al4dstemError(f"--device {spec}: one of {', '.join(DEVICES)} (or cuda:N)")


class _PinnedBuffers(threading.local):
    """Page-locked host buffers, grown as needed and kept (per thread: engines may call from several)."""

    def __init__(self):
        self.inputs = None
        self.outputs = None

    def take(self, n: int, size: tuple[int, int], n_classes: int):
        import torch

        if self.inputs is None or self.inputs.shape[0] < n or tuple(self.inputs.shape[1:]) != tuple(size):
            self.inputs = torch.empty((n, *size), dtype=torch.float32).pin_memory()
            self.outputs = torch.empty((n, n_classes), dtype=torch.float32).pin_memory()
        return self.inputs[:n], self.outputs[:n]


_buffers = _PinnedBuffers()


def cuda_forward(net, x: np.ndarray, device, chunk: int, n_classes: int = 3) -> np.ndarray:
    """Softmax probabilities ``(n, n_classes)`` of ``net`` (already on ``device``) for ``x`` ``(n, h, w)``.

    Uploads run on their own stream, one chunk ahead of the network; the results are copied into a
    pinned buffer without blocking, and the host waits once, at the end of the batch.
    """
    import torch

    n = len(x)
    host_in, host_out = _buffers.take(n, x.shape[1:], n_classes)
    host_in.numpy()[:] = x  # one copy into page-locked memory: what makes the uploads asynchronous
    compute = torch.cuda.current_stream(device)
    copier = torch.cuda.Stream(device)

    def upload(i0: int):
        with torch.cuda.stream(copier):
            part = host_in[i0:i0 + chunk].to(device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(copier)
        return part, done

    with torch.inference_mode():
        ahead = upload(0) if n else None
        for i0 in range(0, n, chunk):
            part, done = ahead
            if i0 + chunk < n:
                ahead = upload(i0 + chunk)
            compute.wait_event(done)
            part.record_stream(compute)  # the allocator must not reuse it before the network is done
            probs = torch.softmax(net(part[:, None]), dim=1)
            host_out[i0:i0 + chunk].copy_(probs, non_blocking=True)
        compute.synchronize()
    return host_out.numpy().copy()
