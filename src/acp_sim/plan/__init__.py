"""``acp-sim plan``: what N agents would cost for a workload, simulated before anyone builds it.

This package owns the planner, from the workload file to the report; it runs the simulated agent and
the orchestrator on virtual time and changes neither.

- ``workload``: the workload file (tasks, sizes, MCP servers, agent counts) and its loader;
- ``simulate``: the options (one session, N agents, pre-warm, shared HTTP MCP) run on virtual time;
- ``rubric``: the field notes' questions answered from the results, and the verdict;
- ``report``: the text table and the standalone HTML page; ``cli``: the ``acp-sim plan`` command.
"""

from acp_sim.plan.report import Plan, html_page, make_plan, text_table
from acp_sim.plan.rubric import Answer, Verdict, judge
from acp_sim.plan.simulate import OptionResult, OptionSpec, options, run_option, schedule, simulate
from acp_sim.plan.workload import (
    McpServerSpec,
    TaskSpec,
    Workload,
    WorkloadError,
    load_workload,
    load_workload_data,
)

__all__ = [
    "Answer",
    "McpServerSpec",
    "OptionResult",
    "OptionSpec",
    "Plan",
    "TaskSpec",
    "Verdict",
    "Workload",
    "WorkloadError",
    "html_page",
    "judge",
    "load_workload",
    "load_workload_data",
    "make_plan",
    "options",
    "run_option",
    "schedule",
    "simulate",
    "text_table",
]
