"""georefseg's tests, mirroring the package's layout."""
