"""The runner on an in-process gateway: concurrency, the response cache, repeats and pass@k, costs
from the serving records, eval servings tagged in the ledger and left out of the report."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from evalfakes import CONFIG, RuleProvider, gateway_with, last_user

from modelplane.errors import UsageError
from modelplane.evals.cache import EvalCache
from modelplane.evals.results import RunResult
from modelplane.evals.runner import RunOptions, run_suite, summarise, verdict
from modelplane.evals.suite import parse_suite
from modelplane.evals.target import Targets
from modelplane.ledger.queries import ReportFilter, report_data
from modelplane.ledger.store import LedgerStore


def suite_of(n: int, **extra: Any) -> Any:
    tests = [{"vars": {"n": i}, "assert": [{"type": "contains", "value": f"#{i}"}]} for i in range(n)]
    return parse_suite({"prompts": ["question #{{n}}"], "tests": tests, "target": {"feature": "support"}, **extra})


async def run(
    tmp_path: Path,
    provider: RuleProvider,
    suite: Any,
    *,
    cache: EvalCache | None = None,
    concurrency: int = 4,
    repeats: int | None = None,
) -> RunResult:
    gateway = await gateway_with(provider, tmp_path)
    try:
        targets = Targets(gateway)
        return await run_suite(suite, targets, cache or EvalCache(None), RunOptions(concurrency, repeats))
    finally:
        await gateway.close()


async def test_a_feature_run_passes_and_fails_cases_with_costs(tmp_path: Path) -> None:
    provider = RuleProvider(lambda r: "answer" if "#3" in last_user(r) else f"answer {last_user(r)}")
    suite = suite_of(5, target={"feature": "support", "params": {"temperature": 0}})
    result = await run(tmp_path, provider, suite)
    assert [c.passed for c in result.cases] == [True, True, True, False, True]
    assert result.target == "feature:support" and result.config_version == "v-test"
    failed = result.cases[3]
    assert failed.score == 0.0 and "does not contain '#3'" in failed.assertions[0].reason
    first = result.cases[0]
    assert (first.input_tokens, first.output_tokens, first.model) == (10, 5, "small")
    assert first.cost_usd == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)  # from the serving record
    assert first.serving_id and not first.cached and first.latency_ms > 0
    assert all(call.body["temperature"] == 0 for call in provider.calls)


async def test_concurrency_bounds_requests_in_flight(tmp_path: Path) -> None:
    provider = RuleProvider(delay=0.02)
    await run(tmp_path, provider, suite_of(12), concurrency=3)
    assert provider.most_in_flight == 3
    provider = RuleProvider(delay=0.02)
    await run(tmp_path / "one", provider, suite_of(4), concurrency=1)
    assert provider.most_in_flight == 1


async def test_the_cache_answers_a_rerun_without_calling_the_target(tmp_path: Path) -> None:
    path = tmp_path / "evals" / "cache.sqlite"
    provider = RuleProvider()
    cache = EvalCache(path)
    first = await run(tmp_path, provider, suite_of(6), cache=cache)
    cache.close()
    assert provider.answered() == 6 and not any(c.cached for c in first.cases)
    again = EvalCache(path)
    second = await run(tmp_path, provider, suite_of(6), cache=again)
    again.close()
    assert provider.answered() == 6  # nothing asked again
    assert all(c.cached for c in second.cases)
    assert [c.output for c in second.cases] == [c.output for c in first.cases]
    assert [c.cost_usd for c in second.cases] == [c.cost_usd for c in first.cases]
    assert second.meta["preloaded"] == 6  # read in one go before the run
    # A change of parameters is a different request: asked again.
    changed = EvalCache(path)
    await run(
        tmp_path, provider, suite_of(6, target={"feature": "support", "params": {"max_tokens": 5}}), cache=changed
    )
    changed.close()
    assert provider.answered() == 12


async def test_no_cache_asks_every_time(tmp_path: Path) -> None:
    provider = RuleProvider()
    for _ in range(2):
        await run(tmp_path, provider, suite_of(3), cache=EvalCache(None))
    assert provider.answered() == 6


async def test_repeats_give_mean_and_pass_at_k(tmp_path: Path) -> None:
    counter = itertools.count()
    # Case 0 passes on every other call; case 1 never passes.
    provider = RuleProvider(lambda r: last_user(r) if "#0" in last_user(r) and next(counter) % 2 == 0 else "no")
    result = await run(tmp_path, provider, suite_of(2), repeats=4, concurrency=1)
    assert result.repeats == 4 and len(result.cases) == 8
    assert sorted({c.repeat for c in result.cases}) == [0, 1, 2, 3]
    by_case = {s.case_id: s for s in summarise(result)}
    flaky, broken = by_case[result.cases[0].case_id], by_case[result.cases[4].case_id]
    assert (flaky.runs, flaky.passes, flaky.mean_score, flaky.pass_at_k, flaky.pass_all_k) == (4, 2, 0.5, True, False)
    assert (broken.passes, broken.pass_at_k) == (0, False)


async def test_a_model_target_and_a_judge_through_the_gateway(tmp_path: Path) -> None:
    provider = RuleProvider(lambda r: "Paris")
    provider.judge_replies.extend(['{"pass": true, "score": 0.8, "reason": "right"}', "garbage"])
    raw = {
        "target": {"model": "small"},
        "judge": {"model": "judge"},
        "tests": [
            {"id": "q", "messages": [{"role": "user", "content": "Capital of France?"}],
             "assert": [{"type": "llm-rubric", "value": "names Paris"}, {"type": "icontains", "value": "paris"}]},
        ],
    }  # fmt: skip
    result = await run(tmp_path, provider, parse_suite(raw))
    case = result.cases[0]
    assert result.target == "model:small" and case.passed and case.score == pytest.approx(0.9)
    assert case.assertions[0].reason == "right"
    assert provider.answered("judge-1") == 1


async def test_a_judge_that_never_answers_fails_the_case_not_the_run(tmp_path: Path) -> None:
    provider = RuleProvider(lambda r: "Paris")
    provider.judge_replies.extend(["no idea", "still no idea"])
    raw = {
        "target": {"model": "small"},
        "judge": "judge",
        "tests": [{"messages": [{"role": "user", "content": "?"}], "assert": [{"type": "llm-rubric", "value": "ok"}]}],
    }
    result = await run(tmp_path, provider, parse_suite(raw))
    assert not result.cases[0].passed and "no verdict" in result.cases[0].assertions[0].reason


async def test_a_target_error_fails_the_case_and_the_run_goes_on(tmp_path: Path) -> None:
    def rule(request: Any) -> str:
        if "#1" in last_user(request):
            raise RuntimeError("boom")
        return last_user(request)

    provider = RuleProvider(rule)
    result = await run(tmp_path, provider, suite_of(3, target={"model": "small"}))
    assert [c.passed for c in result.cases] == [True, False, True]
    assert result.cases[1].error and result.cases[1].assertions == []


async def test_unknown_target_or_judge_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no feature 'nope'"):
        await run(tmp_path, RuleProvider(), suite_of(1, target={"feature": "nope"}))
    with pytest.raises(UsageError, match="no model 'ghost'"):
        await run(tmp_path / "2", RuleProvider(), suite_of(1, judge={"model": "ghost"}))


async def test_eval_servings_are_tagged_and_left_out_of_the_report(tmp_path: Path) -> None:
    provider = RuleProvider()
    gateway = await gateway_with(provider, tmp_path)
    try:
        from modelplane.serving import pipeline
        from modelplane.serving.state import Inbound

        await pipeline.chat(gateway, Inbound(b'{"messages": [{"role": "user", "content": "hi"}]}', feature="support"))
        await run_suite(suite_of(3), Targets(gateway), EvalCache(None), RunOptions())
    finally:
        await gateway.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    await store.open()
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT purpose, count(*) FROM servings GROUP BY purpose"))).all()
        assert dict(rows) == {"serve": 1, "eval": 3}
        data = await report_data(store, ReportFilter())
        assert sum(group.count for group in data.servings) == 1  # the eval servings are not the product's
    finally:
        await store.close()


def test_case_verdict_rules() -> None:
    from modelplane.evals.results import AssertionResult

    ok, bad = AssertionResult("a", True, 1.0, 1.0), AssertionResult("b", False, 0.0, 3.0)
    assert verdict([ok, bad], None) == (0.25, False)
    assert verdict([ok, bad], 0.2) == (0.25, True)  # a case threshold decides by the weighted score
    info = AssertionResult("c", False, 0.0, 0.0)
    assert verdict([ok, info], None) == (1.0, True)  # weight 0: reported, not counted
    assert verdict([], None) == (1.0, True)


async def test_a_feature_behind_keys_needs_a_key(tmp_path: Path) -> None:
    from modelplane.serving.auth import hash_key

    keyed = CONFIG + f'keys: [{{hash: "{hash_key("sk-eval")}", tenant: acme}}]\n'
    provider = RuleProvider()
    gateway = await gateway_with(provider, tmp_path, keyed)
    try:
        with pytest.raises(UsageError, match="needs an API key"):
            await run_suite(suite_of(1), Targets(gateway), EvalCache(None), RunOptions())
        result = await run_suite(suite_of(2), Targets(gateway, "Bearer sk-eval"), EvalCache(None), RunOptions())
        assert all(case.passed for case in result.cases)
        bad = await run_suite(suite_of(1), Targets(gateway, "Bearer wrong"), EvalCache(None), RunOptions())
        assert "invalid API key" in (bad.cases[0].error or "")
    finally:
        await gateway.close()
