"""Action distributions for the action structures SB3 lacks.

One class per action structure, behind SB3's vocabulary (``proba_distribution``,
``log_prob``, ``entropy``, ``sample``, ``mode``); each class owns its parameter
layout, and nothing survives between ``sample`` and ``log_prob``.
"""

from __future__ import annotations
