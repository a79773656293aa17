"""The serving pipeline, stage by stage, top to bottom.

    authenticate → admit → cache lookup → route → invoke (retries, breakers, fallbacks; validate,
    escalate) → record → cache store → respond

Each stage is a module of its own in this package. Later stages (guards, context, cache,
validation) slot in beside these in the same order as ../DESIGN.md lists them.
"""

from __future__ import annotations

from modelplane.errors import ModelplaneError
from modelplane.providers.base import Stream
from modelplane.serving import respond
from modelplane.serving.admit import admit, pick_feature
from modelplane.serving.auth import authenticate
from modelplane.serving.escalate import escalate
from modelplane.serving.gateway import Gateway
from modelplane.serving.request import parse_chat, parse_embeddings
from modelplane.serving.route import route
from modelplane.serving.state import Inbound, Serving
from modelplane.serving.validate import output_spec


async def chat(gateway: Gateway, inbound: Inbound) -> respond.Outcome:
    """Serve one `POST /v1/chat/completions`."""
    runtime = gateway.runtime  # one config for the whole serving, even if a reload lands meanwhile
    serving = Serving.begin("chat", inbound)
    serving.caller = authenticate(runtime, inbound.authorization)
    try:
        body = parse_chat(inbound.body)
        serving.stream = bool(body.get("stream"))
        serving.feature = pick_feature(runtime, inbound.feature, body.get("model"))
        feature = await admit(runtime, gateway.limiter, serving.caller, serving.feature)
        found = gateway.cache.lookup(serving.caller.tenant, serving.feature, feature, body)
        serving.cache_score = found.best_score
        if found.hit is not None:
            return await respond.cached(serving, found.hit, body, gateway.recorder, runtime.version)
        chain = route(runtime, serving.feature, serving.caller.tier)
        spec = output_spec(runtime.outputs.get(serving.feature), body)

        async def to_queue(reason: str, last_output: str) -> None:
            await escalate(gateway.store, serving, body, reason, last_output, runtime.version)

        reply = await gateway.invoker.chat(serving, chain, feature, body, runtime.version, spec, to_queue)
        if isinstance(reply, Stream):
            return await respond.stream(serving, reply, gateway.recorder, runtime.version)
    except ModelplaneError as exc:
        await gateway.recorder.record(serving.fail(exc), runtime.version)
        raise
    record = await gateway.recorder.record(serving, runtime.version)
    if feature.cache is not None and serving.model not in (None, "deterministic") and serving.status == "ok":
        gateway.cache.store(found, feature.cache, reply.body, record.cost_usd, serving.model)
    return respond.answer(serving, reply, record)


async def embeddings(gateway: Gateway, inbound: Inbound) -> respond.Outcome:
    """Serve one `POST /v1/embeddings`."""
    runtime = gateway.runtime
    serving = Serving.begin("embeddings", inbound)
    serving.caller = authenticate(runtime, inbound.authorization)
    try:
        body = parse_embeddings(inbound.body)
        serving.feature = pick_feature(runtime, inbound.feature, body.get("model"))
        await admit(runtime, gateway.limiter, serving.caller, serving.feature)
        model = route(runtime, serving.feature, serving.caller.tier)[0]
        result = await gateway.invoker.embeddings(serving, model, body, runtime.version)
    except ModelplaneError as exc:
        await gateway.recorder.record(serving.fail(exc), runtime.version)
        raise
    record = await gateway.recorder.record(serving, runtime.version)
    return respond.json(serving, result.body, record)
