"""An eval run as JUnit XML, the test-report format GitHub, GitLab and Jenkins all render.

One `<testsuite>` per run and one `<testcase>` per case. Repeats are folded into their case
the way the gate folds them (the case passes when at least half of its repeats pass), so a
CI dashboard shows the same verdicts as the gate; the failure text says how many repeats
failed and why. A case whose target failed in every repeat is an `<error>`, any other failing
case a `<failure>` with the failing assertions' reasons. With a gate report, one more test
case named ``gate`` fails when the gate fails, so a CI view that only counts failed tests
still shows a blocked change. The run's id, target, config version, repeats and cost are
`<property>` elements of the suite.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from modelplane.evals.gate import CaseOutcome, GateReport, outcomes
from modelplane.evals.results import RunResult

OUTPUT_LIMIT = 4000  # characters of a case's output kept in <system-out>

# Characters XML 1.0 cannot carry at all (even escaped); a model may well emit them.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def write_junit(run: RunResult, path: Path, report: GateReport | None = None) -> None:
    """Write `run` (and the gate's verdict, when given) to `path` as JUnit XML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = ET.ElementTree(junit_element(run, report))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def junit_element(run: RunResult, report: GateReport | None = None) -> ET.Element:
    """The `<testsuites>` element for `run`."""
    cases = list(outcomes(run).values())
    failures = sum(1 for c in cases if not c.passed and not c.errored)
    errors = sum(1 for c in cases if not c.passed and c.errored)
    tests = len(cases)
    if report is not None:
        tests += 1
        failures += not report.passed
    seconds = max(0.0, run.finished_at - run.started_at)
    counts = {"tests": str(tests), "failures": str(failures), "errors": str(errors), "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "modelplane eval", **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _clean(run.suite),
            **counts,
            "skipped": "0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run.started_at)),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(run, cases, report).items():
        ET.SubElement(props, "property", {"name": name, "value": _clean(value)})
    for case in cases:
        suite.append(_testcase(run.suite, case))
    if report is not None:
        suite.append(_gate_case(run.suite, report))
    return root


def _properties(run: RunResult, cases: list[CaseOutcome], report: GateReport | None) -> dict[str, str]:
    costs = [c.cost_usd for c in cases]
    props = {
        "run_id": run.id,
        "target": run.target,
        "config_version": run.config_version,
        "repeats": str(run.repeats),
        "cost_usd": "unknown" if any(c is None for c in costs) else f"{sum(c or 0.0 for c in costs):.6f}",
        "input_tokens": str(sum(c.input_tokens for c in run.cases)),
        "output_tokens": str(sum(c.output_tokens for c in run.cases)),
    }
    if report is not None and report.comparison is not None:
        props["baseline_run_id"] = report.comparison.baseline_id
        props["mcnemar_p"] = f"{report.comparison.mcnemar_p:.6g}"
    return props


def _testcase(suite: str, case: CaseOutcome) -> ET.Element:
    name = f"{case.description} [{case.case_id}]" if case.description else case.case_id
    element = ET.Element(
        "testcase", {"classname": _clean(suite), "name": _clean(name), "time": f"{case.latency_ms / 1000:.3f}"}
    )
    if not case.passed:
        failed = round((1 - case.pass_fraction) * case.repeats)
        head = f"{failed} of {case.repeats} repeats failed: " if case.repeats > 1 else ""
        message = head + (case.reasons[0] if case.reasons else "failed")
        detail = "\n".join([*case.reasons, f"score: {case.score:.3f}"])
        kind = "error" if case.errored else "failure"
        child = ET.SubElement(element, kind, {"message": _clean(message), "type": kind})
        child.text = _clean(detail)
    if case.output:
        ET.SubElement(element, "system-out").text = _clean(case.output[:OUTPUT_LIMIT])
    return element


def _gate_case(suite: str, report: GateReport) -> ET.Element:
    element = ET.Element("testcase", {"classname": _clean(suite), "name": "gate", "time": "0"})
    text = _clean("\n".join(report.lines()))
    if not report.passed:
        failure = ET.SubElement(element, "failure", {"message": _clean("; ".join(report.failures)), "type": "gate"})
        failure.text = text
    else:
        ET.SubElement(element, "system-out").text = text
    return element


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)
