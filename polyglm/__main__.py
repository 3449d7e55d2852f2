from polyglm.cli import main

raise SystemExit(main())
