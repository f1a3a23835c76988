"""Bad input never hurts: huge frames, odd text, and the turn after each, over real sockets."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pipecat.frames.frames import (
    ErrorFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.services.tts_service import TextAggregationMode
from pipecat.tests.utils import run_test
from pipeline_harness import running_pipeline
from service_helpers import audio, flush_dones, llm_turn, make_tts

from pipecat_cartesia_ctx.emulator import Pacing
from pipecat_cartesia_ctx.pacing import _slices
from pipecat_cartesia_ctx.protocol.text import ends_sentence, period_context
from pipecat_cartesia_ctx.service import SLICE_CHARACTERS

PARAGRAPH = (
    "Dr. Smith reviewed the results, e.g. the figures in table 3, and found them fine. "
    "To reset the router, do this: 1. unplug it, 2. wait ten seconds, 3. plug it back in. "
    "The meeting moved to Jan. 5 at 10 a.m. because the U.S. office was closed! "
    "Was the invoice paid? Yes, on Monday; the receipt is No. 4711.\n"
)
NEXT = "After that, a normal turn. It has two sentences."


def document(characters: int) -> str:
    return (PARAGRAPH * (characters // len(PARAGRAPH) + 1))[:characters].rstrip() + "."


def contexts_in_order(emu) -> list:
    return list(emu.record.contexts.values())


def assert_spoken_whole(down, record, text: str):
    """The turn's text went out exactly, came back as segments, and all its audio played."""
    assert record.outcome == "done"
    assert record.transcript == text
    assert "".join(f.text for f in flush_dones(down, record.context_id)) == text
    assert sum(len(f.audio) for f in audio(down, record.context_id)) == record.total_audio_bytes


def assert_no_generation_ends_at_a_non_sentence_period(record):
    """Cartesia speaks each generation apart: none may end at "Dr." or a list number."""
    for generation, following in zip(
        record.generations, [*record.generations[1:], ""], strict=True
    ):
        stripped = generation.rstrip()
        if generation.endswith("\n"):
            continue  # a line end is a generation boundary whatever precedes it
        if stripped.endswith(".") and not stripped.endswith(".."):
            word, before = period_context("\n" + stripped, len(stripped))
            nxt = following.lstrip()[:1]
            verdict = ends_sentence(word, before, None)
            if verdict is None:  # the next word decides, and the client waited for it
                verdict = ends_sentence(word, before, nxt)
            assert verdict, generation


def huge_llm_turn(text: str) -> list:
    return [LLMFullResponseStartFrame(), LLMTextFrame(text), LLMFullResponseEndFrame()]


@pytest.mark.parametrize(
    "frames",
    [huge_llm_turn, lambda text: [TTSSpeakFrame(text)]],
    ids=["LLMTextFrame", "TTSSpeakFrame"],
)
async def test_a_huge_frame_is_spoken_whole_and_the_next_turn_plays(make_emulator, frames):
    emu = await make_emulator()
    text = document(30_000)
    tts = make_tts(emu, sample_rate=8000)
    down, up = await run_test(tts, frames_to_send=[*frames(text), *llm_turn(NEXT)])
    assert not [f for f in down + up if isinstance(f, ErrorFrame)]
    huge, after = contexts_in_order(emu)
    assert_spoken_whole(down, huge, text)
    assert_spoken_whole(down, after, NEXT)
    assert_no_generation_ends_at_a_non_sentence_period(huge)
    # Sentence by sentence, not one generation: its first audio came with its first sentence.
    assert len(huge.generations) > 300
    assert tts.stats.characters_sent == len(text) + len(NEXT)


@pytest.mark.parametrize(
    ("flush_on", "speak"),
    # With "turn" there is one segment: the words played say how far the audio is.
    [("sentence", False), ("turn", False), ("sentence", True)],
    ids=["sentence", "turn", "TTSSpeakFrame"],
)
async def test_a_huge_frame_goes_out_as_its_audio_comes_and_a_barge_in_stops_it(
    make_emulator, flush_on, speak
):
    emu = await make_emulator(pacing=Pacing(first_chunk_ms=90, speed=6.0, chunk_ms=40))
    text = document(60_000)
    tts = make_tts(emu, flush_on=flush_on)
    async with running_pipeline(tts) as pipeline:
        if speak:
            await pipeline.send(TTSSpeakFrame(text))
        else:
            await pipeline.send(LLMFullResponseStartFrame(), LLMTextFrame(text))
        await pipeline.down.wait_for(lambda frames: bool(audio(frames)))
        # When its first audio is out, the text sent is a slice or two ahead of it,
        # not the whole frame: the rest follows the audio.
        assert tts.stats.characters_sent <= 3 * SLICE_CHARACTERS
        await pipeline.send(InterruptionFrame(), LLMFullResponseEndFrame(), *llm_turn(NEXT))
        await pipeline.down.wait_for(
            lambda frames: any(f.text.endswith("two sentences.") for f in flush_dones(frames))
        )
        down = pipeline.down.frames
    huge, after = contexts_in_order(emu)
    assert huge.cancelled
    assert len(huge.transcript) < len(text) // 2, "the rest of the frame was dropped"
    assert_spoken_whole(down, after, NEXT)
    assert not [f for f in down if isinstance(f, ErrorFrame)]


ODD_TURNS = {
    "control characters": "Hello\x07 there\x1b[31m friend.\x0b Next\x08 line.",
    "NUL": "Hello\x00 world. Bye\x00 now.",
    "emoji": "Great job \U0001f389\U0001f389! Thumbs up \U0001f44d\U0001f3fd and "
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 family.",
    "right to left": "\u0645\u0631\u062d\u0628\u0627 \u0628\u0643. "
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd! Hello.",
    "an unclosed spell tag": "Spell this <spell>abc",
    "a stray closing tag and an unclosed break": 'Close </spell> this. And <break time="1s now.',
    "a tag alone": '<break time="1s"/>',
}


@pytest.mark.parametrize("text", ODD_TURNS.values(), ids=ODD_TURNS.keys())
async def test_odd_text_is_spoken_and_the_next_turn_plays(emu, text):
    down, up = await run_test(make_tts(emu), frames_to_send=llm_turn(text) + llm_turn(NEXT))
    assert not [f for f in down + up if isinstance(f, ErrorFrame)]
    odd, after = contexts_in_order(emu)
    assert_spoken_whole(down, odd, text)
    assert odd.total_audio_bytes > 0
    assert_spoken_whole(down, after, NEXT)


async def test_a_turn_with_nothing_to_say_opens_nothing_and_the_next_turn_plays(emu):
    down, up = await run_test(
        make_tts(emu),
        frames_to_send=llm_turn("\U0001f389\U0001f389 \U0001f44d ...") + llm_turn(NEXT),
    )
    assert not [f for f in down + up if isinstance(f, ErrorFrame)]
    [after] = contexts_in_order(emu)
    assert_spoken_whole(down, after, NEXT)


async def test_a_10000_word_turn_is_spoken_whole_and_the_next_turn_plays(emu):
    rnd = random.Random(10_000)
    vocabulary = ["the", "results", "were", "fine,", "and", "we", "went", "home", "Dr. Smith"]
    words = [rnd.choice(vocabulary) for _ in range(10_000)]
    text = " ".join(w + ("." if i % 17 == 16 else "") for i, w in enumerate(words)) + "."
    tts = make_tts(emu, sample_rate=8000)
    down, up = await run_test(tts, frames_to_send=llm_turn(text) + llm_turn(NEXT))
    assert not [f for f in down + up if isinstance(f, ErrorFrame)]
    long, after = contexts_in_order(emu)
    assert_spoken_whole(down, long, text)
    assert len(long.spoken) >= 10_000
    assert_spoken_whole(down, after, NEXT)


async def test_a_refused_sentence_in_a_huge_frame_does_not_hold_the_rest(emu):
    # The refused text is a whole slice: the rest must not wait for audio it will never get.
    emu.faults.refuse_transcripts_containing = "purple"
    text = "abcd " * 408 + "purple. " + "More text here. " * 300
    tts = make_tts(emu, sample_rate=8000)
    down, _ = await run_test(
        tts,
        frames_to_send=[
            LLMFullResponseStartFrame(),
            LLMTextFrame(text),
            LLMFullResponseEndFrame(),
            *llm_turn(NEXT),
        ],
    )
    spoken = "".join(f.text for f in flush_dones(down))
    assert "purple" not in spoken
    assert spoken.count("More text here.") == 300
    assert spoken.endswith(NEXT)
    # The refused slice has nothing to wait for: no slice waited out its bound.
    assert tts.stats.pacing_timeouts == 0


@given(
    text=st.text(alphabet=st.sampled_from("ab \n."), max_size=200),
    size=st.integers(1, 20),
)
def test_slices_join_up_to_the_text_and_none_but_the_first_starts_with_whitespace(text, size):
    pieces = list(_slices(text, size))
    assert "".join(pieces) == text
    assert not any(p[:1].isspace() for p in pieces[1:])
    assert all(pieces[:-1]), "no empty slice"


async def test_a_list_where_a_slice_ends_keeps_its_line_breaks(emu):
    # The line break before "1." falls at the slice boundary: pipecat would
    # strip it from the start of a slice, gluing the list to its heading.
    head = "Words " * ((SLICE_CHARACTERS - 8) // 6)
    text = head + "Steps: \n1. Open it.\n2. Close it.\n" + "More words here. " * 200 + "End."
    down, _ = await run_test(
        make_tts(emu, sample_rate=8000), frames_to_send=[*huge_llm_turn(text), *llm_turn(NEXT)]
    )
    huge, after = contexts_in_order(emu)
    assert_spoken_whole(down, huge, text)
    assert_spoken_whole(down, after, NEXT)


async def test_with_sentence_aggregation_no_sentences_are_glued(emu):
    # pipecat's aggregator drops the whitespace between sentences.
    text = "Hello there, my friend. How are you today?\nSteps: 1. Open it. 2. Close it. Done!"
    down, _ = await run_test(
        make_tts(emu, text_aggregation_mode=TextAggregationMode.SENTENCE),
        frames_to_send=llm_turn(text),
    )
    [record] = contexts_in_order(emu)
    assert record.transcript.split() == text.split()
    assert "".join(f.text for f in flush_dones(down)).split() == text.split()
