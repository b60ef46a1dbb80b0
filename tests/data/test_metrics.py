import numpy as np
import pytest

from edgeret.data.metrics import rank_corpus, retrieval_metrics, topk_overlap


def test_rank_corpus_orders_best_first_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [0.3, 0.2, 0.1, 0.0]])
    ranked = rank_corpus(scores, k=3)
    assert ranked.tolist() == [[1, 3, 2], [0, 1, 2]]


def test_hand_computed_metrics():
    corpus = ["a", "b", "c", "d"]
    # q1: relevant a, ranked 2nd; q2: relevant {c, d}, ranked 1st and 4th; q3: relevant b, absent from top 3
    ranked = np.array([[1, 0, 2, 3], [2, 0, 1, 3], [0, 2, 3, 1]])
    relevant = {"q1": {"a"}, "q2": {"c", "d"}, "q3": {"b"}}
    m = retrieval_metrics(ranked, ["q1", "q2", "q3"], corpus, relevant, ks=(1, 2, 3), cutoff=3)
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["mrr@3"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    # nDCG@3: q1 = (1/log2 3) / 1; q2 = 1 / (1 + 1/log2 3) (d is 4th, beyond the cutoff); q3 = 0
    q1 = 1 / np.log2(3)
    q2 = 1 / (1 + 1 / np.log2(3))
    assert m["ndcg@3"] == pytest.approx((q1 + q2) / 3)


def test_perfect_ranking_scores_one():
    ranked = np.array([[0, 1], [1, 0]])
    m = retrieval_metrics(ranked, ["x", "y"], ["a", "b"], {"x": {"a"}, "y": {"b"}}, ks=(1,), cutoff=2)
    assert m == {"recall@1": 1.0, "mrr@2": 1.0, "ndcg@2": 1.0}


def test_topk_overlap():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 2, 9], [7, 8, 9]])
    assert topk_overlap(a, b, k=3) == pytest.approx((2 / 3 + 0) / 2)
