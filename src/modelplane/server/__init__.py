"""The HTTP edge: thin handlers over the serving pipeline."""
