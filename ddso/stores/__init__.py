"""Feature stores: the online store (in-process or Redis) and the offline store (Parquet)."""
