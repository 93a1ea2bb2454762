"""The clients' retry policy (consensus.retry), decision by decision."""

import random

from consensus.retry import Retrier, RetryPolicy

NODES = ["n1", "n2", "n3"]


def _retrier(**policy: float) -> Retrier:
    return Retrier(NODES, random.Random(7), RetryPolicy(**policy))


def test_backoff_doubles_up_to_its_cap_with_jitter_below_it():
    r = _retrier(backoff_base_ms=10, backoff_max_ms=100, jitter=0.5)
    for retry, cap in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        waits = [r.backoff(retry) for _ in range(50)]
        assert all(cap / 2 <= w <= cap for w in waits), (retry, waits)
        assert len(set(waits)) > 1  # jittered
    same = [Retrier(NODES, random.Random(7)).backoff(3) for _ in range(2)]
    assert same[0] == same[1]  # the injected rng decides


def test_attempt_timeout_adapts_within_bounds_and_the_deadline():
    r = _retrier(min_attempt_ms=60, max_attempt_ms=250)
    assert r.attempt_timeout(10_000) == 250  # nothing measured yet
    for _ in range(20):
        r.on_reply_from("n1", 5.0)
    assert r.attempt_timeout(10_000) == 60  # fast answers: the floor
    for _ in range(20):
        r.on_reply_from("n1", 400.0)
    assert r.attempt_timeout(10_000) == 250  # never above the cap
    assert r.attempt_timeout(30) == 30  # nor past the overall deadline


def test_a_timeout_suspects_the_node_until_it_shows_life():
    r = _retrier()
    r.on_reply_from("n1", 5.0)
    assert r.first_target(0.0) == "n1"
    assert r.on_timeout(100.0, "n1") == "n2"  # the next live node, not the silent one
    assert r.is_down(100.0, "n1") and r.leader_hint is None
    r.observe_status(150.0, "n1", "follower", 2, "n3")
    assert not r.is_down(150.0, "n1")


def test_redirects_are_hints_unless_they_name_a_node_known_down():
    r = _retrier()
    assert r.on_redirect(0.0, "n2", "n3") == ("n3", False)  # follow at once
    r.on_timeout(10.0, "n3")
    target, back_off = r.on_redirect(20.0, "n1", "n3")  # a stale hint names the dead leader
    assert back_off and target == "n2"
    assert r.on_redirect(30.0, "n2", None) == ("n1", True)  # nobody leads yet: back off


def test_status_gives_the_leader_and_silence_marks_a_node_down():
    r = _retrier(down_after_ms=200)
    for nid, role in [("n1", "follower"), ("n2", "leader"), ("n3", "follower")]:
        r.observe_status(0.0, nid, role, 4, "n2")
    assert r.status_leader(100.0) == "n2" and r.first_target(100.0) == "n2"
    r.observe_status(250.0, "n1", "candidate", 5, None)
    r.observe_status(250.0, "n3", "follower", 5, None)
    assert r.is_down(250.0, "n2")  # no status for 250 ms
    assert r.status_leader(250.0) is None
    assert r.next_target(250.0, avoid="n1") == "n3"
    r.observe_status(300.0, "n3", "leader", 5, "n3")
    assert r.first_target(300.0) == "n3"


def test_a_repeated_old_status_does_not_revive_a_suspect():
    r = _retrier()
    r.observe_status(100.0, "n1", "leader", 3, "n1")
    r.on_timeout(400.0, "n1")
    r.observe_status(100.0, "n1", "leader", 3, "n1")  # the feed repeats what it had
    r.observe_status(390.0, "n1", "leader", 3, "n1")  # published before the timeout
    assert r.is_down(410.0, "n1")


def test_a_node_publishing_slowly_is_not_taken_for_down():
    r = _retrier(down_after_ms=200)
    r.observe_status(0.0, "n1", "leader", 1, "n1")
    r.observe_status(200.0, "n1", "leader", 1, "n1")  # every 200 ms (`cluster up`'s nodes)
    assert not r.is_down(450.0, "n1")
    assert not r.is_down(790.0, "n1")
    assert r.is_down(810.0, "n1")  # three intervals without a word
