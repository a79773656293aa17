"""JUnit XML: parses, one testcase per case (repeats folded), failures carry the reasons, a gate testcase."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from evalruns import case, run, verdicts
from modelplane.evals.gate import GateReport, GateThresholds, evaluate_gate
from modelplane.evals.junit import write_junit
from modelplane.evals.results import RunResult


def _junit(tmp_path: Path, current: RunResult, report: GateReport | None = None) -> ET.Element:
    path = tmp_path / "reports" / "junit.xml"  # the directory does not exist yet
    write_junit(current, path, report)
    return ET.parse(path).getroot()


def test_one_suite_one_testcase_per_case_with_failures_and_properties(tmp_path: Path) -> None:
    current = run(
        [
            case("refund", False, description="asks for a refund", reason="expected 'refund'", latency_ms=250),
            case("hello", True, output="Hi there"),
            case("down", False, error="upstream answered 503"),
        ]
    )
    root = _junit(tmp_path, current)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "support"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    assert suite.get("time") == "12.500"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["config_version"] == "cfg-abc123"
    assert props["cost_usd"] == "0.003000"
    assert props["run_id"] == "run-now"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"asks for a refund [refund]", "hello", "down"}
    refund = cases["asks for a refund [refund]"]
    assert refund.get("time") == "0.250"
    failure = refund.find("failure")
    assert failure is not None
    assert failure.get("message") == "icontains: expected 'refund'"
    assert "score: 0.000" in (failure.text or "")
    assert cases["hello"].find("failure") is None
    assert cases["hello"].findtext("system-out") == "Hi there"
    error = cases["down"].find("error")
    assert error is not None and error.get("message") == "error: upstream answered 503"


def test_repeats_are_folded_into_one_testcase(tmp_path: Path) -> None:
    current = run(
        [
            case("flaky", True, repeat=0),
            case("flaky", False, repeat=1, reason="too long"),
            case("flaky", False, repeat=2, reason="too long"),
        ]
    )
    (testcase,) = _junit(tmp_path, current).iter("testcase")
    failure = testcase.find("failure")
    assert failure is not None
    assert failure.get("message") == "2 of 3 repeats failed: icontains: too long"


def test_gate_testcase_fails_when_the_gate_fails(tmp_path: Path) -> None:
    baseline = verdicts([True, True], "main")
    current = verdicts([True, False], "pr")
    report = evaluate_gate(current, GateThresholds(), baseline)
    root = _junit(tmp_path, current, report)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    gate = next(c for c in suite.iter("testcase") if c.get("name") == "gate")
    failure = gate.find("failure")
    assert failure is not None
    assert failure.get("message") == "1 regression(s) vs baseline 'main' (allowed: 0)"
    assert "gate: FAILED" in (failure.text or "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["baseline_run_id"] == "main"


def test_gate_testcase_passes_when_the_gate_passes(tmp_path: Path) -> None:
    current = verdicts([True, True], "pr")
    root = _junit(tmp_path, current, evaluate_gate(current, GateThresholds()))
    gate = next(c for c in root.iter("testcase") if c.get("name") == "gate")
    assert gate.find("failure") is None
    assert "gate: PASSED" in (gate.findtext("system-out") or "")


def test_characters_xml_cannot_carry_are_replaced(tmp_path: Path) -> None:
    current = run([case("ctl", False, output="bad\x00byte\x1b[0m", reason="got \x07 bell", description="a <b> & c")])
    testcase = next(_junit(tmp_path, current).iter("testcase"))  # parsing at all is the main check
    assert testcase.get("name") == "a <b> & c [ctl]"
    assert testcase.findtext("system-out") == "bad\ufffdbyte\ufffd[0m"
    failure = testcase.find("failure")
    assert failure is not None and failure.get("message") == "icontains: got \ufffd bell"
