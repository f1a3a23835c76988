"""The segmenter: exact concatenation, word-boundary cuts, tag atomicity, flush points."""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipecat_cartesia_ctx.protocol.text import ends_sentence, period_context
from pipecat_cartesia_ctx.segmenter import Flush, FlushOn, Position, Push, Segmenter

WORDS = ["hello", "world", "Mr.", "3.14", "U.S.", "e.g.", "J.", "well-known", "I", "it's", "42"]
PUNCT = [".", "!", "?", ",", ";", ":", "...", "\u2026", '."', "?)"]
TAGS = ['<break time="1s"/>', '<emotion value="excited" />', "<spell>A B C</spell>", "<<m|ɛ|t>>"]
CJK = ["你好", "\u3002", "天气", "\uff01", "今日は", "\u3001"]
SPACE = [" ", " ", " ", "  ", "\n", "\n\n", " - ", " \u2014 "]

pieces = st.lists(
    st.one_of(
        st.sampled_from(WORDS),
        st.sampled_from(PUNCT),
        st.sampled_from(TAGS),
        st.sampled_from(CJK),
        st.sampled_from(SPACE),
        st.text(alphabet="abc <>/.", max_size=4),
    ),
    max_size=40,
).map("".join)


class Driver:
    """A segmenter driven the way the turn engine drives it: the position follows each action."""

    def __init__(self, at: Position | None = None, **kwargs):
        self.segmenter = Segmenter(**kwargs)
        self.at = at or Position()

    def feed(self, text: str) -> list:
        return self._advance(self.segmenter.feed(text, self.at))

    def finish(self) -> list:
        return self._advance(self.segmenter.finish(self.at))

    def _advance(self, actions: list) -> list:
        for action in actions:
            self.at = self.at.after(action)
        return actions


def run(tokens, **kwargs):
    driver = Driver(**kwargs)
    actions = []
    for token in tokens:
        actions += driver.feed(token)
    actions += driver.finish()
    return actions


def tokenize(text: str, cuts: list[int]) -> list[str]:
    edges = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(edges)]


def pushed(actions) -> str:
    return "".join(a.text for a in actions if isinstance(a, Push))


def flush_positions(actions) -> list[int]:
    positions, total = [], 0
    for action in actions:
        if isinstance(action, Push):
            total += len(action.text)
        else:
            positions.append(total)
    return positions


def push_ends(actions) -> list[int]:
    ends, total = [], 0
    for action in actions:
        if isinstance(action, Push):
            total += len(action.text)
            ends.append(total)
    return ends


def tag_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"<<[^<>]*>>|<spell>.*?</spell>|<[A-Za-z/][^<>]*>", text)]


modes = st.sampled_from(list(FlushOn))
chunkings = st.lists(st.integers(0, 400), max_size=60)


@given(pieces, chunkings, modes)
def test_pushes_concatenate_to_exactly_the_turn_text(text, cuts, mode):
    actions = run(tokenize(text, cuts), flush_on=mode)
    expected = text.lstrip()
    if any(ch.isalnum() for ch in expected):
        assert pushed(actions) == expected
    else:
        assert actions == [], "a context is never opened with whitespace or punctuation only"


@given(pieces, chunkings, modes)
def test_cuts_fall_on_word_boundaries_and_never_inside_a_tag(text, cuts, mode):
    actions = run(tokenize(text, cuts), flush_on=mode)
    body = text.lstrip()
    spans = tag_spans(body)
    for end in push_ends(actions)[:-1]:
        before = body[end - 1]
        assert before.isspace() or re.match(r"[\u3000-\u9fff\uff00-\uffef]", before), (
            f"cut inside a word at {end}: {body[:end]!r} | {body[end:]!r}"
        )
        assert not any(a < end < b for a, b in spans), f"cut inside a tag: {body!r} at {end}"


@given(pieces, chunkings, modes)
def test_flush_points_do_not_depend_on_how_the_text_is_tokenized(text, cuts, mode):
    whole = flush_positions(run([text], flush_on=mode))
    assert flush_positions(run(tokenize(text, cuts), flush_on=mode)) == whole


@given(pieces, chunkings)
def test_flushes_sit_at_sentence_ends_and_clause_mode_adds_clause_ends(text, cuts):
    tokens = tokenize(text, cuts)
    sentence = run(tokens, flush_on=FlushOn.SENTENCE)
    clause = run(tokens, flush_on=FlushOn.CLAUSE)
    body = text.lstrip()
    for position in flush_positions(sentence):
        ending = body[:position].rstrip()
        assert re.search(r"[.!?\u3002\uff01\uff1f][\"')\]}\u00bb\u201d\u2019]*$", ending), ending
    assert set(flush_positions(sentence)) <= set(flush_positions(clause))
    assert flush_positions(run(tokens, flush_on=FlushOn.TURN)) == []


@given(pieces, chunkings, modes)
def test_actions_are_well_formed(text, cuts, mode):
    actions = run(tokenize(text, cuts), flush_on=mode)
    pushes = [a.text for a in actions if isinstance(a, Push)]
    assert all(pushes), "no empty push"
    assert not any(p.isspace() for p in pushes[:-1]), "only the last push may be whitespace"
    if actions:
        assert isinstance(actions[0], Push), "no flush before the first push"
    for a, b in itertools.pairwise(actions):
        assert not (isinstance(a, Flush) and isinstance(b, Flush)), "no empty segment"


@given(pieces, chunkings)
def test_the_first_push_has_three_words_or_ends_a_clause(text, cuts):
    actions = run(tokenize(text, cuts))
    if not actions:
        return
    first = actions[0].text
    assert any(ch.isalnum() for ch in first)
    words = [w for w in first.split() if any(ch.isalnum() for ch in w)]
    # Some prefix of it ends a clause or a sentence (later words may ride along).
    # (CJK punctuation needs no space after it; ASCII punctuation does.)
    ends_clause = re.search(
        r"[.!?,;:\u2026\u2014\u2013\-][\"')\]}\u00bb\u201d\u2019]*(\s|$)"
        r"|[\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f]",
        first,
    )
    is_everything = first == text.lstrip()
    assert len(words) >= 3 or ends_clause or is_everything, first


# -- examples -------------------------------------------------------------------


def segments(tokens, **kwargs) -> list[str]:
    """Segment texts: pushes grouped by flushes (the last one closed by the turn's end)."""
    out, current = [], ""
    for action in run(tokens, **kwargs):
        if isinstance(action, Push):
            current += action.text
        else:
            out.append(current)
            current = ""
    return [*out, current] if current else out


def test_three_sentences_streamed_in_small_tokens():
    text = "Hello there, friend. How are you today? I am fine!"
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert segments(tokens) == ["Hello there, friend. ", "How are you today? ", "I am fine!"]


def test_the_last_word_waits_for_its_end_and_words_are_never_split():
    segmenter = Driver(first_push_words=1)
    assert segmenter.feed("Hel") == []
    assert segmenter.feed("lo wor") == [Push("Hello ")]
    assert segmenter.feed("ld") == []
    assert segmenter.segmenter.pending == "world"
    assert segmenter.finish() == [Push("world")]


def test_the_first_push_waits_for_three_words_or_a_clause():
    segmenter = Driver()
    assert segmenter.feed("One two ") == []
    assert segmenter.feed("three four") == [Push("One two three ")]
    clause = Driver()
    assert clause.feed("Hi, there") == [Push("Hi, ")]
    configured = Driver(first_push_words=5)
    assert configured.feed("a b c d ") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith arrived. He sat.", ["Mr. Smith arrived. ", "He sat."]),
        ("It costs 3.14 dollars. Cheap.", ["It costs 3.14 dollars. ", "Cheap."]),
        ("Use e.g. this one. Fine.", ["Use e.g. this one. ", "Fine."]),
        ("J. R. R. Tolkien wrote it. Yes.", ["J. R. R. Tolkien wrote it. ", "Yes."]),
        ("Steps:\n1. Open it.\n2. Close it.", ["Steps:\n1. Open it.\n", "2. Close it."]),
        ('He said "Stop." Then he left.', ['He said "Stop." ', "Then he left."]),
        ("Wait... what is this? Nothing.", ["Wait... what is this? ", "Nothing."]),
        ("Really?! Yes.", ["Really?! ", "Yes."]),
        ("你好\u3002今天天气很好\uff01", ["你好\u3002", "今天天气很好\uff01"]),
    ],
)
def test_sentence_ends(text, expected):
    assert segments([text]) == expected
    assert segments(list(text)) == expected, "the same token by token"


def test_clause_mode_and_first_clause_option():
    text = "Well, the plan is simple; we go now. Then we rest - briefly \u2014 and leave."
    assert segments([text], flush_on="clause") == [
        "Well, ",
        "the plan is simple; ",
        "we go now. ",
        "Then we rest - ",
        "briefly \u2014 ",
        "and leave.",
    ]
    assert segments([text], flush_first_clause=True) == [
        "Well, ",
        "the plan is simple; we go now. ",
        "Then we rest - briefly \u2014 and leave.",
    ]
    assert segments([text], flush_on="turn") == [text]


def test_numbers_with_commas_and_hyphenated_words_are_not_clause_ends():
    assert segments(["We sold 1,000 well-known items, mostly. Done."], flush_on="clause") == [
        "We sold 1,000 well-known items, ",
        "mostly. ",
        "Done.",
    ]


@pytest.mark.parametrize(
    "tag",
    [
        '<break time="1s"/>',
        '<emotion value="excited" />',
        "<spell>A B C</spell>",
        "<<m|\u025b|t|f|\u02c8|\u0254|\u0279>>",
        '<speed ratio="1.2"/>',
    ],
)
def test_tags_are_never_cut_even_streamed_character_by_character(tag):
    text = f"Say this {tag} now please. Then more."
    actions = run(list(text), first_push_words=1)
    for end in push_ends(actions):
        start = text.index(tag)
        assert not start < end < start + len(tag)
    assert pushed(actions) == text


def test_an_open_tag_holds_text_until_it_closes():
    segmenter = Driver(first_push_words=1)
    assert segmenter.feed("Spell <spell>A B") == [Push("Spell ")]
    assert segmenter.feed(" C</spell> done ") == [Push("<spell>A B C</spell> done ")]


def test_a_lone_angle_bracket_is_text_and_a_runaway_tag_is_released():
    assert segments(["if a < b then it works. Good."]) == ["if a < b then it works. ", "Good."]
    segmenter = Driver(first_push_words=1)
    runaway = "<b " + "word " * 80
    actions = segmenter.feed("Start " + runaway)
    assert pushed(actions).startswith("Start <b word")


def test_punctuation_only_turns_open_nothing():
    assert run(["...", " ", "!"]) == []
    assert run(["  \n "]) == []


@given(pieces, chunkings, modes)
def test_whole_segments_push_each_segment_in_one_piece(text, cuts, mode):
    word_by_word = run(tokenize(text, cuts), flush_on=mode)
    whole = run(tokenize(text, cuts), flush_on=mode, whole_segments=True)
    assert pushed(whole) == pushed(word_by_word)
    assert flush_positions(whole) == flush_positions(word_by_word)
    # One push per segment: pushes and flushes alternate.
    kinds = [type(a) for a in whole]
    assert all(a is not b for a, b in itertools.pairwise(kinds))


def test_a_requested_flush_comes_at_the_next_sentence_even_in_turn_mode():
    segmenter = Driver(flush_on="turn")
    assert segmenter.feed("One two three, four ") == [Push("One two three, four ")]
    segmenter.at = replace(segmenter.at, switch=True)
    assert segmenter.feed("five. Six seven. ") == [Push("five. "), Flush(), Push("Six seven. ")]
    assert segmenter.at == Position(
        opening=False, first_segment=False, switch=False, early=False
    ), "the flush used the switch up"


def test_a_new_context_waits_for_three_words_again():
    segmenter = Driver()
    assert segmenter.feed("One two three. ") == [Push("One two three. "), Flush()]
    segmenter.at = Position(opening=True, first_segment=False)  # the engine opens a new context
    assert segmenter.feed("Four five ") == []
    assert segmenter.feed("six ") == [Push("Four five six ")]


def test_a_turn_never_starts_with_whitespace_and_later_whitespace_is_kept():
    first = Driver(first_push_words=1)
    assert first.feed("  \n One. ") == [Push("One. "), Flush()]
    # A new context later in the turn: its leading whitespace is the turn's
    # text (the engine does not send it), so the segment texts add up.
    first.at = Position(opening=True, first_segment=False)
    assert first.feed("  \n Two ") == [Push("  \n Two ")]
    assert first.feed("  ") == [], "whitespace waits for the word it leads to"
    continuing = Driver(Position(opening=False, first_segment=False), first_push_words=1)
    assert continuing.feed("  Two ") == [Push("  Two ")], "a continuation keeps its spaces"


def test_the_first_clause_flush_follows_the_position_not_a_count():
    first = Driver(flush_first_clause=True)
    assert first.feed("Well, then we go. ") == [
        Push("Well, "),
        Flush(),
        Push("then we go. "),
        Flush(),
    ]
    later = Driver(
        Position(opening=False, first_segment=False, early=False), flush_first_clause=True
    )
    assert later.feed("Well, then we go. ") == [Push("Well, then we go. "), Flush()]


def test_after_the_flush_a_switch_asked_for_the_next_push_opens_a_context():
    assert Position(opening=False, switch=True).after(Flush()).opening
    segmenter = Driver(Position(opening=False, first_segment=False, switch=True))
    assert segmenter.feed("five six. Seven eight nine.") == [Push("five six. "), Flush()]
    assert segmenter.feed(" ten") == [Push("Seven eight nine. "), Flush()]


def test_position_after_each_action():
    at = Position(opening=True, first_segment=True, switch=True)
    assert at.after(Push("a ")) == Position(opening=False, first_segment=True, switch=True)
    assert at.after(Flush()) == Position(
        opening=True, first_segment=False, switch=False, early=False
    )


def test_text_after_the_end_is_refused_and_the_end_is_said_once():
    segmenter = Segmenter()
    assert not segmenter.finished
    assert segmenter.finish(Position()) == []
    assert segmenter.finished
    with pytest.raises(ValueError, match="finish"):
        segmenter.feed("more", Position())
    assert segmenter.finish(Position()) == []
    spoken = Segmenter()
    spoken.feed("Hello there", Position())
    assert spoken.finish(Position()) == [Push("Hello there")]
    assert spoken.finish(Position(opening=False)) == [], "a second finish sends nothing more"


# -- a period that ends no sentence is never the end of a push ------------------------

NOT_ENDS = [
    ("Ask ", "Dr. ", "Smith ", "now. ", "Then ", "go."),
    ("Do ", "this: ", "1. ", "unplug ", "it, ", "2. ", "wait. ", "Done."),
    ("Use ", "e.g. ", "a ", "pen. ", "Fine."),
    ("Meet ", "on ", "Jan. ", "5 ", "at ", "noon. ", "Ok."),
    ("Read ", "No. ", "5 ", "today. ", "Ok."),
    ("By ", "J. ", "R. ", "R. ", "Tolkien. ", "Yes."),
    ("It ", "was ", "the ", "U.S. ", "army. ", "Yes."),
]


@pytest.mark.parametrize("tokens", NOT_ENDS)
@pytest.mark.parametrize("mode", list(FlushOn))
def test_a_push_never_ends_at_a_period_that_ends_no_sentence(tokens, mode):
    actions = run(list(tokens), flush_on=mode, first_push_words=1)
    text = "".join(tokens)
    assert pushed(actions) == text
    for push in (a.text for a in actions if isinstance(a, Push)):
        last = push.split()[-1]
        assert last.lower() not in ("dr.", "1.", "2.", "e.g.", "jan.", "no.", "j.", "r.", "u.s.")


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["Ask ", "Dr. ", "Smith ", "now. ", "Then."], ["Ask Dr. Smith now. ", "Then."]),
        (
            ["Do this: ", "1. ", "unplug it, ", "2. ", "wait. ", "Ok."],
            ["Do this: 1. unplug it, 2. wait. ", "Ok."],
        ),
        (["Prices rose ", "etc. ", "The ", "end."], ["Prices rose etc. ", "The end."]),
        (["Meet on ", "Jan. ", "5 ", "at noon. ", "Ok."], ["Meet on Jan. 5 at noon. ", "Ok."]),
        (["So did ", "I. ", "Then we left."], ["So did I. ", "Then we left."]),
        (["I said ", "no. ", "Then ", "I left."], ["I said no. ", "Then I left."]),
        (["We ended with ", "etc."], ["We ended with etc."]),
    ],
)
def test_a_period_before_an_unknown_word_waits_for_it(tokens, expected):
    assert segments(tokens) == expected


def test_a_held_period_is_decided_by_the_next_word_and_pushes_nothing_before_it():
    driver = Driver(first_push_words=1)
    assert driver.feed("Hello ") == [Push("Hello ")]
    assert driver.feed("Dr. ") == []  # "Dr." alone would be spoken alone
    assert driver.feed("   ") == []
    assert driver.feed("Smith ") == [Push("Dr.    Smith ")]
    assert driver.feed("etc.  ") == []  # etc. may end a sentence: the next word tells
    assert driver.feed("The") == [Push("etc. "), Flush()]


@given(pieces, chunkings, modes)
def test_no_push_ends_at_a_period_the_shared_rule_says_ends_no_sentence(text, cuts, mode):
    actions = run(tokenize(text, cuts), flush_on=mode, first_push_words=1)
    text = text.lstrip()  # what the pushes concatenate to
    for end in push_ends(actions)[:-1]:
        stripped = text[:end].rstrip()
        if end == len(stripped) or not stripped.endswith("."):
            continue  # the push ends in a word, or after other punctuation
        if re.search(r"\.\.+$|[\u2026]$", stripped) or _in_tag(text, len(stripped) - 1):
            continue
        following = text[end:].lstrip()[:1]
        word, before = period_context("\n" + stripped, len(stripped))
        assert period_ends(word, before, following), (text[:end], following)


def period_ends(word: str, before: str, following: str) -> bool:
    """The rule as a client applies it: the next word is waited for only when it decides."""
    verdict = ends_sentence(word, before, None)
    return ends_sentence(word, before, following) if verdict is None else verdict


def _in_tag(text: str, index: int) -> bool:
    return any(a <= index < b for a, b in tag_spans(text))


# -- linear time: work counted, not timed ----------------------------------------------

_OUR_CODE = ("segmenter.py", "cuts.py", "text.py")


def work(tokens: list[str], **kwargs) -> int:
    """Python bytecode instructions the segmenter runs for ``tokens`` (fed, then finished).

    A count, not a time: it does not vary with the machine's load. Calls into C
    (a regex, a slice) count once each, so the segmenter keeps those bounded by
    the text they look at (a window, a piece), never the whole buffer.
    """
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if not frame.f_code.co_filename.endswith(_OUR_CODE):
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return tracer

    driver = Driver(**kwargs)
    sys.settrace(tracer)
    try:
        for token in tokens:
            driver.feed(token)
        driver.finish()
    finally:
        sys.settrace(None)
    return count


shapes = st.sampled_from(
    [
        "Hello there, Dr. Smith. How are you today? I am fine, e.g. well! ",
        "Do this: 1. unplug it, 2. wait a bit; 3. plug it in. Done. ",
        'A <break time="1s"/> pause and <spell>ABC</spell> spelled. ',
        "no punctuation at all just words and words and more words ",
        "你好\u3002今天天气很好\uff01我们走吧\u3002",
        "a < b and <b c d e f g h i j k l m n o p q r s t u v w x y z ",
        "...   ...   !!!   ,,,   ",
        "word\n\n\n\n\n\n\n\n",
    ]
)


@settings(max_examples=25, deadline=None)
@given(shapes, st.integers(1, 13), modes, st.booleans())
def test_the_work_grows_linearly_with_the_text(shape, token_size, mode, whole):
    def tokens(repeats: int) -> list[str]:
        text = shape * repeats
        return [text[i : i + token_size] for i in range(0, len(text), token_size)]

    options = {"flush_on": mode, "whole_segments": whole}
    small, large = work(tokens(6), **options), work(tokens(48), **options)
    # 8 times the text: 8 times the work, give or take the turn's fixed costs
    # (measured: within 9%; a rescan of the buffer at each cut is 8 times more).
    assert large <= 8 * small * 1.2, (small, large)


def test_a_200_kb_frame_is_cut_with_the_work_of_its_length():
    sentence = "The results, e.g. table 3, were fine at 5 p.m. today! Dr. Smith agreed. "
    small = work([sentence * 30])
    large = work([sentence * 2800])  # about 200 KB in one frame
    assert large <= (2800 / 30) * small * 1.15, (small, large)


# -- the first segment: cut early, for the first audio ------------------------------------


LLM_WORDS = re.compile(r" ?\S+")


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Sure! Dr. Smith can see you today. Shall I book it?", "Sure! "),
        ("The total comes to $1,234.56, including tax.", "The total comes "),
        ("Your order of 3 items ships today. It arrives Friday.", "Your order of 3 "),
        ("To reset the router, do this: 1. unplug it.", "To reset the router, "),
        ("I checked the schedule for the next train today.", "I checked the schedule "),
        ("In the of a to the shop we went.", "In the of a to the "),  # three more at most
        ("Yes, I can help.", "Yes, "),
    ],
)
def test_the_first_segment_ends_at_three_words_a_clause_or_a_sentence(text, first):
    options = {"first_segment_words": 3, "flush_first_clause": True}
    cut = segments(LLM_WORDS.findall(text), **options)
    assert cut[0] == first
    assert "".join(cut) == text
    # Later segments end at sentences only.
    for segment in cut[1:-1]:
        assert segment.rstrip()[-1] in ".!?", segment


@pytest.mark.parametrize("flush_on", ["sentence", "clause", "turn"])
def test_without_a_first_segment_limit_the_first_segment_follows_flush_on(flush_on):
    text = "Your order of 3 items ships today, as promised. It arrives Friday."
    cut = segments(LLM_WORDS.findall(text), flush_on=flush_on, first_segment_words=0)
    expected = {
        "sentence": "Your order of 3 items ships today, as promised. ",
        "clause": "Your order of 3 items ships today, ",
        "turn": text,
    }[flush_on]
    assert cut[0] == expected


def test_with_flush_on_turn_the_first_segment_limit_does_not_apply():
    text = "Your order of 3 items ships today. It arrives Friday."
    assert segments(LLM_WORDS.findall(text), flush_on="turn", first_segment_words=3) == [text]


@pytest.mark.parametrize("value", [-1, 51, 2.5, True, "3"])
def test_a_first_segment_limit_that_is_not_a_word_count_is_refused(value):
    with pytest.raises(ValueError, match="first_segment_words"):
        Segmenter(first_segment_words=value)
