import pytest

from capfilt.pipeline.policy import Candidate, select

W = lambda s: Candidate("web text", s, "web")  # noqa: E731
S = lambda s, i=0: Candidate(f"synthetic {i}", s, "synthetic")  # noqa: E731

# (web, synthetic, policy, threshold, margin) -> (chosen text or None, reason, kept texts)
CASES = [
    (
        "best picks the highest",
        W(0.6),
        [S(0.9, 1), S(0.7, 2)],
        "best",
        0.5,
        0.0,
        "synthetic 1",
        "kept",
        ["synthetic 1"],
    ),
    ("best keeps web when it wins", W(0.95), [S(0.9)], "best", 0.5, 0.0, "web text", "kept", ["web text"]),
    ("tie goes to web", W(0.8), [S(0.8)], "best", 0.5, 0.0, "web text", "kept", ["web text"]),
    (
        "tie among synthetic goes to the first",
        None,
        [S(0.7, 1), S(0.7, 2)],
        "best",
        0.5,
        0.0,
        "synthetic 1",
        "kept",
        ["synthetic 1"],
    ),
    ("missing web caption", None, [S(0.4, 1), S(0.6, 2)], "best", 0.5, 0.0, "synthetic 2", "kept", ["synthetic 2"]),
    ("all under threshold", W(0.2), [S(0.3), S(0.49)], "best", 0.5, 0.0, None, "below_threshold", []),
    ("threshold is inclusive", W(0.5), [], "best", 0.5, 0.0, "web text", "kept", ["web text"]),
    ("web within margin is kept", W(0.7), [S(0.75)], "best", 0.5, 0.1, "web text", "kept", ["web text"]),
    ("web outside margin loses", W(0.6), [S(0.75)], "best", 0.5, 0.1, "synthetic 0", "kept", ["synthetic 0"]),
    ("margin needs web over threshold", W(0.45), [S(0.5)], "best", 0.5, 0.1, "synthetic 0", "kept", ["synthetic 0"]),
    ("nothing to choose from", None, [], "best", 0.5, 0.0, None, "no_caption", []),
    (
        "all keeps every passing one",
        W(0.6),
        [S(0.9, 1), S(0.3, 2), S(0.5, 3)],
        "all",
        0.5,
        0.0,
        "synthetic 1",
        "kept",
        ["web text", "synthetic 1", "synthetic 3"],
    ),
    ("all under threshold drops", W(0.1), [S(0.2)], "all", 0.5, 0.0, None, "below_threshold", []),
    ("score_only never drops", W(0.1), [S(0.2)], "score_only", 0.5, 0.0, "synthetic 0", "kept", ["synthetic 0"]),
    ("score_only without candidates", None, [], "score_only", 0.5, 0.0, None, "no_caption", []),
]


@pytest.mark.parametrize(
    "name,web,synthetic,policy,threshold,margin,chosen,reason,kept", CASES, ids=[c[0] for c in CASES]
)
def test_policy(name, web, synthetic, policy, threshold, margin, chosen, reason, kept):
    decision = select(web, synthetic, policy, threshold, margin)
    assert (decision.chosen.text if decision.chosen else None) == chosen
    assert decision.reason == reason
    assert [c.text for c in decision.kept] == kept


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown policy"):
        select(W(0.9), [], "majority")
