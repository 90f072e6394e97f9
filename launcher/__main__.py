import sys

from launcher.app import main

sys.exit(main())
