"""Small training studies (`sisr.study.run`) and `python -m sisr.study spec.json`; see
`sisr.study.runner`."""

from sisr.study.runner import (
    COLUMNS, StudyError, conv_flops_per_pixel, csv_text, plot, resolve_cells, rows_of, run,
    run_cell, score, table,
)

__all__ = ["COLUMNS", "StudyError", "conv_flops_per_pixel", "csv_text", "plot",
           "resolve_cells", "rows_of", "run", "run_cell", "score", "table"]
