from zoo.train import main

raise SystemExit(main())
