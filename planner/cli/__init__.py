"""The command line (only this package imports typer): one module per command, `common` for what
they share, `main` for the app and the `planner` console script."""

import os

# The search does no BLAS work: without this, numpy's BLAS thread pool starts one thread per core
# that spins during the search (set here, before numpy is imported; a user's own setting stays).
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
