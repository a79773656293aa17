"""What an eval asks: a feature through the whole gateway pipeline, or one configured model directly.

Both run in-process on a `Gateway` built from the loaded config, exactly as `modelplane serve`
builds it, so a feature is evaluated with its routing, fallbacks, validation and cache. Every
serving is recorded in the ledger with purpose "eval" (the economics report leaves those out),
and the runner reads each case's cost and tokens from the serving record the pipeline produced.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from modelplane.config.schema import FeatureConfig
from modelplane.errors import ModelplaneError, UsageError
from modelplane.evals.cache import Completion
from modelplane.ledger.records import ServingRecord
from modelplane.providers.base import Answer
from modelplane.routing.judge import answer_text
from modelplane.serving import pipeline
from modelplane.serving.auth import Caller
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound, Serving, new_id

EVAL_CALLER = Caller("eval", "eval", key_name="eval")  # the ledger's tenant and tier of direct model calls


class Targets:
    """Calls one gateway on behalf of an eval run and collects the serving records of its calls."""

    def __init__(self, gateway: Gateway, authorization: str | None = None) -> None:
        self.gateway = gateway
        self.authorization = authorization
        self._records: dict[str, ServingRecord] = {}
        self._direct: dict[str, FeatureConfig] = {}
        recorder = gateway.recorder
        charge = recorder.charge

        def capture(serving: Serving, record: ServingRecord) -> None:  # runs for every serving the gateway records
            if charge is not None:
                charge(serving, record)
            if serving.purpose == "eval":
                self._records[record.serving_id] = record

        recorder.charge = capture

    def check(self, feature: str | None, model: str | None) -> None:
        """Raise UsageError when the config has no such feature or model."""
        runtime = self.gateway.runtime
        if feature is not None and feature not in runtime.features:
            known = ", ".join(sorted(runtime.features)) or "none"
            raise UsageError(f"the config has no feature '{feature}' (features: {known})", "fix the suite's target")
        if feature is not None and not runtime.open_access and self.authorization is None:
            raise UsageError(
                f"feature '{feature}' needs an API key: the config has keys",
                "pass --api-key KEY (or set MODELPLANE_API_KEY), or target a model directly",
            )
        if model is not None and model not in runtime.models:
            known = ", ".join(sorted(runtime.models)) or "none"
            raise UsageError(f"the config has no model '{model}' (models: {known})", "fix the suite's target or judge")

    def fingerprint(self, feature: str | None, model: str | None) -> str:
        """A hash of the config that decides the answer: the feature (its route and models) or the model."""
        config = self.gateway.runtime.loaded.config
        if feature is not None:
            route = config.features[feature]
            names = [*route.route.models, *route.route.fallback, *(m for t in route.route.tiers.values() for m in t)]
            parts: list[Any] = [route.model_dump(mode="json", warnings=False)]
        else:
            assert model is not None
            names = [model]
            parts = []
        for name in dict.fromkeys(names):
            model_config = config.models[name]
            provider = config.providers[model_config.provider]
            parts.append(
                [
                    name,
                    model_config.model_dump(mode="json", warnings=False),
                    provider.model_dump(mode="json", warnings=False),
                ]
            )
        return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    async def feature(self, name: str, body: dict[str, Any]) -> Completion:
        """One serving of a feature through the whole pipeline."""
        serving_id = new_id()
        inbound = Inbound(orjson.dumps(body), self.authorization, name, serving_id, "eval")
        started = time.perf_counter()
        try:
            outcome = await pipeline.chat(self.gateway, inbound)
        except Exception as exc:  # a failed serving is a failed case; the run goes on
            return self._completion("", serving_id, started, error=_one_line(exc))
        answer = orjson.loads(outcome.body or b"{}")
        return self._completion(answer_text(answer), serving_id, started)

    async def model(self, name: str, body: dict[str, Any]) -> Completion:
        """One call of a configured model, with the gateway's retries and breakers but no feature policy."""
        gateway = self.gateway
        runtime = gateway.runtime
        serving = Serving.begin("chat", Inbound(b"", serving_id=new_id(), purpose="eval"))
        serving.caller = EVAL_CALLER
        started = time.perf_counter()
        try:
            reply = await gateway.invoker.chat(
                serving, (runtime.models[name],), self._policy(name), body, runtime.version
            )
        except ModelplaneError as exc:
            await gateway.recorder.record(serving.fail(exc), runtime.version)
            return self._completion("", serving.serving_id, started, error=_one_line(exc))
        except Exception as exc:  # a bug below the seam: the case fails with it, the run goes on
            return self._completion("", serving.serving_id, started, error=_one_line(exc))
        serving.model = serving.model or name
        await gateway.recorder.record(serving, runtime.version)
        text = answer_text(reply.body) if isinstance(reply, Answer) else ""  # never a stream: none was asked
        return self._completion(text, serving.serving_id, started)

    def _policy(self, model: str) -> FeatureConfig:
        """A model asked directly gets a one-model route: no fallback, no deadline beyond its timeouts."""
        found = self._direct.get(model)
        if found is None:
            found = self._direct[model] = FeatureConfig.model_validate({"route": {"models": [model]}})
        return found

    def _completion(self, text: str, serving_id: str, started: float, error: str | None = None) -> Completion:
        latency = (time.perf_counter() - started) * 1000.0
        record = self._records.pop(serving_id, None)
        if record is None:
            return Completion(text, None, None, 0, 0, latency, serving_id, error)
        return Completion(
            text,
            record.model,
            record.cost_usd,
            record.input_tokens,
            record.output_tokens,
            record.latency_ms,
            serving_id,
            error,
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
