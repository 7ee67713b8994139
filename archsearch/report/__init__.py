"""Reports: pure computations on the results table, and their renderers."""
