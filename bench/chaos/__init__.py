"""A fault drill, repeated: N tiny jobs through the real service while it is hurt on purpose.

`python -m bench.chaos` (see __main__.py) starts `effft server` (API, scheduler, a local Ray head) on
SQLite and on a Postgres instance of the drill's own, submits the jobs, and meanwhile: SIGKILLs the API
at random moments (restarting it each time), SIGKILLs a Ray Train worker of one job and the driver (the
Ray job's entrypoint) of another, restarts its Postgres once (stop -m immediate, then start), and fills
the run folders' file system (a small tmpfs mounted on DATA_DIR/runs) once. Then it checks the store,
Ray and the outputs: nothing lost, nothing run twice, no step stored twice, and each job's final weights
equal to those of the same job run without faults.

env.py: the server, the Postgres and the tmpfs; procs.py: finding the processes to kill; faults.py: the
faults and their recovery times; drill.py: one drill; report.py: the checks and the table.
"""
