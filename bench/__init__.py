"""Benchmarks of mailscan against the real servers, run by ``make bench``.

``python -m bench`` starts its own Redis, PostgreSQL, FerretDB, Dovecot, API and workers on
loopback in ``.state/bench/``, runs B1 to B5 and rewrites ``docs/benchmarks.md``. Each
benchmark measures its physical limit (a raw client of the same server) in the same run.
"""
