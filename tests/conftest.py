"""Put tests/ on sys.path so that tests can ``from naive import ...``."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
