import pytest
import torch

from n2n_train.config import UNetConfig
from n2n_train.unet import UNet


@pytest.mark.parametrize("hw", [(4, 4), (32, 32), (36, 20)])
def test_output_has_input_shape(hw):
    model = UNet().eval()
    x = torch.rand(2, 3, *hw)
    assert model(x).shape == x.shape


def test_study_unet_layers():
    model = UNet(UNetConfig())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # 3 down + 2 up 3×3 convolutions, then one 1×1 head
    assert [c.kernel_size for c in convs] == [(3, 3)] * 5 + [(1, 1)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 32, 16, 3]
    assert not any(
        isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout2d)) for m in model.modules()
    )
    assert model.stride == 4


def test_stride_follows_levels():
    assert UNet(UNetConfig(features=(4, 8, 16, 32, 64))).stride == 16


def test_residual_unet_adds_its_head_to_the_input():
    torch.manual_seed(0)
    model = UNet(UNetConfig(features=(4, 8), residual=True)).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
        assert torch.equal(model(x), x)  # a zero head leaves the image as it is
        torch.nn.init.constant_(model.head.bias, 0.25)
        assert torch.allclose(model(x), x + 0.25)
