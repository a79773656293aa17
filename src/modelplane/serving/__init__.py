"""The serving pipeline (`pipeline.py`) and one module per stage."""
