"""The networks: the paper's CNN, faithfully, and the default one designed for this problem.

Both take ``(n, 1, size, size)`` float32 (preprocessed patterns) and return ``(n, 3)`` logits
in class order none, vertical, horizontal.

``paper`` (Fig. 4 of the paper, ghost-hunter's ``ThreeLayerCnn``): three blocks of 3x3 conv
(1 -> 16 -> 32 -> 64, stride 1, padding 1), ReLU and 2x2 max-pool, then a fully connected
layer to 128, ReLU, and 3 outputs. Its size depends on the input: 8.4 M parameters at 256 x 256
(the paper's input size), 2.1 M at 128 x 128 (the figure the paper quotes).

``default``: few labels, faint ghost disks, a 2-core CPU. Every layer halves the resolution
(a 4x4 stride-2 stem, then 3x3 stride-2 conv + batch norm + ReLU), channels grow only as the
maps shrink, so no layer runs many channels at full resolution; global average and max pooling
(is a ghost there at all? how much of it?) feed one linear layer. ~25 k parameters: little to
overfit with 50 labels, tolerant of descan drift (pooling is translation invariant), and about
1 M multiply-adds per 64 x 64 pattern, its input size (the paper's network: 0.4 G at 256 x 256).

The baselines (``al4dstem.models.baselines``) are torch modules too, so that every model shares
one checkpoint format and one inference path: ``softmax`` (softmax regression on 32 x 32 binned
log patterns), ``pca-knn`` (PCA + k nearest neighbours) and ``ghost`` (softmax regression on the
virtual dark-field intensities at the ghost positions of the scan's lattice). Their weights come
from scikit-learn, not from gradient descent.

Every network takes ``temperature`` (default 1): its logits are divided by it, which calibrates
the probabilities (``al4dstem.models.calibration``) without changing any prediction. And
``class_bias`` (default None: zeros): three numbers added to the logits after that, the offsets
``-log(share)`` by which ``class_weight="scan"`` makes the classes count equally over a scan's
estimated class shares (``CNNClassifier.balance_to_scans``).

The CNNs take ``orient`` (default None): ``{"rotation": degrees, "centre": [x, y]}`` of the scan's
lattice on the input grid. Their first step (``Canonical``) then resamples every input so that the
lattice's centre is the image centre and its axes lie along the image axes ("canonical
orientation"): a lattice at 31 degrees looks like an aligned one, all eight symmetries of the
square become valid augmentations, and the ghost rows lie along the convolutions' axes. It is
part of the network, so a checkpoint applies it at predict time exactly as in training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: CNNs, trained by gradient descent (``al4dstem.models.training``).
CNN_NETWORKS = ("default", "paper")
#: Baselines whose weights scikit-learn fits (``al4dstem.models.baselines``).
BASELINE_NETWORKS = ("ghost", "softmax", "pca-knn")
#: Network names a checkpoint may hold, the default first.
NETWORKS = CNN_NETWORKS + BASELINE_NETWORKS
#: What ``network=`` accepts: a network, or "auto" (cross-validate them and keep the best).
CHOICES = ("auto",) + NETWORKS
#: Preprocessing (input) size each network is designed for, in pixels (ghost: up to 128, see baselines).
INPUT_SIZES = {"default": 64, "paper": 256, "softmax": 32, "pca-knn": 32, "ghost": 128}
#: AdamW learning rate each network trains with by default (the paper's 4e-4 for its own network).
LEARNING_RATES = {"default": 2e-3, "paper": 4e-4}
N_CLASSES = 3


def _temperature(value) -> float:
    t = float(value)
    if not (0.01 <= t <= 100.0):
        raise ValueError(f"temperature must be between 0.01 and 100, got {value!r}")
    return t


class Canonical(nn.Module):
    """Rotate and centre ``(n, 1, size, size)`` inputs so the lattice ``orient`` describes lies along the
    image axes, centred (bilinear resampling; outside the pattern counts as 0). Identity for None."""

    def __init__(self, input_size: int, orient: dict | None = None):
        super().__init__()
        self.orient = _orient(orient)
        grid = None if self.orient is None else canonical_grid(int(input_size), self.orient)
        self.register_buffer("grid", grid, persistent=False)  # follows from the config: not stored

    @property
    def active(self) -> bool:
        return self.grid is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is None:
            return x
        grid = self.grid.to(dtype=x.dtype).expand(len(x), -1, -1, -1)
        return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _class_bias(value) -> list[float] | None:
    """Three finite logit offsets within +-20 (a share of 2e-9), or None."""
    if value is None:
        return None
    try:
        bias = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"class_bias must be {N_CLASSES} numbers, got {value!r}") from None
    if len(bias) != N_CLASSES or not all(math.isfinite(b) and abs(b) <= 20 for b in bias):
        raise ValueError(f"class_bias must be {N_CLASSES} finite numbers within +-20, got {value!r}")
    return bias


def set_class_bias(net: nn.Module, class_bias) -> None:
    """Make ``net`` add ``class_bias`` (None: nothing) to its logits after the temperature; kept in its
    config, so checkpoints and every engine apply it. A buffer, not a weight: it follows the config."""
    bias = _class_bias(class_bias)
    old = getattr(net, "class_bias", None)  # a network on a GPU keeps its offsets there
    values = torch.tensor(bias if bias is not None else [0.0] * N_CLASSES, dtype=torch.float32,
                          device=old.device if isinstance(old, torch.Tensor) else None)
    net.register_buffer("class_bias", values, persistent=False)
    if bias is None:
        net.config.pop("class_bias", None)
    else:
        net.config["class_bias"] = bias


def _orient(orient) -> dict | None:
    if orient is None:
        return None
    try:
        rotation = float(orient["rotation"])
        cx, cy = (float(v) for v in orient["centre"])
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"orient must be {{'rotation': degrees, 'centre': [x, y]}}, got {orient!r}") from None
    if not all(map(math.isfinite, (rotation, cx, cy))):
        raise ValueError(f"orient holds a non-finite number: {orient!r}")
    return {"rotation": rotation, "centre": [cx, cy]}


def canonical_grid(size: int, orient: dict) -> torch.Tensor:
    """``grid_sample`` grid ``(1, size, size, 2)``: output pixel q samples the input at
    ``centre + R(rotation) (q - image centre)`` (x = column, y = row; R turns +x towards +y), so the
    lattice vector at ``rotation`` degrees lands on +x."""
    theta = math.radians(orient["rotation"])
    cx, cy = orient["centre"]
    c0 = (size - 1) / 2
    q = torch.arange(size, dtype=torch.float32) - c0
    qy, qx = torch.meshgrid(q, q, indexing="ij")
    px = cx + math.cos(theta) * qx - math.sin(theta) * qy
    py = cy + math.sin(theta) * qx + math.cos(theta) * qy
    return torch.stack([(2 * px + 1) / size - 1, (2 * py + 1) / size - 1], dim=-1)[None]


class PaperNet(nn.Module):
    """The paper's three-layer CNN (Fig. 4); ``input_size`` must be a multiple of 8."""

    def __init__(self, input_size: int = 256, temperature: float = 1.0, orient: dict | None = None,
                 class_bias=None):
        super().__init__()
        if input_size < 8 or input_size % 8:
            raise ValueError(f"the paper network needs an input size that is a multiple of 8, got {input_size}")
        self.temperature = _temperature(temperature)
        self.canonical = Canonical(input_size, orient)
        self.config = {"input_size": int(input_size), "temperature": self.temperature}
        if self.canonical.orient is not None:
            self.config["orient"] = self.canonical.orient
        layers: list[nn.Module] = []
        channels = 1
        for out in (16, 32, 64):
            layers += [nn.Conv2d(channels, out, 3, 1, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2)]
            channels = out
        self.features = nn.Sequential(*layers)
        side = input_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True), nn.Linear(128, N_CLASSES)
        )
        set_class_bias(self, class_bias)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (at temperature 1) of inputs already in canonical orientation."""
        return self.classifier(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.canonical(x)) / self.temperature + self.class_bias


class GlobalPool(nn.Module):
    """Global average and global max pooling, concatenated: ``(n, c, h, w) -> (n, 2c)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DomainNet(nn.Module):
    """The default network: strided stem, resolution halved by every layer, global pooling.

    ``widths`` are the channels of the stem and of each following stride-2 layer; the input
    side must be at least ``2 ** len(widths)`` pixels (any size works: pooling is global).
    """

    def __init__(self, input_size: int = 64, widths=(8, 16, 32, 64), dropout: float = 0.2,
                 temperature: float = 1.0, orient: dict | None = None, class_bias=None):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if input_size < 2 ** len(widths):
            raise ValueError(f"the default network needs an input of at least {2 ** len(widths)} pixels, "
                             f"got {input_size}")
        self.temperature = _temperature(temperature)
        self.canonical = Canonical(input_size, orient)
        self.config = {"input_size": int(input_size), "widths": list(widths), "dropout": float(dropout),
                       "temperature": self.temperature}
        if self.canonical.orient is not None:
            self.config["orient"] = self.canonical.orient
        layers = _conv_bn_relu(1, widths[0], 4, 2, 1)
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += _conv_bn_relu(cin, cout, 3, 2, 1)
        self.features = nn.Sequential(*layers)
        self.pool = GlobalPool()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * widths[-1], N_CLASSES))
        set_class_bias(self, class_bias)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (at temperature 1) of inputs already in canonical orientation."""
        return self.head(self.pool(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.canonical(x)) / self.temperature + self.class_bias


def set_temperature(net: nn.Module, temperature: float) -> None:
    """Make ``net`` divide its logits by ``temperature`` (stored in its config, so checkpoints keep it)."""
    net.temperature = _temperature(temperature)
    net.config["temperature"] = net.temperature


def _builders() -> dict:
    from al4dstem.models import baselines

    return {"default": DomainNet, "paper": PaperNet, "ghost": baselines.GhostFeatureNet,
            "softmax": baselines.LinearNet, "pca-knn": baselines.KNNNet}


def build_network(name: str, input_size: int, **kwargs) -> nn.Module:
    """A fresh network by name (``NETWORKS``) for square inputs of side ``input_size``.

    Extra keyword arguments go to the network's constructor (they are what a checkpoint stores).
    """
    from al4dstem.errors import Al4dstemError

    builders = _builders()
    if name not in builders:
        raise Al4dstemError(f"unknown network {name!r} (one of {', '.join(NETWORKS)})")
    try:
        return builders[name](input_size=int(input_size), **kwargs)
    except (TypeError, ValueError) as e:
        raise Al4dstemError(f"cannot build the {name} network: {e}") from None


def network_config(net: nn.Module) -> dict:
    """The constructor arguments that rebuild ``net`` (input size included)."""
    return dict(net.config)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def inference_network(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` for fast inference: batch norm folded into the convolutions.

    The outputs equal ``net.eval()``'s up to float rounding; ``net`` itself is left unchanged.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net).eval()
    for parent in fused.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        mods = list(parent)
        out: list[nn.Module] = []
        i = 0
        while i < len(mods):
            if isinstance(mods[i], nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                out.append(fuse_conv_bn_eval(mods[i], mods[i + 1]))
                i += 2
            else:
                out.append(mods[i])
                i += 1
        if len(out) != len(mods):
            for name in list(parent._modules):
                del parent._modules[name]
            for j, m in enumerate(out):
                parent.add_module(str(j), m)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused
