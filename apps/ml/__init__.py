"""Pure-PyTorch image generators. Nothing in this package imports Django.

Benchmarks and GPU checks import only this package, so it must run on a
machine that has PyTorch but no Django or Celery.
"""
