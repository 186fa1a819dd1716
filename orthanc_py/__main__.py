"""`python -m orthanc_py [CONFIG]`."""

import sys

from .cli import main

sys.exit(main())
