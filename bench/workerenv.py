"""Run a benchmark with the BLAS/OpenMP threading of the service's workers.

Importing this module before numpy sets the variables of ``service/pool.py``'s
``WORKER_ENV`` (one thread each) unless the caller set them: the figures then measure what
a worker runs, and a multithreaded BLAS does not inflate the CPU time on a shared machine.
"""

from __future__ import annotations

import os

from dsa110_contimg.service.pool import WORKER_ENV

for _name, _value in WORKER_ENV.items():
    os.environ.setdefault(_name, _value)
