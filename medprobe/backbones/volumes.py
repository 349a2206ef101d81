"""3D networks for volumes: MedMNIST v2's ResNet-18 with its convolutions made 3D, 2.5D or ACS.

The MedMNIST v2 baselines (Yang et al., Scientific Data 2023; MedMNIST/experiments at 70b6b3a,
MedMNIST3D/models.py and train_and_eval_pytorch.py) take a CIFAR-style ResNet-18 (a 3x3 stem of
stride 1, no max pool, one input channel) and convert each 2D convolution with ACSConv's
converters (M3DV/ACSConv at 95dc860, acsconv/operators):

* `3d`: a k x k x k kernel (`Conv3dConverter`);
* `2.5d`: the k x k kernel applied to each slice of the first axis, a 1 x k x k kernel
  (`Conv2_5dConverter`);
* `acs`: the output channels split in three groups (axial, coronal, sagittal; the first groups take
  the remainder), each group's k x k kernel laid in its own plane (`ACSConverter`).

Strides and "same" padding apply to all three axes, except no padding along a kernel's axis of
length 1; pooling and BatchNorm become their 3D counterparts.

Built here on timm's ResNet-18, the network `resnet18` trains in 2D, rather than with the `acsconv`
package: its converters return a proxy object, not an `nn.Module` (DistributedDataParallel,
`torch.compile` and `state_dict` round trips need a module), and a 2D model is only a starting
point here, its weights random. MONAI's 3D ResNets are maintained but are 3D only, with another
stem: neither 2.5D nor ACS, nor the network of the v2 table that these runs are compared with.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from medprobe.backbones.preprocess import PreprocessConfig
from medprobe.backbones.registry import VOLUME_CONVS, BackboneSpec
from medprobe.backbones.weights import load_local_weights
from medprobe.errors import WeightsError

PLANE_AXES = {"2.5d": (0,), "acs": (0, 1, 2)}  # the axis each group's kernel lies across


def create(
    spec: BackboneSpec,
    *,
    pretrained: bool,
    weights,
    side: int | None,
    num_classes: int,
    seed: int,
) -> tuple[nn.Module, PreprocessConfig]:
    """A network for volumes in eval mode and its input: random init from `seed`, or `weights`."""
    if pretrained and weights is None:
        raise WeightsError(
            f"{spec.name} has no pretrained weights: it trains from scratch (--no-pretrained, its "
            "default), or from a local file with --weights"
        )
    assert spec.conv is not None, "a volumetric spec names its convolutions"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = resnet18_volumes(spec.conv, num_classes=num_classes)
    if weights is not None:
        load_local_weights(model, weights, name=spec.name)
    return model.eval(), preprocess_config(side)


def preprocess_config(side: int | None) -> PreprocessConfig:
    """A network for volumes' input: voxels / 255 in one channel, at the volumes' own side.

    As the MedMNIST v2 baselines read them (no mean or std).
    """
    return PreprocessConfig(input_size=side or 28, mean=(0.0,), std=(1.0,))


class PlaneConv(nn.Module):
    """A 2D convolution applied to volumes: each group of output channels in one plane.

    The weight keeps the 2D shape (out, in, k, k); group g's kernel gets a length-1 axis at
    `axes[g]` (0: depth, 1: height, 2: width) and convolves across the other two.
    """

    def __init__(self, conv: nn.Conv2d, axes: tuple[int, ...]):
        super().__init__()
        (k, k2), (s, s2) = conv.kernel_size, conv.stride
        p, p2 = conv.padding if isinstance(conv.padding, tuple) else (-1, -1)  # not "same"/"valid"
        if k != k2 or s != s2 or p != p2 or p != k // 2 or conv.groups != 1:
            raise ValueError(f"PlaneConv needs a square 'same' convolution, got {conv}")
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        self.stride, self.padding, self.axes = s, p, axes
        out = conv.out_channels
        self.splits = [out // len(axes) + (g < out % len(axes)) for g in range(len(axes))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, out, D', H', W')."""
        parts = []
        for axis, weight in zip(self.axes, self.weight.split(self.splits), strict=True):
            padding = [self.padding] * 3
            padding[axis] = 0
            parts.append(F.conv3d(x, weight.unsqueeze(2 + axis), None, self.stride, padding))
        out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1, 1)

    def extra_repr(self) -> str:
        """The 2D weight's shape and how its channels are laid."""
        return f"{tuple(self.weight.shape)}, axes={self.axes}, splits={self.splits}"


def resnet18_volumes(conv: str, *, num_classes: int, in_chans: int = 1) -> nn.Module:
    """MedMNIST v2's ResNet-18 for volumes (B, in_chans, D, H, W), its convolutions made `conv`.

    A timm ResNet: `forward_features`, `forward_head`, `get_classifier` and the `layer1..4` stages
    work as in 2D. Initialised from the global torch seed (timm's init, kernels inflated for 3d).
    """
    if conv not in VOLUME_CONVS:
        raise ValueError(f"unknown convolution {conv!r}; choose one of {VOLUME_CONVS}")
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # timm's
    model.maxpool = nn.Identity()
    _convert(model, conv)
    model.global_pool = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(1))
    return model


def _convert(module: nn.Module, conv: str) -> None:
    """Replace every Conv2d and BatchNorm2d below `module` by its 3D counterpart, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(
                module, name, _conv3d(child) if conv == "3d" else PlaneConv(child, PLANE_AXES[conv])
            )
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _batch_norm3d(child))
        else:
            _convert(child, conv)


def _conv3d(conv: nn.Conv2d) -> nn.Conv3d:
    """A k x k x k convolution of the same channels, stride and padding; timm's init in 3D."""
    out = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[0],
        stride=conv.stride[0],
        padding=conv.padding[0],
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(out.weight, mode="fan_out", nonlinearity="relu")
    if out.bias is not None:
        nn.init.zeros_(out.bias)
    return out


def _batch_norm3d(norm: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """The same normalisation over volumes; its affine parameters kept (timm zeroes some)."""
    out = nn.BatchNorm3d(norm.num_features, eps=norm.eps, momentum=norm.momentum)
    out.load_state_dict(norm.state_dict())
    return out
