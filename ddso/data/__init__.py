"""Seeded synthetic data: the generator, the dataset reader and ``ddso data describe``."""
