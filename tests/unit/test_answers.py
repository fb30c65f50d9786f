"""The answers kept for feedback (`gateway.pipeline.answers`): the last `keep`, each judged
once, by the client that asked."""

from __future__ import annotations

from gateway.pipeline.answers import Answers


def test_an_answer_is_judged_once_and_then_known_as_judged() -> None:
    a = Answers(keep=3)
    a.remember("r1", "route", "t@p", "web")
    assert a.owner("r1") == "web" and a.owner("nope") is None
    assert a.judge("r1") == ("route", "t@p")
    assert a.judge("r1") is None and a.judged("r1") and a.owner("r1") is None
    assert a.judge("nope") is None and not a.judged("nope")


def test_only_the_last_keep_answers_are_remembered() -> None:
    a = Answers(keep=3)
    for i in range(5):
        a.remember(f"r{i}", "route", f"t{i}")
    assert [a.owner(f"r{i}") for i in range(5)] == [None, None, "", "", ""]
    a.judge("r3")  # a judged answer's slot is reused without harm
    for i in range(5, 8):
        a.remember(f"r{i}", "route", f"t{i}")
    assert [a.owner(f"r{i}") for i in range(8)] == [None] * 5 + ["", "", ""]
    assert a.judge("r7") == ("route", "t7")


def test_an_id_remembered_again_lives_from_its_last_answer() -> None:
    """A caller may send its own x-request-id twice: the later answer is the one kept, for
    `keep` more answers, and the earlier one's eviction does not take it."""
    a = Answers(keep=3)
    a.remember("dup", "route", "first", "web")
    a.remember("x", "route", "t")
    a.remember("dup", "route", "second", "app")
    a.remember("y", "route", "t")  # the first "dup" slot is reused here
    assert a.owner("dup") == "app"
    a.remember("z", "route", "t")
    assert a.owner("dup") == "app"
    a.remember("w", "route", "t")  # now three answers after the second "dup"
    assert a.owner("dup") is None


def test_judged_verdicts_are_remembered_up_to_keep() -> None:
    a = Answers(keep=2)
    for i in range(3):
        a.remember(f"r{i}", "route", "t")
        a.judge(f"r{i}")
    assert [a.judged(f"r{i}") for i in range(3)] == [False, True, True]
