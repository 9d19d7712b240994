import sys

from stablecpt.cli import main

sys.exit(main())
