"""Routing: the strategies that pick a feature's model (strategies.py), the learned router (learned.py),
its training (train.py), its data (data.py) and its metrics (metrics.py), and shadow judging that
measures what routing to cheaper models costs in quality (shadow.py, judge.py)."""
