"""medprobe.backbones.preprocess: uint8 batches to normalized model input for every resize mode."""

from __future__ import annotations

import pytest
import torch

from medprobe.backbones.preprocess import PreprocessConfig, preprocess
from medprobe.backbones.registry import RESIZE_MODES

CFG = dict(input_size=56, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_shapes_and_normalization(channels, mode):
    images = torch.full((4, 28, 28, channels), 255, dtype=torch.uint8)
    out = preprocess(images, PreprocessConfig(**CFG, resize=mode))
    assert out.shape == (4, 3, 56, 56) and out.dtype == torch.float32
    centre = out[:, :, 28, 28]
    expected = (1 - torch.tensor(CFG["mean"])) / torch.tensor(CFG["std"])
    torch.testing.assert_close(centre, expected.expand(4, 3))


def test_gray_is_repeated_to_three_identical_channels():
    images = torch.randint(0, 256, (2, 28, 28, 1), dtype=torch.uint8)
    out = preprocess(images, PreprocessConfig(input_size=28, mean=(0.5,) * 3, std=(0.5,) * 3))
    torch.testing.assert_close(out[:, 0], out[:, 2])
    torch.testing.assert_close(out[:, 0], images[..., 0].float() / 127.5 - 1)


def test_pad_centres_the_image_on_black():
    images = torch.full((1, 28, 28, 1), 255, dtype=torch.uint8)
    out = preprocess(
        images, PreprocessConfig(input_size=56, mean=(0.0,) * 3, std=(1.0,) * 3, resize="pad")
    )
    assert out[0, 0, 14:42, 14:42].eq(1).all()
    assert out[0, 0, :14].eq(0).all() and out[0, 0, 42:].eq(0).all()


def test_bicubic_stays_in_pixel_range_at_sharp_edges():
    images = torch.zeros((1, 28, 28, 1), dtype=torch.uint8)
    images[:, :, 14:] = 255
    out = preprocess(images, PreprocessConfig(input_size=224, mean=(0.0,) * 3, std=(1.0,) * 3))
    assert out.min() >= 0 and out.max() <= 1


def test_bad_input_and_mode_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        preprocess(torch.zeros((1, 28, 28, 1)), PreprocessConfig(**CFG))
    with pytest.raises(ValueError, match="bicubic"):
        PreprocessConfig(**CFG, resize="lanczos")
    with pytest.raises(ValueError, match="cannot zero-pad"):
        preprocess(
            torch.zeros((1, 64, 64, 1), dtype=torch.uint8), PreprocessConfig(**CFG, resize="pad")
        )
