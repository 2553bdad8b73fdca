"""`python -m denoise ...` is the `denoise` command."""
import sys

from .cli import main

sys.exit(main())
