import pytest
import torch

from n2n_train.augment import (
    blur_one_side,
    dihedral,
    gaussian_blur,
    random_dihedral,
    swap_half,
)
from n2n_train.config import TrainConfig
from n2n_train.loop import augment


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_eight_dihedral_transforms_are_distinct_and_invertible():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    outs = [dihedral(x, k) for k in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    assert torch.equal(dihedral(dihedral(x, 1), 3), x)
    assert torch.equal(dihedral(dihedral(x, 5), 5), x)  # a flip after a turn is its own inverse


def test_swap_half_exchanges_about_half_the_pairs_and_keeps_pairs_together():
    a, b = torch.zeros(1000, 1, 2, 2), torch.ones(1000, 1, 2, 2)
    inp, target = swap_half(a, b, _gen())
    swapped = inp[:, 0, 0, 0] == 1
    assert torch.equal(target[:, 0, 0, 0] == 0, swapped)
    assert 450 < int(swapped.sum()) < 550


def test_random_dihedral_gives_input_and_target_the_same_transform():
    x = torch.rand(64, 3, 8, 8, generator=_gen(1))
    inp, target = random_dihedral(x, x + 1, _gen())
    assert torch.equal(target, inp + 1)
    assert not torch.equal(inp, x)


def test_gaussian_blur_keeps_constants_and_mean_and_smooths_noise():
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 1.5])), flat, atol=1e-6)
    noise = torch.rand(2, 3, 32, 32, generator=_gen())
    out = gaussian_blur(noise, torch.tensor([0.5, 1.5]))
    assert out.shape == noise.shape
    assert float(out[1].std()) < float(out[0].std()) < float(noise.std())


def test_blur_one_side_blurs_one_side_of_the_chosen_pairs():
    x = torch.rand(200, 3, 8, 8, generator=_gen(1))
    inp, target = blur_one_side(x, x.clone(), 0.5, _gen())
    changed_inp = (inp != x).flatten(1).any(1)
    changed_tgt = (target != x).flatten(1).any(1)
    assert not bool((changed_inp & changed_tgt).any())
    assert 70 < int((changed_inp | changed_tgt).sum()) < 130
    assert int(changed_tgt.sum()) > 20
    inp, target = blur_one_side(x, x.clone(), 0.5, _gen(), input_only=True)
    assert torch.equal(target, x) and not torch.equal(inp, x)


@pytest.mark.parametrize(
    "changes", [{}, {"swap": True}, {"dihedral": True}, {"blur_prob": 0.5}, {"target": "clean"}]
)
def test_augment_applies_only_what_the_config_turns_on(changes):
    x = torch.rand(32, 3, 8, 8, generator=_gen(1))
    inp, target = augment(x, x + 1, TrainConfig(**changes), _gen())
    if not changes or changes == {"target": "clean"}:
        assert torch.equal(inp, x) and torch.equal(target, x + 1)
    else:
        assert not (torch.equal(inp, x) and torch.equal(target, x + 1))
