from ftwizard.cli import main

raise SystemExit(main())
