"""Accounts and the stores that hold them: static (command line, config file) and
SQLite behind one async :class:`~fileferry.users.base.UserStore` interface, so
PostgreSQL can join them without the server noticing."""
