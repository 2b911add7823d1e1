"""The ``mailscan`` command line: start and watch scans, list accounts and history, cancel.

It is a client of the GraphQL API like any frontend (see :mod:`cli.main`).
"""
