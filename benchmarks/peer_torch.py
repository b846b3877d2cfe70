"""The NAS-Bench-201 network in PyTorch, as NAS-Bench-201's own code builds and trains it.

The peer of ``nax.models.build`` for ``benchmarks/bench_peer.py``: the same macro skeleton
(conv3x3 stem + BN; three stages of N cells with C, 2C, 4C channels joined by residual
reduction blocks; BN-ReLU; global average pool; linear classifier), the same ops
(``ReLUConvBN`` = ReLU → conv without bias → BN; 3x3 average pool that does not count
padding; zero; identity) and module names that mirror the Flax ones, so
``load_flax_variables`` copies a nax network's parameters and batch statistics across and
the two compute the same logits.

The train step is NAS-Bench-201's: ``torch.optim.SGD`` with momentum, Nesterov and weight
decay on every parameter, which is the same update as nax's ``add_decayed_weights`` then
``sgd(nesterov=True)`` (both add ``wd * p`` to the gradient before the momentum trace).
Channels-last memory format, as PyTorch recommends for convolutions on CPU.

torch is imported here only: it is the optional ``peer`` extra, never a dependency of nax.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # nax.space.NB201_OPS
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # nax.space.nb201.edges
NUM_NODES = 4


class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1),
        )

    def forward(self, x):
        return self.op(x)


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3)
    raise ValueError(f"unknown operation {name!r}; accepted: {', '.join(OPS)}")


class InferCell(nn.Module):
    """One op per edge (edge order of ``nax.space.nb201``); node j sums its incoming edges."""

    def __init__(self, ops: tuple[str, ...], c: int):
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleDict({f"edge{k}_{op}": _op(op, c) for k, op in enumerate(self.ops)})

    def forward(self, x):
        nodes = [x]
        for j in range(1, NUM_NODES):
            acc = None
            for k, (i, jj) in enumerate(EDGES):
                if jj == j:
                    y = self.edges[f"edge{k}_{self.ops[k]}"](nodes[i])
                    acc = y if acc is None else acc + y
            nodes.append(acc)
        return nodes[-1]


class ResNetBasicblock(nn.Module):
    """NAS-Bench-201's residual reduction block (stride 2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    """NAS-Bench-201's ``TinyNetwork`` for one cell, ``ops`` as op names in edge order."""

    def __init__(self, ops, num_classes: int, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3):
        super().__init__()
        ops = tuple(OPS[o] if isinstance(o, (int, np.integer)) else o for o in ops)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels, eps=1e-5)
        )
        blocks = {}
        for s in range(3):
            c = channels * 2**s
            if s > 0:
                blocks[f"reduce{s}"] = ResNetBasicblock(c // 2, c)
            for i in range(cells_per_stage):
                blocks[f"cell{s}_{i}"] = InferCell(ops, c)
        self.cells = nn.ModuleDict(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * channels, eps=1e-5), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(4 * channels, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.cells.values():
            x = block(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def param_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


# ---------------------------------------------------------------------------- weights from nax
def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _conv(conv: nn.Conv2d, kernel_HWIO):
    conv.weight.data.copy_(_t(kernel_HWIO).permute(3, 2, 0, 1))  # flax HWIO -> torch OIHW


def _bn(bn: nn.BatchNorm2d, params, stats):
    bn.weight.data.copy_(_t(params["scale"]))
    bn.bias.data.copy_(_t(params["bias"]))
    bn.running_mean.copy_(_t(stats["mean"]))
    bn.running_var.copy_(_t(stats["var"]))


def _rcb(m: ReLUConvBN, params, stats):
    _conv(m.op[1], params["conv"]["kernel"])
    _bn(m.op[2], params["bn"], stats["bn"])


@torch.no_grad()
def load_flax_variables(model: TinyNetwork, variables) -> TinyNetwork:
    """Copy a specialised nax network's ``{"params", "batch_stats"}`` into ``model`` (in place).

    Every torch parameter is written exactly once (checked), so a layout that drifted
    between the two networks fails loudly instead of leaving random weights behind.
    """
    p, s = variables["params"], variables["batch_stats"]
    written: list[torch.Tensor] = []
    _conv(model.stem[0], p["stem_conv"]["kernel"])
    _bn(model.stem[1], p["stem_bn"], s["stem_bn"])
    written += [model.stem[0].weight, model.stem[1].weight, model.stem[1].bias]
    for name, block in model.cells.items():
        if isinstance(block, ResNetBasicblock):
            for part in ("conv_a", "conv_b"):
                _rcb(getattr(block, part), p[name][part], s[name][part])
            _conv(block.downsample[1], p[name]["downsample"]["kernel"])
        else:
            for edge, op in block.edges.items():
                if isinstance(op, ReLUConvBN):
                    _rcb(op, p[name][edge], s[name][edge])
        written += list(block.parameters())
    _bn(model.lastact[0], p["last_bn"], s["last_bn"])
    model.classifier.weight.copy_(_t(p["classifier"]["kernel"]).T)
    model.classifier.bias.copy_(_t(p["classifier"]["bias"]))
    written += [model.lastact[0].weight, model.lastact[0].bias, model.classifier.weight, model.classifier.bias]
    n_written = sum(t.numel() for t in written)
    if n_written != param_count(model):
        raise ValueError(f"copied {n_written} of {param_count(model)} parameters: the two layouts differ")
    return model


# ---------------------------------------------------------------------------- training
def make_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """SGD of a ``nax.train.TrainConfig`` (momentum, Nesterov, weight decay on every parameter)."""
    if cfg.optimizer != "sgd":
        raise ValueError("the peer benchmark compares the SGD step only")
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One SGD step on a batch, NAS-Bench-201's procedure (train mode, mean cross-entropy)."""
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def to_input(x_BxHxWxC: np.ndarray) -> torch.Tensor:
    """NHWC numpy images as an NCHW tensor in channels-last memory (no copy of the data)."""
    return torch.from_numpy(x_BxHxWxC).permute(0, 3, 1, 2)
