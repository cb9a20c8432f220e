import sys

from nspod.cli import main

sys.exit(main())
