"""Recommenders: collaborative filtering, rules, popularity, content, hybrid, evaluation."""
