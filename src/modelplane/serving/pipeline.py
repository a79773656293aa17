"""The serving pipeline, stage by stage, top to bottom.

    authenticate → admit → cache lookup → route (the feature's strategy) → invoke (retries, breakers,
    fallbacks; validate, escalate; a cascade's checks) → record → shadow judging (a sample, in the
    background) → cache store → respond

Each stage is a module of its own in this package. Later stages (guards, context, cache,
validation) slot in beside these in the same order as ../DESIGN.md lists them.
"""

from __future__ import annotations

from modelplane.errors import ModelplaneError
from modelplane.providers.base import Stream
from modelplane.serving import respond
from modelplane.serving.admit import admit, pick_feature
from modelplane.serving.auth import authenticate
from modelplane.serving.cache import UNCACHED, storable
from modelplane.serving.escalate import escalate
from modelplane.serving.gateway import Gateway
from modelplane.serving.request import parse_chat, parse_embeddings
from modelplane.serving.route import choose, route
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
        found = UNCACHED  # features without a cache skip the stage at no cost
        if feature.cache is not None:
            found = await gateway.cache.lookup(serving.caller.tenant, serving.feature, feature, body)
        serving.cache_score, serving.cache_reason = found.best_score, found.reason
        if found.hit is not None:
            return await respond.cached(serving, found.hit, body, gateway.recorder, runtime.version)
        chain, cascade = await choose(runtime, serving, body, gateway.cache)
        spec = output_spec(runtime.outputs.get(serving.feature), body)

        async def to_queue(reason: str, last_output: str) -> None:
            await escalate(gateway.store, serving, body, reason, last_output, runtime.version)

        reply = await gateway.invoker.chat(serving, chain, feature, body, runtime.version, spec, to_queue, cascade)
        if isinstance(reply, Stream):
            reply, stored = gateway.cache.keep_stream(found, feature.cache, serving, reply)
            return await respond.stream(serving, reply, gateway.recorder, runtime.version, stored)
    except ModelplaneError as exc:
        await gateway.recorder.record(serving.fail(exc), runtime.version)
        raise
    record = await gateway.recorder.record(serving, runtime.version)
    if feature.route.shadow is not None:  # a sample of cheap answers is judged against the strong model's
        gateway.shadows.consider(runtime, serving, body, reply.body, record.cost_usd)
    if feature.cache is not None and storable(serving) and serving.model is not None:
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
