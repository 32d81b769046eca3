"""Customer features as pure batch functions, shared by Ray Data, Spark and the online path."""
