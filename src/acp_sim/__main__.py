from acp_sim.cli import main

raise SystemExit(main())
