"""georefseg: referring segmentation of satellite scenes, from an expression to polygons on the map."""

import os

# OpenMP threads that sleep when idle instead of spinning: measured on 2 cores, a 2048² run
# with one core busy elsewhere went from 0.25 to 0.41 MP/s, and on a quiet machine from
# 0.78–0.81 to 0.82–0.86 MP/s at 4096² (the reader and writer threads get the cores back).
# OpenMP reads it once, when torch loads: so before any georefseg module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
