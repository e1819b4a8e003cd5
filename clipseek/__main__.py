"""``python -m clipseek ...``: the ``clipseek`` command."""

import sys

from clipseek.api.entry import main

sys.exit(main())
