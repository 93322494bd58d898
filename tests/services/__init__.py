"""Real services the tests start for themselves (PostgreSQL), as pytest plugins."""
