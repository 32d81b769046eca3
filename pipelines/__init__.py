"""Ray job entrypoints: each module has a typed ``Args``, ``main(args)`` and nothing else runs on import."""
