"""Per-origin sequence bookkeeping, without Redis: what is new, what is a duplicate, how big a gap is."""

from __future__ import annotations

from aifactory.bridge.sequence import OriginSequences


def test_first_envelope_only_sets_the_baseline() -> None:
    seqs = OriginSequences()
    assert seqs.advance("a", 41, settled=False) == 0
    assert seqs.last("a") == 41 and len(seqs) == 1


def test_consecutive_events_miss_nothing_and_a_jump_counts_the_missing() -> None:
    seqs = OriginSequences()
    seqs.advance("a", 1, settled=False)
    assert seqs.advance("a", 2, settled=False) == 0
    assert seqs.advance("a", 5, settled=False) == 2  # 3 and 4 never arrived
    assert seqs.last("a") == 5


def test_duplicates_and_late_envelopes_are_not_new_and_do_not_move_the_baseline() -> None:
    seqs = OriginSequences()
    seqs.advance("a", 7, settled=False)
    assert seqs.advance("a", 7, settled=False) is None
    assert seqs.advance("a", 3, settled=True) is None
    assert seqs.last("a") == 7


def test_a_probe_reports_settled_seqs_so_one_ahead_is_a_gap_of_one() -> None:
    seqs = OriginSequences()
    seqs.advance("a", 4, settled=False)
    assert seqs.advance("a", 5, settled=True) == 1  # event 5 was dropped by its origin
    assert seqs.advance("a", 6, settled=False) == 0  # the event after it follows the probe's baseline


def test_origins_are_independent() -> None:
    seqs = OriginSequences()
    seqs.advance("a", 10, settled=False)
    seqs.advance("b", 1, settled=False)
    assert seqs.advance("b", 2, settled=False) == 0
    assert seqs.advance("a", 12, settled=False) == 1


def test_the_least_recently_seen_origin_is_forgotten_first() -> None:
    seqs = OriginSequences(max_origins=2)
    seqs.advance("a", 1, settled=False)
    seqs.advance("b", 1, settled=False)
    seqs.advance("a", 2, settled=False)  # a is now the most recently seen
    seqs.advance("c", 1, settled=False)  # evicts b
    assert len(seqs) == 2 and seqs.last("b") is None and seqs.last("a") == 2
    assert seqs.advance("b", 9, settled=False) == 0  # a forgotten origin starts a fresh baseline


def test_one_forged_huge_seq_cannot_silence_an_origin() -> None:
    """Issue #10: `seq 1e18` on a real origin id made every later real event a 'duplicate'."""
    seqs = OriginSequences()
    seqs.advance("a", 10, settled=False)
    assert seqs.advance("a", 10**18, settled=False) == 10**18 - 11  # believed once (a resync)...
    assert seqs.advance("a", 11, settled=False) == 0  # ...but the real next event re-baselines
    assert seqs.advance("a", 12, settled=False) == 0 and seqs.last("a") == 12
    assert seqs.advance("a", 12, settled=False) is None  # real duplicates are still dropped


def test_a_duplicate_within_the_window_is_dropped_and_far_below_re_baselines() -> None:
    seqs = OriginSequences(duplicate_window=100)
    seqs.advance("a", 1000, settled=False)
    assert seqs.advance("a", 900, settled=False) is None
    assert seqs.advance("a", 899, settled=True) == 0 and seqs.last("a") == 899
