"""python -m sisr.port: convert an official checkpoint into a sisr .keras model."""

import sys

from sisr.port.cli import main

sys.exit(main())
