import math

import pytest
import torch
import torch.nn.functional as F

from edgeret.distill.losses import LossConfig, affinity_kl, contrastive_loss, cosine_loss, distill_loss


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _groups(seed=0, n=6, d=16):
    return {name: _unit(n, d, seed=seed + i) for i, name in enumerate(("image", "caption", "query", "document"))}


def test_cosine_loss_hand_checked():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert cosine_loss(s, t).item() == pytest.approx(0.5)  # rows: 1 - 1 = 0 and 1 - 0 = 1
    assert cosine_loss(s, t, mse=True).item() == pytest.approx(1.0)  # |(0,1) - (1,0)|^2 = 2, mean over 2 rows


def test_affinity_kl_hand_checked():
    t_q, t_k = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s_q, s_k = torch.tensor([[0.0, 1.0]]), t_k
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    q = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    expected = float((p * (p.log() - q.log())).sum())
    assert affinity_kl(s_q, s_k, t_q, t_k, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)
    assert affinity_kl(t_q, t_k, t_q, t_k, temperature=0.05).item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_loss_hand_checked():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # logits = identity; each row: -log(e / (e + 1))
    assert contrastive_loss(q, q, temperature=1.0).item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-5)
    # same label: both keys are positives, targets uniform
    labels = torch.tensor([3, 3])
    expected = -0.5 * (math.log(math.e / (math.e + 1)) + math.log(1 / (math.e + 1)))
    assert contrastive_loss(q, q, 1.0, labels).item() == pytest.approx(expected, rel=1e-5)


def test_identical_student_and_teacher_give_zero_cosine_and_kl():
    teacher = _groups()
    student = {k: v * 3.0 for k, v in teacher.items()}  # raw student features need not be normalised
    terms = distill_loss(student, teacher, LossConfig(contrastive=0.0))
    assert set(terms) == {"cos_image", "cos_text", "aff_t2i", "aff_i2t", "aff_t2t", "total"}
    for value in terms.values():
        assert value.item() == pytest.approx(0.0, abs=1e-5)


def test_different_student_gives_positive_terms_and_weights_combine():
    teacher, student = _groups(0), _groups(10)
    config = LossConfig(cosine=2.0, affinity=0.5, contrastive=0.25)
    terms = distill_loss(student, teacher, config)
    for name in ("cos_image", "cos_text", "aff_t2i", "aff_i2t", "aff_t2t", "contrastive"):
        assert terms[name].item() > 0
    expected = 2.0 * (terms["cos_image"] + terms["cos_text"]) + 0.5 * (
        terms["aff_t2i"] + terms["aff_i2t"] + terms["aff_t2t"]) + 0.25 * terms["contrastive"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    no_affinity = distill_loss(student, teacher, LossConfig(affinity=0.0))
    assert no_affinity["total"].item() == pytest.approx((terms["cos_image"] + terms["cos_text"]).item(), rel=1e-6)


def test_missing_groups_are_skipped():
    teacher = _groups()
    only_text = {k: teacher[k] for k in ("query", "document")}
    terms = distill_loss(only_text, only_text, LossConfig())
    assert set(terms) == {"cos_text", "aff_t2t", "total"}


def test_matryoshka_terms_average_over_prefixes():
    teacher, student = _groups(0, d=16), _groups(5, d=16)
    full = distill_loss(student, teacher, LossConfig())
    both = distill_loss(student, teacher, LossConfig(matryoshka_dims=[4]))
    prefix = {k: v[:, :4] for k, v in student.items()}
    manual = affinity_kl(F.normalize(prefix["caption"], dim=-1), F.normalize(prefix["image"], dim=-1),
                         teacher["caption"], teacher["image"], 0.05)
    assert both["aff_t2i"].item() == pytest.approx((full["aff_t2i"].item() + manual.item()) / 2, rel=1e-5)
    assert both["cos_image"].item() == pytest.approx(full["cos_image"].item())  # full dim only by default
    with_cos = distill_loss(student, teacher, LossConfig(matryoshka_dims=[4], matryoshka_cosine=True))
    assert with_cos["cos_image"].item() != pytest.approx(full["cos_image"].item())


def test_gradients_flow_to_every_student_group():
    teacher = _groups()
    student = {k: torch.randn(6, 16, requires_grad=True) for k in teacher}
    distill_loss(student, teacher, LossConfig(contrastive=0.1, matryoshka_dims=[8]))["total"].backward()
    for name, tensor in student.items():
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_all_zero_weights_is_an_error():
    teacher = _groups()
    with pytest.raises(ValueError, match="weight 0"):
        distill_loss(teacher, teacher, LossConfig(cosine=0.0, affinity=0.0))
