"""Tools for developing and trying Interlock, not used by the server itself:
a throwaway PostgreSQL cluster (:mod:`interlock.devtools.pgcluster`) and
three replicas sharing one (:mod:`interlock.devtools.replicas`, ``make
run-replicas``)."""
