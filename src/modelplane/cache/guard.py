"""A cheap guard against look-alike questions that mean something else.

Embeddings put "Why do people worry about X?" and "Why don't people worry about X?" next
to each other, and "internships of 2016" next to "internships of 2017". Serving one's
answer to the other is a confident wrong answer, so before a semantic hit is served the
query and the cached question are compared on the few things a similarity score is blind
to: negation, numbers, named entities (proper nouns, acronyms, quoted strings), antonyms,
the direction of a comparison or conversion (who / what goes which way: an averaged word
embedding cannot see word order, so "convert ethanol to acetic acid" and "convert acetic
acid to ethanol" embed identically), and the kind of question asked (why / when / who …).

Everything here is pure and costs microseconds: `facts()` reads a question once (the
cache keeps the facts of each stored question), `compare()` decides on two sets of facts.
`overlap()` measures the words two questions share and `content()` names the words that carry
a topic; `cache/scoring.py` and `cache/pairscore.py` use them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GuardVerdict", "QuestionFacts", "check", "compare", "content", "facts", "overlap"]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's decision: `ok`, or the `reason` the two questions differ in meaning."""

    ok: bool
    reason: str = ""


PASS = GuardVerdict(ok=True)


@dataclass(frozen=True, slots=True)
class QuestionFacts:
    """What the guard compares, read once from one question."""

    words: frozenset[str]  # every lower-cased word, for "does the other side mention it at all"
    negated: bool
    numbers: frozenset[str]
    entities: tuple[str, ...]  # lower-cased, in order of appearance
    quoted: frozenset[str]
    polar: frozenset[tuple[int, int]]  # (antonym pair id, side)
    asks: frozenset[str]  # why / when / where / who / how-many …
    directional: bool  # "to", "from", "than", "vs" …: entity order carries meaning
    relations: frozenset[tuple[str, str, str]]  # (word before, relation word, word after): "ethanol to acid"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _in_order(text: str) -> list[str]:
    return text.split()


_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'\u2019.+#-]*[A-Za-z0-9+#]|[A-Za-z]|\d[\d,.]*\w*")
_QUOTED = re.compile(r"[\"“”«»]+([^\"“”«»]{1,60})[\"“”«»]+|(?<![A-Za-z])'([^']{1,60})'(?![A-Za-z])")
_SENTENCE_START = re.compile(r"(?:^|[.?!:;]\s+|\n\s*)([\"“(\[]?)([A-Za-z][\w'\u2019-]*)")
_NUMBER = re.compile(r"^\d[\d,]*(?:\.\d+)?")

_NEGATIONS = _words(
    "not no never none nobody nothing nowhere neither nor without cannot cant isnt arent wasnt werent dont doesnt "
    "didnt wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt neednt aint"
)
# "one" is left out: it is a pronoun as often as a number ("one can check …").
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        _in_order(
            "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty"
        )
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1e6",
    "billion": "1e9",
    "dozen": "12",
}
_NUMBER_WORDS.pop("_")
_UNITS = _words(
    "mm cm m km inch inches ft feet foot mile miles yard yards mg g kg gram grams pound pounds lb lbs oz ounce "
    "ounces ton tons ml l liter liters litre litres gallon gallons kb mb gb tb kbps mbps gbps hz khz mhz ghz w kw "
    "mw watt watts v volt volts amp amps mah c f celsius fahrenheit kelvin usd eur gbp inr rs dollars dollar euros "
    "euro rupees rupee pounds yen percent % bit bits byte bytes sec secs second seconds minute minutes hour hours "
    "day days week weeks month months year years decade decades century centuries"
)
# Each group is one pole; the two groups of a pair are opposites.
_ANTONYMS: tuple[tuple[str, str], ...] = (
    (
        "more most greater larger bigger higher increase increases increased increasing",
        "less least fewer smaller lower decrease decreases decreased decreasing",
    ),
    ("before earlier prior", "after later"),
    ("best better", "worst worse"),
    ("advantage advantages pro pros benefit benefits", "disadvantage disadvantages con cons drawback drawbacks"),
    ("buy buying bought buyer", "sell selling sold seller"),
    ("give gives gave given giving send sends sending sent", "receive receives received receiving"),
    ("legal", "illegal"),
    ("possible", "impossible"),
    ("win wins won winning", "lose loses lost losing"),
    ("import imports importing", "export exports exporting"),
    ("upload uploading uploaded", "download downloading downloaded"),
    ("male men man boy boys", "female women woman girl girls"),
    ("husband", "wife"),
    ("start starting started begin beginning", "stop stopping stopped end ending finish"),
    ("enable enabling enabled", "disable disabling disabled"),
    ("add adding added", "remove removing removed delete deleting deleted"),
    ("encrypt encryption", "decrypt decryption"),
    ("open opening", "close closing"),
    ("include including", "exclude excluding"),
    ("positive", "negative"),
    ("true", "false"),
    ("cheap cheapest cheaper", "expensive costly"),
    ("love", "hate"),
    ("rich", "poor"),
    ("up", "down"),
    ("inside", "outside"),
    ("above over", "below under"),
    ("first", "last"),
    ("min minimum", "max maximum"),
    ("north", "south"),
    ("east", "west"),
    ("hot", "cold"),
    ("fast faster fastest", "slow slower slowest"),
    ("safe", "unsafe dangerous"),
    ("good", "bad"),
    ("success successful", "failure unsuccessful"),
    ("agree", "disagree"),
    ("like", "dislike"),
    ("input", "output"),
    ("past", "future"),
)
_POLES: dict[str, tuple[int, int]] = {
    word: (pair, side)
    for pair, groups in enumerate(_ANTONYMS)
    for side, group in enumerate(groups)
    for word in group.split()
}
# Kinds of question that do not paraphrase into each other; what / how / which do, so they are not listed.
_ASKS: dict[str, str] = {"why": "why", "when": "when", "where": "where", "who": "who", "whom": "who", "whose": "who"}
_HOW_MUCH = re.compile(r"\bhow\s+(many|much|long|old|often|far)\b", re.IGNORECASE)
_SENTENCES = re.compile(r"[.?!;:]\s+|[?!]|\n")
_DIRECTIONAL = _words("to from into than vs versus against over onto toward towards")
# Words that relate two things with a direction: "convert X to Y", "X better than Y", "move from X into Y".
_RELATIONS = _words("to into from than toward towards onto about by")
# Comparisons that read the same both ways round.
_SYMMETRIC = _words(
    "different difference differences differ differs similar similarity same compare compared comparison "
    "equal equivalent unlike between vs versus"
)
# Words that carry no topic of their own; what is left around a relation word is what it relates.
_FUNCTION_WORDS = _RELATIONS | _words(
    "a an the is are was were be been being am do does did have has had i me my you your we us our they them "
    "their he him his she her it its this that these those what which who whom whose why how when where if "
    "of in on at for with and or but so as can could should would will shall may might must there here one"
)
# Capitalised words that are not names wherever they stand.
_NOT_NAMES = _words(
    "i i'm i've i'd i'll what why how when where who whom whose which is are was were do does did can could "
    "should would will shall may might must the a an in on at of for and or but if my your our their his her its "
    "this that these those it there here yes no hi hello please"
)


def facts(text: str) -> QuestionFacts:
    """Read the facts the guard compares from one question."""
    text = re.sub(r"\bor not\b", "", text, flags=re.IGNORECASE)  # "whether or not" asks the same
    tokens = _TOKEN.findall(text)
    lowered = [_fold(token) for token in tokens]
    numbers = _numbers(tokens, lowered)
    quoted = frozenset(_fold(a or b).strip() for a, b in _QUOTED.findall(text))
    return QuestionFacts(
        words=frozenset(lowered),
        negated=any(word in _NEGATIONS or word.startswith(("non-", "no-")) for word in lowered),
        numbers=numbers,
        entities=_entities(text, tokens),
        quoted=quoted,
        polar=frozenset(_POLES[word] for word in lowered if word in _POLES),
        asks=_asks(text),
        directional=any(word in _DIRECTIONAL for word in lowered),
        relations=_relations(lowered),
    )


def compare(query: QuestionFacts, cached: QuestionFacts) -> GuardVerdict:
    """Whether a cached question may answer the query, judged on facts alone."""
    if query.negated != cached.negated:
        return GuardVerdict(ok=False, reason="negation")
    if query.numbers != cached.numbers:
        return GuardVerdict(ok=False, reason="number")
    if query.quoted != cached.quoted:
        return GuardVerdict(ok=False, reason="quoted")
    if not _entities_covered(query, cached) or not _entities_covered(cached, query):
        return GuardVerdict(ok=False, reason="entity")
    if _opposed(query.polar, cached.polar):
        return GuardVerdict(ok=False, reason="antonym")
    if query.asks != cached.asks:
        return GuardVerdict(ok=False, reason="question")
    if (query.directional or cached.directional) and _reordered(query.entities, cached.entities):
        return GuardVerdict(ok=False, reason="direction")
    if _swapped(query.relations, cached.relations):
        return GuardVerdict(ok=False, reason="direction")
    return PASS


def overlap(a: QuestionFacts, b: QuestionFacts) -> float:
    """Share of the two questions' distinct words that both use (Jaccard), 1.0 for two empty questions."""
    union = len(a.words | b.words)
    return len(a.words & b.words) / union if union else 1.0


def content(a: QuestionFacts) -> frozenset[str]:
    """The words that carry a topic: function words and single letters dropped."""
    return frozenset(w for w in a.words if w not in _FUNCTION_WORDS and len(w) > 1)


def check(query: str, cached: str) -> GuardVerdict:
    """`compare()` on two raw questions; the cache keeps facts instead and calls `compare()`."""
    return compare(facts(query), facts(cached))


def _relations(lowered: list[str]) -> frozenset[tuple[str, str, str]]:
    """(x, r, y) for each relation word r and the two content words nearest it on each side.

    Left empty when the question compares symmetrically ("how is X different from Y"), and
    words that occur twice ("dogs catch worms from other dogs") are not taken as a side.
    """
    if any(word in _SYMMETRIC for word in lowered):
        return frozenset()
    content = [w for w in lowered if w not in _FUNCTION_WORDS]
    once = {w for w in content if content.count(w) == 1}
    found: set[tuple[str, str, str]] = set()
    for i, word in enumerate(lowered):
        if word not in _RELATIONS:
            continue
        before = [w for w in lowered[:i] if w not in _FUNCTION_WORDS][-2:]
        after = [w for w in lowered[i + 1 :] if w not in _FUNCTION_WORDS][:2]
        found.update((x, word, y) for x in before for y in after if x != y and x in once and y in once)
    return frozenset(found)


def _swapped(a: frozenset[tuple[str, str, str]], b: frozenset[tuple[str, str, str]]) -> bool:
    """The same two words around the same relation, the other way round in `b` only ("x to y" / "y to x")."""
    return any((y, r, x) in b and (x, r, y) not in b and (y, r, x) not in a for x, r, y in a)


def _fold(token: str) -> str:
    return token.lower().replace("\u2019", "'").replace("n't", "nt").rstrip(".")


def _numbers(tokens: list[str], lowered: list[str]) -> frozenset[str]:
    found: set[str] = set()
    for i, token in enumerate(tokens):
        token = token.rstrip(".,")
        match = _NUMBER.match(token)
        if match:
            value = match.group(0).replace(",", "")
            suffix = token[match.end() :].lower()  # 4k, 2000s, 5km, 3rd, 2.10.0
            unit = lowered[i + 1] if not suffix and i + 1 < len(lowered) and lowered[i + 1] in _UNITS else ""
            found.add(value + suffix + (" " + unit if unit else ""))
        elif lowered[i] in _NUMBER_WORDS:
            found.add(_NUMBER_WORDS[lowered[i]])
    return frozenset(found)


def _asks(text: str) -> frozenset[str]:
    """The kind of question each sentence asks, read from its first words."""
    kinds: set[str] = set()
    for sentence in _SENTENCES.split(text):
        head = [_fold(word) for word in _TOKEN.findall(sentence)[:3]]
        kinds.update(_ASKS[word] for word in head if word in _ASKS)
        match = _HOW_MUCH.match(" ".join(head))
        if match:
            kinds.add("how-" + match.group(1).lower())
    return frozenset(kinds)


def _entities(text: str, tokens: list[str]) -> tuple[str, ...]:
    """Proper nouns and acronyms: capitalised words that are not capitalised merely by position."""
    starts = {m.start(2) for m in _SENTENCE_START.finditer(text)}
    capitalised_elsewhere: set[str] = set()
    positioned: list[tuple[int, str]] = []
    cursor = 0
    for token in tokens:
        at = text.find(token, cursor)
        cursor = at + len(token)
        if token[0].isupper():
            positioned.append((at, token))
            if at not in starts:
                capitalised_elsewhere.add(token.lower())
    names: list[str] = []
    for at, token in positioned:
        low = _fold(token)
        if low in _NOT_NAMES:
            continue
        inner_caps = any(c.isupper() or c.isdigit() for c in token[1:])  # PyTorch, iPhone, GPT4
        if at not in starts or inner_caps or low in capitalised_elsewhere:
            names.append(low)
    return tuple(names)


def _entities_covered(a: QuestionFacts, b: QuestionFacts) -> bool:
    """Every entity of `a` is mentioned in `b`, in any case, allowing inflection (India / Indian)."""
    for entity in a.entities:
        if entity in b.words:
            continue
        stem = entity[: max(4, len(entity) - 3)]
        if len(entity) < 4 or not any(word.startswith(stem) for word in b.words):
            return False
    return True


def _opposed(a: frozenset[tuple[int, int]], b: frozenset[tuple[int, int]]) -> bool:
    """For some antonym pair, each side uses only the pole the other side does not use."""
    return any((pair, 1 - side) in b and (pair, 1 - side) not in a and (pair, side) not in b for pair, side in a)


def _reordered(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The entities both mention appear in a different order ("India to Pakistan" vs "Pakistan to India")."""
    shared = set(a) & set(b)
    # Only short, two-name questions: in longer text a paraphrase reorders names freely.
    if len(shared) != 2 or max(len(a), len(b)) > 3:
        return False
    order_a = list(dict.fromkeys(e for e in a if e in shared))
    order_b = list(dict.fromkeys(e for e in b if e in shared))
    return order_a != order_b
