"""`python -m pymoby` is `pymobyd`."""

from pymoby.cmd.pymobyd import main

raise SystemExit(main())
