"""pytest plugin (`-p toy_port.plugin`): registers the toy attention architecture before
collection, so that the registry-wide suites (tests/test_contract.py) include it."""

from sisr.model import register
from toy_port.attention import SPEC

register(SPEC)
