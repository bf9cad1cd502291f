"""``acp-sim plan``: what N agents would cost for a workload, simulated before anyone builds it."""

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
