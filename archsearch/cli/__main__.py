"""`python -m archsearch.cli`, as the tests and `--workers` start worker processes."""

from . import app

app()
