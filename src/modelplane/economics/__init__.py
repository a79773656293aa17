"""Inference economics: prices, costs per call and per serving."""
