"""``python -m distilkit`` (and ``accelerate launch -m distilkit``)."""

import sys

from distilkit.cli import main

sys.exit(main())
