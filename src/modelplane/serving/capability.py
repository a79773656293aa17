"""What a request needs of the model that answers it, beyond text in and one text answer out.

A request may ask for several choices (`n` > 1), for log-probabilities (`logprobs: true`), or
carry content parts other than text (images, audio, files). Providers say what they can give
(`Provider.supports_choices`, `supports_logprobs`, `content_parts`). The invoker skips a model
of the chain that cannot, rather than serve it with part of the request silently dropped; a
chain where no model can is a 400 that names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelplane.errors import BadRequest
from modelplane.providers.base import Provider
from modelplane.serving.runtime import Model


@dataclass(frozen=True, slots=True)
class Need:
    """One thing a request asks of the answering model; `param` is the field that asks it."""

    param: str
    what: str  # as in "cannot {what}"
    met_by: Callable[[Provider], bool]


def _choices(provider: Provider) -> bool:
    return provider.supports_choices


def _logprobs(provider: Provider) -> bool:
    return provider.supports_logprobs


def _takes(kind: str) -> Callable[[Provider], bool]:
    return lambda provider: provider.content_parts is None or kind in provider.content_parts


def needs(body: dict[str, Any]) -> tuple[Need, ...]:
    """What `body` asks beyond plain chat; () for almost every request, after one pass over its messages."""
    found: list[Need] = []
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        found.append(Need("n", f"give several choices (n = {n})", _choices))
    if body.get("logprobs") is True:
        found.append(Need("logprobs", "give log-probabilities", _logprobs))
    seen: set[str] = set()
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind != "text" and kind not in seen:
                seen.add(kind)
                found.append(Need(f"messages[{i}].content[{j}]", f"take '{kind}' content parts", _takes(kind)))
    return tuple(found)


def unmet(model: Model, wanted: tuple[Need, ...]) -> Need | None:
    """The first need some deployment of `model` cannot meet; None when every one can meet them all."""
    for need in wanted:
        if not all(need.met_by(deployment.provider) for deployment in model.deployments):
            return need
    return None


def require(chain: tuple[Model, ...], wanted: tuple[Need, ...]) -> None:
    """Raise a 400 when no model of the chain can meet every need of the request."""
    if not wanted:
        return
    refusals = [(model, unmet(model, wanted)) for model in chain]
    if any(need is None for _, need in refusals):
        return
    model, need = refusals[0]
    assert need is not None
    kinds = ", ".join(sorted({d.provider.kind for d in model.deployments}))
    others = "" if len(chain) == 1 else f" (nor can the other {len(chain) - 1} model(s) of the feature's chain)"
    raise BadRequest(f"model '{model.name}' ({kinds} provider) cannot {need.what}{others}", param=need.param)


def one_choice(body: dict[str, Any], why: str) -> None:
    """Raise a 400 for `n` > 1 where only one choice can be checked (`why` says by what)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise BadRequest(f"n = {n}: this feature {why}, which checks one choice; ask with n = 1", param="n")
