"""The segment ledger against both server numberings, with random inputs and timing."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from pipecat_cartesia_ctx.ledger import Segment, SegmentLedger


@dataclass(frozen=True)
class Sent:
    kind: str  # push, flush, close
    text: str = ""


def server_events(inputs: list[Sent], implicit: bool, flush_done_at_close: bool):
    """What a server of each numbering sends, as (input index it needs, event) pairs.

    A push with words makes two chunks; every event can only follow its input.
    """
    events, flush_id = [], 1
    for i, sent in enumerate(inputs):
        if sent.kind == "push" and any(ch.isalnum() for ch in sent.text):
            events += [(i, ("chunk", flush_id, sent))] * 2
        # Implicit numbering gives every non-empty push an id too; both give every flush one.
        if sent.kind == "flush" or (sent.kind == "push" and implicit and sent.text):
            events.append((i, ("flush_done", flush_id, None)))
            flush_id += 1
        elif sent.kind == "close":
            if flush_done_at_close:
                events.append((i, ("flush_done", flush_id, None)))
            events.append((i, ("done", None, None)))
    return events


words = st.sampled_from(["Hello ", "there. ", "How ", "are you? ", "<break time='1s'/> ", "  "])
# Documented numbering: any pushes and flushes (whitespace-only pushes are never sent).
manual_turns = st.lists(
    st.one_of(words.filter(str.strip).map(lambda t: Sent("push", t)), st.just(Sent("flush"))),
    max_size=25,
)
# Implicit numbering is only met with one push per segment (max_buffer_delay_ms 0).
implicit_turns = st.lists(words.filter(str.strip), max_size=10).map(
    lambda texts: [x for t in texts for x in (Sent("push", t), Sent("flush"))][:-1]
)
turns = st.one_of(st.tuples(manual_turns, st.just(False)), st.tuples(implicit_turns, st.just(True)))


@given(turns, st.booleans(), st.randoms(use_true_random=False))
def test_every_chunk_is_labelled_and_every_segment_reported_once_in_order(turn, at_close, rnd):
    inputs, implicit = turn
    inputs = [*inputs, Sent("close")]
    events = server_events(inputs, implicit, at_close)
    ledger = SegmentLedger()
    segment_of_push: dict[int, int] = {}
    expected_texts: dict[int, str] = {}
    log: list[tuple[str, int]] = []  # ("audio", segment) / ("report", segment)
    sent = 0
    pending = list(events)
    current = 1

    def send_next():
        nonlocal sent, current
        item = inputs[sent]
        if item.kind == "push":
            ledger.pushed(item.text)
            segment_of_push[id(item)] = current
            expected_texts[current] = expected_texts.get(current, "") + item.text
        elif item.kind == "flush":
            assert ledger.flushed() == current
            current += 1
        else:
            ledger.closed()
        sent += 1

    while pending or sent < len(inputs):
        can_receive = pending and pending[0][0] < sent
        if sent < len(inputs) and (not can_receive or rnd.random() < 0.5):
            send_next()
            continue
        _, (kind, flush_id, push) = pending.pop(0)
        if kind == "chunk":
            label, done = ledger.chunk(flush_id)
            log += [("report", s.number) for s in done]
            assert label == segment_of_push[id(push)], "audio labelled with its push's segment"
            log.append(("audio", label))
        elif kind == "flush_done":
            log += [("report", s.number) for s in ledger.flush_done(flush_id)]
        else:
            log += [("report", s.number) for s in ledger.done()]

    reports = [n for kind, n in log if kind == "report"]
    assert reports == sorted(expected_texts), "each segment with text, once, in order"
    for n in reports:
        at = log.index(("report", n))
        assert ("audio", n) not in log[at:], "reported after its last audio"
        assert all(s > n for kind, s in log[at:] if kind == "audio"), "later audio comes after"
    # Texts are exactly what was pushed into each segment.
    ledger_texts = {n: ledger.text(n) for n in expected_texts}
    assert ledger_texts == expected_texts


def test_documented_numbering_reports_at_flush_done_and_the_last_at_done():
    ledger = SegmentLedger()
    ledger.pushed("One. ")
    assert ledger.flushed() == 1
    ledger.pushed("Two.")
    ledger.closed()
    assert ledger.chunk(1) == (1, [])
    assert ledger.flush_done(1) == [Segment(1, "One. ")]
    assert ledger.chunk(2) == (2, [])
    assert ledger.done() == [Segment(2, "Two.")]
    assert not ledger.implicit


def test_a_new_flush_id_completes_the_previous_segment_without_flush_done():
    ledger = SegmentLedger()
    ledger.pushed("One. ")
    ledger.flushed()
    ledger.pushed("Two. ")
    assert ledger.chunk(1) == (1, [])
    assert ledger.chunk(2) == (2, [Segment(1, "One. ")])


def test_implicit_numbering_is_detected_and_relabelled():
    ledger = SegmentLedger()
    ledger.pushed("Whole first sentence. ")
    ledger.flushed()
    ledger.pushed("Second sentence. ")
    ledger.flushed()
    # Server numbering: push=1, flush=2, push=3, flush=4.
    assert ledger.chunk(1) == (1, [])
    assert ledger.flush_done(1) == [Segment(1, "Whole first sentence. ")]
    assert ledger.flush_done(2) == []
    assert ledger.implicit, "a flush_done with no audio for a segment with words"
    assert ledger.chunk(3) == (2, [])
    assert ledger.flush_done(3) == []
    assert ledger.flush_done(4) == [Segment(2, "Second sentence. ")]


def test_a_missing_flush_id_keeps_the_current_segment():
    ledger = SegmentLedger()
    ledger.pushed("Text.")
    assert ledger.chunk(None) == (1, [])
    assert ledger.chunk(None) == (1, [])
    assert ledger.done() == [Segment(1, "Text.")]


def test_segments_without_text_are_never_reported():
    ledger = SegmentLedger()
    assert ledger.flushed() == 1  # a flush with nothing pushed
    ledger.pushed("Words.")
    assert ledger.flush_done(1) == []
    assert ledger.chunk(2) == (2, [])
    assert ledger.done() == [Segment(2, "Words.")]
