"""``num_buckets="auto"``: a plan chosen by measurement, a layer above the planner.

:mod:`~bucketrnn.autoplan.costmodel` fits a cost model from probes of the real graph;
:mod:`~bucketrnn.autoplan.search` finds the boundaries with the least predicted run time
(compile included) and hands them to :func:`bucketrnn.data.plan.plan_buckets` as fixed
boundaries. The planner itself knows nothing of costs.
"""

from bucketrnn.autoplan.search import MAX_CANDIDATES, AutoChoice, auto_boundaries

__all__ = ["AutoChoice", "MAX_CANDIDATES", "auto_boundaries"]
