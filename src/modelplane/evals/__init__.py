"""Evaluation on the critical path: suites, assertions, judges, a runner, and a CI gate against a baseline."""
