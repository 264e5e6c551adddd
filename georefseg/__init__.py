"""georefseg: referring segmentation of satellite scenes, from an expression to polygons on the map."""

import os

# OpenMP threads that sleep when idle instead of spinning. Measured on 2 cores: a 2048² run with
# one core busy elsewhere went from 0.25 to 0.41 MP/s; on a quiet machine 4096² runs gave
# 0.72–0.86 MP/s spinning and 0.77–0.80 sleeping (the reader, writer and COG threads get the
# cores back), and small scenes lose up to 0.3 s per 9 tiles. Spinning collapses whenever the
# cores are shared, so sleeping is the default; set OMP_WAIT_POLICY=ACTIVE to choose otherwise.
# OpenMP reads it once, when torch loads: so before any georefseg module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
