"""The report of a run (SPEC section 6).

``model`` builds one typed ``Report`` from a run's state; every rendering reads
that value: ``markdown`` (the pull request body, job summary, ``_STEP_COMPLETE``
block), ``mermaid`` (its diagrams), ``text`` (the terminal's, drawn with rich).
"""

from rally_gh.report.markdown import (
    duration_text,
    report_markdown,
    step_complete_fields,
    step_complete_text,
    tes_measured,
)
from rally_gh.report.mermaid import (
    mermaid_dependencies,
    mermaid_flowchart,
    mermaid_timeline,
    outcome_icon,
    timeline_axis,
)
from rally_gh.report.model import (
    TES_DEFINITIONS,
    TES_WEIGHTS,
    Report,
    ReportStatus,
    Score,
    TeammateReport,
    build_report,
    next_step,
    report_json,
    run_status,
    step_status,
    team_efficiency,
)

__all__ = [
    "TES_DEFINITIONS", "TES_WEIGHTS", "Report", "ReportStatus", "Score", "TeammateReport", "build_report",
    "duration_text", "mermaid_dependencies", "mermaid_flowchart", "mermaid_timeline", "next_step",
    "outcome_icon", "report_json", "report_markdown", "run_status", "step_complete_fields", "step_complete_text",
    "step_status", "team_efficiency", "tes_measured", "timeline_axis",
]
