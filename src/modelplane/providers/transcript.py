"""A chat as a plain transcript, for base models, and the answer cut out of their continuation.

A base model (the bundled Gemma 3 270M) was never tuned on turn markers; a transcript
("User: …\\nAssistant:") is what it has seen in pre-training, and it answers. But it does not
stop on its own: it goes on with the next turn, ours ("\\nUser:") or one it invents
("\\nStudent: …"). `AnswerText` keeps only the assistant's answer, for whole answers and streams.
"""

from __future__ import annotations

import re
from typing import Any

# llama.cpp stops on literal strings; these end the answer before the next turn or after a blank line.
TRANSCRIPT_STOPS = ("\nUser:", "\nAssistant:", "\n\n")
# Any speaker's label at the start of a line ends the answer too; it is found in the generated text.
# Labels an answer uses for its own content ("Note:", "Step:") are not speakers and are kept.
_CONTENT_LABELS = (
    "Note|Notes|Example|Examples|Step|Steps|Tip|Tips|Warning|Caution|Important|Hint|Input|Output|Result|"
    "Results|Summary|Explanation|Solution|Definition|Source|Sources|Total|Ingredients|Instructions|Reason|"
    "Pros|Cons|Advantages|Disadvantages|Yes|No|Option|Options|Translation|Formula|Code|Error|Usage"
)
SPEAKER_LABEL = re.compile(rf"\n(?!(?:{_CONTENT_LABELS}):)[A-Z][a-z]+:")
# A tail that may still grow into a speaker label: held back until it does or cannot.
_LABEL_START = re.compile(r"\n(?:[A-Z][a-z]*)?\Z")


def transcript_prompt(messages: list[dict[str, Any]]) -> str:
    """The conversation as a plain transcript ending where the assistant speaks next."""
    lines = []
    for message in messages:
        text = _text(message.get("content"))
        role = message.get("role")
        if role in ("system", "developer"):
            lines.append(text)
        elif role == "assistant":
            lines.append(f"Assistant: {text}")
        else:
            lines.append(f"User: {text}")
    return "\n".join(lines) + "\nAssistant:"


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


class AnswerText:
    """The answer in a model's output, fed piece by piece: no leading whitespace, no next speaker.

    `feed` returns what can be sent now and sets `ended` once a speaker label appears (the label
    is never sent); with `cut_speakers`, a tail that may still become a label is held back.
    `finish` returns what is held: dropped when max_tokens cut the output inside a label, and
    without a trailing newline.
    """

    def __init__(self, *, cut_speakers: bool) -> None:
        self.cut_speakers = cut_speakers
        self.ended = False
        self._started = False
        self._held = ""

    def feed(self, piece: str) -> str:
        if self.ended:
            return ""
        text = self._held + piece
        self._held = ""
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        if not self.cut_speakers:
            return text
        if label := SPEAKER_LABEL.search(text):
            self.ended = True
            return text[: label.start()]
        if tail := _LABEL_START.search(text):
            self._held = text[tail.start() :]
            return text[: tail.start()]
        return text

    def finish(self, finish_reason: str | None) -> str:
        held, self._held = self._held, ""
        return "" if finish_reason == "length" else held.rstrip()
