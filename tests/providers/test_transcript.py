"""Cutting a base model's answer out of its continuation of the transcript, whole or piece by piece."""

from __future__ import annotations

import pytest

from modelplane.providers.transcript import AnswerText, transcript_prompt


def shaped(pieces: list[str], finish_reason: str | None, *, cut_speakers: bool = True) -> tuple[str, bool]:
    answer = AnswerText(cut_speakers=cut_speakers)
    text = "".join(answer.feed(piece) for piece in pieces)
    return text + answer.finish(finish_reason), answer.ended


def every_split(text: str) -> list[list[str]]:
    """`text` whole, in single characters, and cut in two at every position."""
    return [[text], list(text)] + [[text[:i], text[i:]] for i in range(1, len(text))]


@pytest.mark.parametrize(
    ("output", "finish_reason", "answer", "ended"),
    [
        (" The capital of France is Paris.", "stop", "The capital of France is Paris.", False),
        (" Hi\nUser", "length", "Hi", False),  # max_tokens cut inside the next turn's label
        (" Hi\n", "length", "Hi", False),
        ("Hi\n", "stop", "Hi", False),
        (" Write one sentence.\nStudent: Write one sentence.", "length", "Write one sentence.", True),
        ("Two lines:\nthe second one.", "stop", "Two lines:\nthe second one.", False),
        ("Paris.\nThe end", "stop", "Paris.\nThe end", False),  # a capitalised line, not a label
        ("a\nTeacher: b", "stop", "a", True),  # an invented speaker
        ("a\nNote: b", "stop", "a\nNote: b", False),  # the answer's own label, not a speaker
        ("1. x\nSteps: 2", "stop", "1. x\nSteps: 2", False),
        ("  \n ", "length", "", False),
    ],
)
def test_the_answer_is_the_same_however_the_output_is_split(
    output: str, finish_reason: str, answer: str, ended: bool
) -> None:
    for pieces in every_split(output):
        assert shaped(pieces, finish_reason) == (answer, ended), pieces


def test_nothing_is_held_back_when_speakers_are_not_cut() -> None:
    answer = AnswerText(cut_speakers=False)
    assert answer.feed(" {") == "{"
    assert answer.feed('"a":\nB') == '"a":\nB'
    assert answer.finish("length") == "" and not answer.ended


def test_nothing_is_sent_after_the_label() -> None:
    answer = AnswerText(cut_speakers=True)
    assert answer.feed("Hi\nStudent:") == "Hi"
    assert answer.ended and answer.feed(" more") == ""


def test_the_transcript_ends_where_the_assistant_speaks() -> None:
    prompt = transcript_prompt(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert prompt == "Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"
