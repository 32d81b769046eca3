"""Domain schemas: warehouse tables and the real-time event union (pydantic v2, strict)."""
