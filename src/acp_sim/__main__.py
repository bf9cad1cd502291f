import sys

if sys.argv[1:2] == ["mcp-server"]:
    # Started once per session and stdio server: skip the rest of the command's (heavy) imports.
    from acp_sim.mcp_server import cli_main

    raise SystemExit(cli_main(sys.argv[2:]))

from acp_sim.cli import main

raise SystemExit(main())
