import pytest
import torch

from n2n_train.config import TrainConfig
from n2n_train.losses import annealed_l0, learning_rate, training_loss, validation_loss


def test_losses_on_known_errors():
    pred, target = torch.zeros(1, 1, 1, 4), torch.tensor([0.1, -0.1, 0.3, 0.0]).view(1, 1, 1, 4)
    assert float(training_loss(pred, target, TrainConfig(loss="mse"), 0.0)) == pytest.approx(
        (0.01 + 0.01 + 0.09) / 4
    )
    assert float(training_loss(pred, target, TrainConfig(loss="l1"), 0.0)) == pytest.approx(0.5 / 4)
    assert validation_loss(pred, target, TrainConfig(loss="l0")) == pytest.approx(0.5 / 4)


def test_annealed_l0_goes_from_l2_to_a_count_of_errors():
    err = torch.tensor([0.0, 0.2, 0.5])
    assert float(annealed_l0(err, torch.zeros(3), 0.0)) == pytest.approx((0.04 + 0.25) / 3)
    assert float(annealed_l0(err, torch.zeros(3), 0.5)) == pytest.approx((0.2 + 0.5) / 3)
    assert float(annealed_l0(err, torch.zeros(3), 1.0)) == pytest.approx(1.0)


def test_annealed_l0_prefers_the_mode_of_impulse_targets():
    # 70 % of targets are 0.5, 30 % random: late in the annealing the mode wins over the mean.
    target = torch.cat([torch.full((70,), 0.5), torch.linspace(0.6, 1.0, 30)])
    candidates = torch.linspace(0.4, 0.9, 51)
    losses = [float(annealed_l0(c.expand(100), target, 0.9)) for c in candidates]
    best = float(candidates[min(range(51), key=losses.__getitem__)])
    assert best == pytest.approx(0.5, abs=0.011)
    assert float(target.mean()) > 0.55


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("none", [0.01, 0.01, 0.01, 0.01]),
        ("step", [0.01, 0.001, 0.0001, 0.0001]),
        ("cosine", [0.01, 0.005, 0.0014645, 0.0]),
    ],
)
def test_learning_rate_schedules(schedule, expected):
    cfg = TrainConfig(lr=0.01, schedule=schedule)
    got = [learning_rate(cfg, s, 100) for s in (0, 50, 75, 100)]
    assert got == pytest.approx(expected, abs=1e-7)
