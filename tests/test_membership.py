"""Unit tests for consensus/membership.py: quorums while joint, parsing, and clear errors."""

from __future__ import annotations

import pytest

from consensus.membership import Change, ChangeError, Membership, is_config_text

A = frozenset({"n1", "n2", "n3"})


@pytest.mark.parametrize(("granted", "expected"), [
    ({"n1", "n2"}, True),
    ({"n1"}, False),
    ({"n1", "n4"}, False),  # n4 is not a voter: it never counts
    ({"n1", "n2", "n3"}, True),
])
def test_simple_quorum_is_a_majority_of_voters(granted, expected):
    assert Membership(A).has_quorum(granted) is expected


@pytest.mark.parametrize(("granted", "expected"), [
    # C_old = n1,n2,n3; C_new = n1,n4,n5: a majority of each is needed (thesis §4.3).
    ({"n1", "n2"}, False),  # majority of old only
    ({"n4", "n5"}, False),  # majority of new only
    ({"n1", "n2", "n4"}, True),
    ({"n2", "n3", "n4", "n5"}, True),
    ({"n1", "n4"}, False),  # n1 is in both, but {n1} is no majority of either
])
def test_joint_quorum_needs_both_majorities(granted, expected):
    joint = Membership(frozenset({"n1", "n4", "n5"}), old=A)
    assert joint.joint
    assert joint.has_quorum(granted) is expected


def test_learners_never_count():
    m = Membership(A, learners=frozenset({"n4", "n5"}))
    assert not m.has_quorum({"n1", "n4", "n5"})
    assert m.members == A | {"n4", "n5"} and m.voting == A
    assert not m.is_voter("n4")


def test_committed_index_is_the_lower_of_the_two_halves_while_joint():
    joint = Membership(frozenset({"n1", "n4", "n5"}), old=A)
    match = {"n1": 9, "n2": 9, "n3": 2, "n4": 5, "n5": 1}
    # old: 9, 9, 2 -> 9; new: 9, 5, 1 -> 5
    assert joint.committed_index(match) == 5
    assert Membership(A).committed_index(match) == 9
    assert Membership(A).committed_index({}) == 0


def test_text_round_trip_and_command_text():
    m = Membership(frozenset({"n1", "n4"}), old=A, learners=frozenset({"n7"}))
    assert m.to_text() == "voters=n1,n4 old=n1,n2,n3 learners=n7"
    assert Membership.from_text(m.to_text()) == m
    assert Membership.from_text(m.command_text()) == m
    assert is_config_text(m.command_text()) and not is_config_text("SET x = 1")


@pytest.mark.parametrize(("text", "why"), [
    ("CONFIG old=n1", "no voters"),
    ("CONFIG voters=n1 voters=n2", "unexpected"),
    ("CONFIG voters=n1 bogus=n2", "unexpected"),
    ("CONFIG voters=", "at least one voter"),
    ("CONFIG voters=n1 learners=n1", "a voter and a learner"),
])
def test_malformed_configurations_say_why(text, why):
    with pytest.raises(ChangeError, match=why):
        Membership.from_text(text)


@pytest.mark.parametrize(("text", "add", "remove", "target"), [
    ("add n4", ("n4",), (), None),
    ("remove n2", (), ("n2",), None),
    ("replace n2 n7", ("n7",), ("n2",), None),
    ("transfer n3", (), (), "n3"),
    ("ADD n4", ("n4",), (), None),
])
def test_change_parsing(text, add, remove, target):
    c = Change.parse(text)
    assert (c.add, c.remove, c.target) == (add, remove, target)
    assert Change.parse(str(c)) == c


@pytest.mark.parametrize(("text", "why"), [
    ("", "unknown change"),
    ("grow n4", "unknown change"),
    ("add", "takes 1 node id"),
    ("add n4 n5", "takes 1 node id"),
    ("replace n2", "takes 2 node ids"),
    ("replace n2 n2", "two different nodes"),
])
def test_bad_changes_say_why(text, why):
    with pytest.raises(ChangeError, match=why):
        Change.parse(text)


def test_target_voters_and_refusals():
    m = Membership(A)
    assert m.target(Change.parse("add n4")) == A | {"n4"}
    assert m.target(Change.parse("remove n2")) == A - {"n2"}
    assert m.target(Change.parse("replace n2 n7")) == {"n1", "n3", "n7"}
    with pytest.raises(ChangeError, match="already a voter"):
        m.target(Change.parse("add n1"))
    with pytest.raises(ChangeError, match="not a voter"):
        m.target(Change.parse("remove n9"))
    with pytest.raises(ChangeError, match="no voter"):
        Membership(frozenset({"n1"})).target(Change.parse("remove n1"))
    with pytest.raises(ChangeError, match="joint"):
        Membership(frozenset({"n1"}), old=A).target(Change.parse("add n4"))
