"""Evaluation harnesses that run the product as it runs on a call (scripted conversations), for
the tests and the benchmarks. Training and its evaluation live in training/, outside the product."""
