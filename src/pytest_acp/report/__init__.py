"""What a run says: failure reports, timelines, conformance verdicts and what a run covered.

This room owns the failure report (``failure``), a run's timeline per bridge session
(``timeline``), conformance runs and their verdicts (``conformance``), what a run exercised and
covered (``exercised``, ``coverage``), progress lines while a long run runs (``progress``) and the
baseline of accepted violations (``baseline``).
"""
