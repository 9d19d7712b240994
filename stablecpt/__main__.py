import sys

from stablecpt.cli import main

# The guard matters: datatrove's local executor starts workers with forkserver, which re-imports the
# main module in every worker; without it each worker would run the CLI again.
if __name__ == "__main__":
    sys.exit(main())
