"""Benchmarks run by ``ddso bench NAME --json PATH``; each module exposes ``run(options)``."""
