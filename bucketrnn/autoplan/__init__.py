"""``num_buckets="auto"``: a plan chosen by measurement, a layer above the planner.

:mod:`~bucketrnn.autoplan.costmodel` fits a cost model from probes of the real graph;
:mod:`~bucketrnn.autoplan.search` finds the boundaries with the least predicted run time
(compile included); :mod:`~bucketrnn.autoplan.planner` (:func:`auto_plan`) hands them to
:func:`bucketrnn.data.plan.plan_buckets` as fixed boundaries. The planner and the loader know
nothing of costs.
"""

from bucketrnn.autoplan.costmodel import CostModel, CostModelError, probe
from bucketrnn.autoplan.planner import auto_plan
from bucketrnn.autoplan.search import MAX_CANDIDATES, AutoChoice, auto_boundaries

__all__ = ["AutoChoice", "CostModel", "CostModelError", "MAX_CANDIDATES", "auto_boundaries",
           "auto_plan", "probe"]
