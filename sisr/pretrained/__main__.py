"""python -m sisr.pretrained: list, fetch and convert the named pretrained models."""

import sys

from sisr.pretrained.cli import main

sys.exit(main())
