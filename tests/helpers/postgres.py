"""A throwaway PostgreSQL cluster on a free loopback port, for the tests.

The class lives in :mod:`interlock.devtools.pgcluster`, where the benchmark
and ``make run-replicas`` use it too; the tests import it from here.
"""

from interlock.devtools.pgcluster import PostgresCluster, free_port, pg_bindir

__all__ = ["PostgresCluster", "free_port", "pg_bindir"]
