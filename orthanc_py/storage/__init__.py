"""Storage areas: where attachment bytes live (a folder tree by default, memory for tests)."""
