"""Ray job entrypoints: each module has a typed ``Args`` and ``main(args)``; import runs nothing."""
