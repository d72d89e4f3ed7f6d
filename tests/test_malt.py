"""MALT: targets ranked by the linearized margin, then pyautoattack's APGD-T on the top k.

A linear model of 20 classes is built so that the class its linearization says is nearest has the lowest logit
of all: APGD-T on AutoAttack's 9 highest-logit targets cannot flip the point within eps, MALT can.
"""
import pytest
import torch

from bench.attacks.malt import linearized_margins, ranked_targets
from bench.attacks.registry import make_attack

EPS = 8 / 255


class Linear(torch.nn.Module):
    """z = W (x - 0.5) + b on 3x8x8 images, evaluated at x = 0.5 where z = b: class 0 wins (1.0); classes 1-9 come
    next (0.5) but their rows equal class 0's, so no input moves them closer; classes 10-18 sit at -3 and class 19
    at -2.5, 3.5 below class 0, but its row differs from class 0's by -1 on each of the 192 pixels: lowering every
    pixel by eps (Linf 8/255) raises z_19 - z_0 by 192 x 8/255 = 6.0, and an L2 step of 0.5 by sqrt(192) x 0.5 =
    6.9. The linearized margin puts class 19 first (3.5 / 192 < eps); the logits put it 11th, outside AutoAttack's
    9 targets."""

    def __init__(self):
        super().__init__()
        w = torch.zeros(20, 3 * 8 * 8)
        w[19] = -1.0
        b = torch.full((20,), -3.0)
        b[0], b[1:10], b[19] = 1.0, 0.5, -2.5
        self.w, self.b = torch.nn.Parameter(w), torch.nn.Parameter(b)

    def forward(self, x):
        return (x - 0.5).flatten(1) @ self.w.T + self.b


def test_the_nearest_class_by_linearized_margin_is_not_among_the_highest_logits():
    model = Linear().eval()
    x, y = torch.full((4, 3, 8, 8), 0.5), torch.zeros(4, dtype=torch.long)
    assert model(x)[0].argsort(descending=True).tolist().index(19) == 10  # 11th: outside the 9 targets
    m = linearized_margins(model, x, y, "Linf")
    assert torch.isinf(m[:, 0]).all() and (m[:, 1:19] > 1e6).all()  # rows equal to y's: out of reach
    assert torch.allclose(m[:, 19], torch.full((4,), 3.5 / 192))  # the gap over the L1 norm of its gradient
    assert (ranked_targets(model, x, y, "Linf", 5)[:, 0] == 19).all()
    m2 = linearized_margins(model, x, y, "L2")  # L2's dual is L2
    assert torch.allclose(m2[:, 19], torch.full((4,), 3.5 / 192 ** 0.5))


@pytest.mark.parametrize("norm,eps", [("Linf", EPS), ("L2", 0.5)])
def test_malt_finds_the_point_that_apgd_t_misses(norm, eps):
    """pyautoattack's APGD-T, as AutoAttack runs it, targets classes 1-9 and fools none of the points; MALT's
    first target is class 19, and it fools every point, inside the ball and [0,1]."""
    from bench.attacks.autoattack import run_autoattack

    model = Linear().eval()
    x, y = torch.full((6, 3, 8, 8), 0.5), torch.zeros(6, dtype=torch.long)
    _, info = run_autoattack(model, x, y, norm=norm, eps=eps, stages=("apgd-t",), num_classes=20)
    assert info["stage_acc"]["apgd-t"] == 1.0  # APGD-T fooled none
    attack = make_attack("malt", norm=norm, eps=eps, num_classes=20)
    x_adv = attack(model, x, y)
    assert (model(x_adv).argmax(1) == 19).all()  # MALT fooled every point, towards class 19
    size = (x_adv - x).flatten(1).abs().amax(1) if norm == "Linf" else (x_adv - x).flatten(1).norm(dim=1)
    assert (size <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert attack.config["targets"] == 5 and attack.info == {"targets": 5}


def test_malt_is_a_worst_case_attack_but_not_robustbenchs():
    from bench.attacks.registry import ATTACKS, in_worst_case, label_of

    entry = ATTACKS["malt"]
    assert in_worst_case("malt") and not entry.robustbench and label_of("malt") == "MALT"
    assert set(entry.norms) == {"Linf", "L2", "L1"}
    assert make_attack("malt", norm="L1", eps=12.0, num_classes=4).config["targets"] == 3  # at most classes - 1
