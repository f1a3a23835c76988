"""`TextBuffer` reads exactly as the string it stands for, however it was built."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipecat_cartesia_ctx.textbuffer import TextBuffer

steps = st.lists(
    st.tuples(
        st.text(alphabet="ab .\n", max_size=6),  # appended
        st.integers(0, 40),  # an offset to read from
        st.sampled_from(["a", "b ", ". ", "ab", ""]),  # a text to find
    ),
    max_size=12,
)


@given(start=st.text(alphabet="ab .", max_size=5), steps=steps)
def test_a_buffer_reads_as_the_concatenation_of_its_pieces(start, steps):
    buffer, model = TextBuffer(start), start
    for n, (piece, offset, sub) in enumerate(steps):
        buffer.append(piece)
        model += piece
        assert buffer.tail(offset) == model[offset:]
        assert buffer.find(sub, offset) == model.find(sub, offset)
        assert len(buffer) == len(model)
        assert bool(buffer) == bool(model)
        if n % 3 == 2:
            assert str(buffer) == model  # joining it changes nothing it reads
    assert str(buffer) == model
    assert buffer.tail(len(model)) == ""


def test_a_find_across_two_pieces_is_found():
    buffer = TextBuffer("Hello wo")
    buffer.append("rld. ")
    assert buffer.find("world.", 3) == 6
    assert buffer.find("world.", 7) == -1
