"""Accounts and the stores that hold them (static from the command line now;
SQLite and PostgreSQL behind the same :class:`UserStore` interface)."""
